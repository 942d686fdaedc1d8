//! The dashboard's files at `/`: served without the token (they hold no data), with a content
//! security policy that keeps the page to this server; the API behind them still needs it.
#![cfg(feature = "api-server")]

use crate::common;

use common::http::Client;
use common::*;
use hyper::{Method, StatusCode};
use streamlib::core::ApiServerConfig;
use streamlib::core::service::http::ApiOptions;

#[test]
fn the_page_and_its_assets_need_no_token_and_stay_on_this_server() {
    let rt = RuntimeThread::start(|_| {});
    let config = ApiServerConfig {
        options: ApiOptions {
            token: Some("dashboard-token".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let addr = api_on_free_port(&rt.service, config);
    block_on(async {
        let mut c = Client::connect(addr).await;
        let (status, headers, body) = c.send_raw(Method::GET, "/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{csp}");
        }
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            html.contains("/assets/app.js") && html.contains("/assets/app.css"),
            "{html}"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing from elsewhere: {html}"
        );
        for (path, kind) in [
            ("/assets/app.js", "text/javascript"),
            ("/assets/app.css", "text/css"),
        ] {
            let (status, headers, body) = c.send_raw(Method::GET, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(
                headers["content-type"].to_str().unwrap().starts_with(kind),
                "{path}"
            );
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert!(body.len() > 1000, "{path}");
        }
        // The data is behind the token.
        assert_eq!(
            c.get("/api/runtime/state").await.status,
            StatusCode::UNAUTHORIZED
        );
        let r = c.get("/assets/other.js").await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "no other file is open: {}",
            r.json
        );
    });
}
