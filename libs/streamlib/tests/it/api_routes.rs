//! The HTTP API at the router level (tower `oneshot`, no socket): every route, every error
//! code, the access policy, and the OpenAPI document against the router.
#![cfg(feature = "api-server")]

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use streamlib::core::service::http::{self, ApiOptions, ApiState};
use streamlib::core::{ProcessorUniqueId, RuntimeService, StreamRuntime};
use tower::ServiceExt;

const BOUND: &str = "127.0.0.1:9000";

fn app(service: RuntimeService, options: ApiOptions) -> Router {
    app_with_self(service, options, None)
}

fn app_with_self(service: RuntimeService, options: ApiOptions, self_id: Option<&str>) -> Router {
    let state = ApiState::new(
        service,
        BOUND.parse().unwrap(),
        options,
        self_id.map(ProcessorUniqueId::new),
    );
    http::router(state).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))))
}

struct Response {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: Value,
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = Request::builder().method(method).uri(path);
    // A real client always sends Host (HTTP/1.1 requires it); the server refuses requests
    // without one.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", BOUND);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(v) => {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req = req.header("content-type", "application/json");
            }
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Response {
        status,
        headers,
        json,
    }
}

async fn get(app: &Router, path: &str) -> Response {
    call(app, Method::GET, path, None, &[]).await
}
async fn post(app: &Router, path: &str, body: Value) -> Response {
    call(app, Method::POST, path, Some(body), &[]).await
}
async fn delete(app: &Router, path: &str) -> Response {
    call(app, Method::DELETE, path, None, &[]).await
}

#[track_caller]
fn assert_error(r: &Response, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.json["error"]["code"], code, "{}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.json
    );
}

#[test]
fn every_route_works() {
    let rt = RuntimeThread::start(|_| {});
    let app = app(rt.service.clone(), ApiOptions::default());
    block_on(async {
        let registry = get(&app, "/api/registry").await;
        assert_eq!(registry.status, StatusCode::OK);
        assert!(
            registry
                .json
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["type_name"] == "TestPatternProcessor")
        );

        let r = post(&app, "/api/processors", json!({"processor_type": "TestPatternProcessor", "config": {"width": 64, "height": 48, "fps": 100}})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let src = r.json["processor_id"].as_str().unwrap().to_string();
        assert!(src.starts_with("test-pattern-"));
        let r = post(
            &app,
            "/api/processors",
            json!({"processor_type": "CountingSinkProcessor", "id": "sink"}),
        )
        .await;
        assert_eq!(
            (r.status, r.json["processor_id"].as_str()),
            (StatusCode::CREATED, Some("sink"))
        );

        let list = get(&app, "/api/processors").await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.json.as_array().unwrap().len(), 2);
        let one = get(&app, &format!("/api/processors/{src}")).await;
        assert_eq!(one.status, StatusCode::OK);
        assert_eq!(one.json["processor_type"], "TestPatternProcessor");
        assert_eq!(one.json["config"]["width"], 64);
        assert_eq!(
            one.json["state"], "running",
            "run() started the runtime, so new processors start at once"
        );
        assert_eq!(one.json["outputs"][0]["name"], "video");

        let r = post(&app, "/api/connections", json!({"from_processor": src, "from_port": "video", "to_processor": "sink", "to_port": "video", "capacity": 8, "overflow": "drop_oldest"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let link = r.json["link_id"].as_str().unwrap().to_string();
        assert!(link.starts_with("link-"));
        let links = get(&app, "/api/connections").await;
        assert_eq!(links.json[0]["id"], link.as_str());
        assert_eq!(links.json[0]["capacity"], 8);

        // Frames flow: the sink's metrics grow.
        let mut frames = 0;
        for _ in 0..2000 {
            frames = get(&app, "/api/processors/sink").await.json["metrics"]["video_frames"]
                .as_u64()
                .unwrap_or(0);
            if frames > 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(frames > 3);

        let state = get(&app, "/api/runtime/state").await;
        assert_eq!(state.status, StatusCode::OK);
        assert_eq!(
            (
                state.json["status"].as_str(),
                state.json["processor_count"].as_u64(),
                state.json["link_count"].as_u64()
            ),
            (Some("running"), Some(2), Some(1))
        );
        assert!(state.json["seq"].as_u64().unwrap() > 0);

        let stopped = post(&app, "/api/runtime/stop", json!({})).await;
        assert_eq!(
            (stopped.status, stopped.json["status"].as_str()),
            (StatusCode::OK, Some("stopped"))
        );
        let started = post(&app, "/api/runtime/start", json!({})).await;
        assert_eq!(
            (started.status, started.json["status"].as_str()),
            (StatusCode::OK, Some("running"))
        );

        assert_eq!(
            delete(&app, &format!("/api/connections/{link}"))
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            delete(&app, &format!("/api/processors/{src}")).await.status,
            StatusCode::NO_CONTENT
        );
        let state = get(&app, "/api/runtime/state").await;
        assert_eq!(
            (
                state.json["processor_count"].as_u64(),
                state.json["link_count"].as_u64()
            ),
            (Some(1), Some(0))
        );

        let doc = get(&app, "/api/openapi.json").await;
        assert_eq!(doc.status, StatusCode::OK);
        assert_eq!(doc.json["openapi"], "3.1.0");
    });
}

#[test]
fn errors_have_codes_statuses_and_change_nothing() {
    let rt = RuntimeThread::start(|_| {});
    let app = app(
        rt.service.clone(),
        ApiOptions {
            max_body_bytes: 1024,
            ..Default::default()
        },
    );
    block_on(async {
        let src = post(&app, "/api/processors", json!({"processor_type": "TestPatternProcessor", "id": "src", "config": {"width": 32, "height": 32}})).await;
        assert_eq!(src.status, StatusCode::CREATED);
        post(
            &app,
            "/api/processors",
            json!({"processor_type": "CountingSinkProcessor", "id": "sink"}),
        )
        .await;
        post(
            &app,
            "/api/processors",
            json!({"processor_type": "ChordGeneratorProcessor", "id": "chord"}),
        )
        .await;
        let first = post(&app, "/api/connections", json!({"from_processor": "src", "from_port": "video", "to_processor": "sink", "to_port": "video"})).await;
        assert_eq!(first.status, StatusCode::CREATED);
        let before = get(&app, "/api/runtime/state").await.json;

        let r = post(
            &app,
            "/api/processors",
            json!({"processor_type": "CameraProcesor"}),
        )
        .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "unknown_processor_type");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("TestPatternProcessor")
        );

        let r = post(
            &app,
            "/api/processors",
            json!({"processor_type": "TestPatternProcessor", "config": {"fps": "fast"}}),
        )
        .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_config");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("field 'fps'"),
            "{}",
            r.json
        );

        let r = call(
            &app,
            Method::POST,
            "/api/processors",
            None,
            &[("content-type", "application/json")],
        )
        .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
        let bad = Request::builder()
            .method(Method::POST)
            .uri("/api/processors")
            .header("host", BOUND)
            .header("content-type", "application/json")
            .body(Body::from("{not json"))
            .unwrap();
        let res = app.clone().oneshot(bad).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let plain = Request::builder()
            .method(Method::POST)
            .uri("/api/processors")
            .header("host", BOUND)
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(
            app.clone().oneshot(plain).await.unwrap().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );

        let r = post(&app, "/api/processors", json!({"config": {}})).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        let r = post(
            &app,
            "/api/processors",
            json!({"processor_type": "TestPatternProcessor", "colour": "red"}),
        )
        .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");

        let r = post(
            &app,
            "/api/processors",
            json!({"processor_type": "TestPatternProcessor", "config": {"pad": "x".repeat(2048)}}),
        )
        .await;
        assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

        assert_error(
            &post(
                &app,
                "/api/processors",
                json!({"processor_type": "TestPatternProcessor", "id": "src"}),
            )
            .await,
            StatusCode::CONFLICT,
            "duplicate_processor_id",
        );
        assert_error(
            &post(
                &app,
                "/api/processors",
                json!({"processor_type": "TestPatternProcessor", "id": "a/b"}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_id",
        );

        assert_error(
            &get(&app, "/api/processors/ghost").await,
            StatusCode::NOT_FOUND,
            "processor_not_found",
        );
        assert_error(
            &delete(&app, "/api/processors/ghost").await,
            StatusCode::NOT_FOUND,
            "processor_not_found",
        );
        assert_error(
            &delete(&app, "/api/connections/link-ghost").await,
            StatusCode::NOT_FOUND,
            "link_not_found",
        );

        let connect = |from: &str, fp: &str, to: &str, tp: &str| json!({"from_processor": from, "from_port": fp, "to_processor": to, "to_port": tp});
        let r = post(
            &app,
            "/api/connections",
            connect("src", "vidoe", "sink", "video"),
        )
        .await;
        assert_error(&r, StatusCode::NOT_FOUND, "port_not_found");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("video")
        );
        assert_error(
            &post(
                &app,
                "/api/connections",
                connect("ghost", "video", "sink", "video"),
            )
            .await,
            StatusCode::NOT_FOUND,
            "processor_not_found",
        );
        assert_error(
            &post(
                &app,
                "/api/connections",
                connect("chord", "audio", "sink", "video"),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "port_type_mismatch",
        );
        assert_error(
            &post(
                &app,
                "/api/connections",
                connect("src", "video", "sink", "video"),
            )
            .await,
            StatusCode::CONFLICT,
            "input_already_connected",
        );
        let mut bad_capacity = connect("chord", "audio", "sink", "audio");
        bad_capacity["capacity"] = json!(0);
        assert_error(
            &post(&app, "/api/connections", bad_capacity).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_link_options",
        );
        let mut bad_policy = connect("chord", "audio", "sink", "audio");
        bad_policy["overflow"] = json!("sometimes");
        assert_error(
            &post(&app, "/api/connections", bad_policy).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        );

        assert_error(
            &get(&app, "/api/nope").await,
            StatusCode::NOT_FOUND,
            "no_route",
        );
        let r = call(&app, Method::PUT, "/api/processors", None, &[]).await;
        assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert!(r.headers.get("allow").is_some());
        assert_error(
            &get(&app, "/api/events").await,
            StatusCode::BAD_REQUEST,
            "not_websocket",
        );

        let mut after = get(&app, "/api/runtime/state").await.json;
        // Counters move while frames flow; the graph itself must be exactly as before.
        strip_counters(&mut after);
        let mut before = before;
        strip_counters(&mut before);
        assert_eq!(after["processors"], before["processors"]);
        assert_eq!(after["links"], before["links"]);
        assert_eq!(
            after["seq"], before["seq"],
            "no event was published by a failed request"
        );
    });
}

fn strip_counters(state: &mut Value) {
    for p in state["processors"].as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("counters");
        p.as_object_mut().unwrap().remove("metrics");
        p.as_object_mut().unwrap().remove("rates");
    }
    for l in state["links"].as_array_mut().unwrap() {
        l.as_object_mut().unwrap().remove("counters");
        l.as_object_mut().unwrap().remove("rates");
    }
}

#[test]
fn the_api_server_cannot_delete_itself() {
    let rt = RuntimeThread::start(|_| {});
    let app = app_with_self(rt.service.clone(), ApiOptions::default(), Some("api"));
    block_on(async {
        let r = delete(&app, "/api/processors/api").await;
        assert_error(&r, StatusCode::CONFLICT, "conflict");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cut off this connection")
        );
    });
}

#[test]
fn token_is_required_everywhere_when_set() {
    let rt = RuntimeThread::start(|_| {});
    let app = app(
        rt.service.clone(),
        ApiOptions {
            token: Some("correct horse".into()),
            ..Default::default()
        },
    );
    block_on(async {
        for path in [
            "/api/runtime/state",
            "/api/registry",
            "/api/openapi.json",
            "/api/nope",
        ] {
            let r = get(&app, path).await;
            assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
        }
        let wrong = call(
            &app,
            Method::GET,
            "/api/runtime/state",
            None,
            &[("authorization", "Bearer correct horsf")],
        )
        .await;
        assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized");
        let basic = call(
            &app,
            Method::GET,
            "/api/runtime/state",
            None,
            &[("authorization", "Basic Y29ycmVjdCBob3JzZQ==")],
        )
        .await;
        assert_error(&basic, StatusCode::UNAUTHORIZED, "unauthorized");
        let ok = call(
            &app,
            Method::GET,
            "/api/runtime/state",
            None,
            &[("authorization", "Bearer correct horse")],
        )
        .await;
        assert_eq!(ok.status, StatusCode::OK);
        // The query parameter is accepted on the WebSocket route only.
        let q = get(&app, "/api/runtime/state?token=correct%20horse").await;
        assert_error(&q, StatusCode::UNAUTHORIZED, "unauthorized");
        let ws = get(&app, "/api/events?token=correct%20horse").await;
        assert_error(&ws, StatusCode::BAD_REQUEST, "not_websocket");
    });
}

#[test]
fn foreign_hosts_and_origins_are_refused() {
    let rt = RuntimeThread::start(|_| {});
    let options = ApiOptions {
        allowed_hosts: vec!["box.lan:9000".into()],
        allowed_origins: vec!["https://console.example".into()],
        ..Default::default()
    };
    let app = app(rt.service.clone(), options);
    block_on(async {
        let state = "/api/runtime/state";
        for host in [
            "127.0.0.1:9000",
            "localhost:9000",
            "[::1]:9000",
            "box.lan:9000",
        ] {
            assert_eq!(
                call(&app, Method::GET, state, None, &[("host", host)])
                    .await
                    .status,
                StatusCode::OK,
                "{host}"
            );
        }
        for host in [
            "evil.example:9000",
            "127.0.0.1:9001",
            "rebind.attacker.example",
        ] {
            assert_error(
                &call(&app, Method::GET, state, None, &[("host", host)]).await,
                StatusCode::FORBIDDEN,
                "forbidden",
            );
        }
        for origin in [
            "http://localhost:9000",
            "http://127.0.0.1:9000",
            "https://console.example",
        ] {
            assert_eq!(
                call(&app, Method::GET, state, None, &[("origin", origin)])
                    .await
                    .status,
                StatusCode::OK,
                "{origin}"
            );
        }
        for origin in [
            "http://evil.example",
            "null",
            "http://localhost:9001",
            "file://",
        ] {
            let r = call(
                &app,
                Method::POST,
                "/api/runtime/stop",
                Some(json!({})),
                &[("origin", origin)],
            )
            .await;
            assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        }
        assert_eq!(
            get(&app, state).await.json["status"],
            "running",
            "refused requests changed nothing"
        );
    });
}

#[test]
fn changes_are_rate_limited_per_client() {
    let rt = RuntimeThread::start(|_| {});
    let app = app(
        rt.service.clone(),
        ApiOptions {
            rate_limit_per_second: 1,
            rate_limit_burst: 3,
            ..Default::default()
        },
    );
    block_on(async {
        let create = || json!({"processor_type": "SimplePassthroughProcessor"});
        // Burst 3, then 1/s: the 429 comes after at least 3 successes (more only if this
        // machine is so slow that a second passes between requests).
        let mut created = 0;
        let limited = loop {
            let r = post(&app, "/api/processors", create()).await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                break r;
            }
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
            created += 1;
            assert!(created < 20, "never rate limited");
        };
        assert!(created >= 3, "the burst is allowed");
        assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        let retry: u64 = limited
            .headers
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        // Reads are not limited.
        for _ in 0..20 {
            assert_eq!(get(&app, "/api/runtime/state").await.status, StatusCode::OK);
        }
        // Every success made a processor, and the refusal none.
        assert_eq!(
            get(&app, "/api/runtime/state").await.json["processor_count"],
            created
        );
    });
}

#[test]
fn a_gone_runtime_is_503_and_a_silent_one_is_504() {
    let gone = {
        let rt = StreamRuntime::new().unwrap();
        rt.runtime_service()
    };
    block_on(async {
        let app = app(gone, ApiOptions::default());
        assert_error(
            &get(&app, "/api/runtime/state").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "runtime_unavailable",
        );
        assert_error(
            &post(&app, "/api/runtime/start", json!({})).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "runtime_unavailable",
        );
    });

    // A runtime that exists but never executes commands (its thread is busy elsewhere).
    let (tx, rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let rt = StreamRuntime::new().unwrap();
        tx.send(rt.runtime_service()).unwrap();
        let _ = release_rx.recv();
        drop(rt);
    });
    let silent = rx.recv().unwrap();
    block_on(async {
        let app = app(
            silent,
            ApiOptions {
                request_timeout: Duration::from_millis(100),
                ..Default::default()
            },
        );
        let r = get(&app, "/api/runtime/state").await;
        assert_error(&r, StatusCode::GATEWAY_TIMEOUT, "timeout");
    });
    release_tx.send(()).unwrap();
    holder.join().unwrap();
}

/// A processor's effective config, and a port's link targets, over HTTP.
#[test]
fn config_and_port_targets_are_served() {
    let rt = RuntimeThread::start(|_| {});
    let app = app(rt.service.clone(), ApiOptions::default());
    block_on(async {
        let created = post(
            &app,
            "/api/processors",
            json!({"processor_type": "TestPatternProcessor", "id": "pattern", "config": {"width": 320}}),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
        post(
            &app,
            "/api/processors",
            json!({"processor_type": "CountingSinkProcessor", "id": "sink"}),
        )
        .await;
        let config = get(&app, "/api/processors/pattern/config").await;
        assert_eq!(config.status, StatusCode::OK);
        assert_eq!(config.json["width"], 320);
        assert_eq!(
            config.json,
            get(&app, "/api/processors/pattern").await.json["config"],
            "the same effective config, defaults filled in"
        );
        assert_error(
            &get(&app, "/api/processors/ghost/config").await,
            StatusCode::NOT_FOUND,
            "processor_not_found",
        );
        let targets = get(&app, "/api/processors/pattern/ports/video/targets").await;
        assert_eq!(targets.status, StatusCode::OK, "{}", targets.json);
        assert_eq!(
            targets.json[0],
            json!({"from": "pattern.video", "to": "sink.video", "frame_type": "video", "connectable": true})
        );
        assert_eq!(targets.json[1]["connectable"], false);
        assert_eq!(
            targets.json[1]["reason"],
            "frame types differ: video to audio"
        );
        assert_error(
            &get(&app, "/api/processors/pattern/ports/nope/targets").await,
            StatusCode::NOT_FOUND,
            "port_not_found",
        );
    });
}

/// PATCH (a merge patch, also under its own media type) and PUT of a config, their errors,
/// and restarts, as JSON.
#[test]
fn config_changes_and_restarts_are_served() {
    let rt = RuntimeThread::start(|_| {});
    let app = app_with_self(rt.service.clone(), ApiOptions::default(), Some("api"));
    block_on(async {
        post(
            &app,
            "/api/processors",
            json!({"processor_type": "TestPatternProcessor", "id": "pattern", "config": {"width": 32, "height": 32}}),
        )
        .await;
        let merge = [("content-type", "application/merge-patch+json")];
        let patched = call(
            &app,
            Method::PATCH,
            "/api/processors/pattern/config",
            Some(json!({"pattern": "checkerboard", "fps": 60})),
            &merge,
        )
        .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
        assert_eq!(patched.json["processor_id"], "pattern");
        assert_eq!(patched.json["applied"], "live");
        assert_eq!(patched.json["changed"], json!(["fps", "pattern"]));
        assert_eq!(patched.json["config"]["width"], 32);
        assert_eq!(patched.json["config"]["pattern"], "checkerboard");
        let config = get(&app, "/api/processors/pattern/config").await;
        assert_eq!(config.json, patched.json["config"]);

        let refused = call(
            &app,
            Method::PATCH,
            "/api/processors/pattern/config",
            Some(json!({"width": 64})),
            &[],
        )
        .await;
        assert_error(&refused, StatusCode::CONFLICT, "config_not_live");
        let message = refused.json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("'width'") && message.contains("restart"),
            "{message}"
        );
        let invalid = call(
            &app,
            Method::PATCH,
            "/api/processors/pattern/config",
            Some(json!({"fps": 0})),
            &[],
        )
        .await;
        assert_error(&invalid, StatusCode::UNPROCESSABLE_ENTITY, "invalid_config");
        assert!(
            invalid.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'fps'")
        );
        // The field also on its own, for a form to show the message beside it.
        assert_eq!(invalid.json["error"]["field"], "fps");
        let not_object = call(
            &app,
            Method::PUT,
            "/api/processors/pattern/config",
            Some(json!([1])),
            &[],
        )
        .await;
        assert_error(
            &not_object,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        );
        let bad_query = call(
            &app,
            Method::PATCH,
            "/api/processors/pattern/config?restrat=true",
            Some(json!({"width": 64})),
            &[],
        )
        .await;
        assert_error(&bad_query, StatusCode::BAD_REQUEST, "invalid_query");

        // PUT replaces: what it leaves out goes back to the default.
        let put = call(
            &app,
            Method::PUT,
            "/api/processors/pattern/config?restart=true",
            Some(json!({"width": 64, "height": 32})),
            &[],
        )
        .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.json);
        assert_eq!(put.json["applied"], "restarted");
        assert_eq!(put.json["changed"], json!(["width", "fps", "pattern"]));
        assert_eq!(put.json["config"]["pattern"], "bars");

        let restarted = post(&app, "/api/processors/pattern/restart", json!(null)).await;
        assert_eq!(restarted.status, StatusCode::OK, "{}", restarted.json);
        assert_eq!(restarted.json["id"], "pattern");
        assert_eq!(restarted.json["state"], "running");
        assert_error(
            &post(&app, "/api/processors/ghost/restart", json!(null)).await,
            StatusCode::NOT_FOUND,
            "processor_not_found",
        );
    });
}

/// The graph document over HTTP: ETag, dry run, If-Match, every problem as a list.
#[test]
fn the_graph_is_exported_planned_and_applied() {
    let rt = RuntimeThread::start(|_| {});
    let app = app(rt.service.clone(), ApiOptions::default());
    block_on(async {
        let empty = get(&app, "/api/graph").await;
        assert_eq!(empty.status, StatusCode::OK);
        assert_eq!(
            empty.json,
            json!({"revision": 0, "processors": [], "connections": []})
        );
        assert_eq!(empty.headers["etag"], "\"0\"");
        let doc = json!({
            "processors": [
                {"id": "src", "type": "TestPatternProcessor", "config": {"width": 32, "height": 32}},
                {"id": "sink", "type": "CountingSinkProcessor"}
            ],
            "connections": [{"from": "src.video", "to": "sink.video"}]
        });
        let put = |path: &'static str, body: Value, headers: Vec<(&'static str, &'static str)>| {
            let app = app.clone();
            async move { call(&app, Method::PUT, path, Some(body), &headers).await }
        };
        let planned = put("/api/graph?dry_run=true", doc.clone(), vec![]).await;
        assert_eq!(planned.status, StatusCode::OK, "{}", planned.json);
        assert_eq!(planned.json["dry_run"], true);
        assert_eq!(
            planned.json["actions"][0],
            json!({"action": "add", "target": "src", "reason": "new in the document"})
        );
        assert_eq!(get(&app, "/api/graph").await.json["processors"], json!([]));
        let stale = put("/api/graph", doc.clone(), vec![("if-match", "\"7\"")]).await;
        assert_error(&stale, StatusCode::PRECONDITION_FAILED, "revision_mismatch");
        let weak = put("/api/graph", doc.clone(), vec![("if-match", "W/\"0\"")]).await;
        assert_error(&weak, StatusCode::PRECONDITION_FAILED, "revision_mismatch");
        let garbled = put("/api/graph", doc.clone(), vec![("if-match", "W/x")]).await;
        assert_error(&garbled, StatusCode::BAD_REQUEST, "invalid_if_match");
        let applied = put(
            "/api/graph",
            doc.clone(),
            vec![("if-match", "\"5\", \"0\"")],
        )
        .await;
        assert_eq!(applied.status, StatusCode::OK, "{}", applied.json);
        assert_eq!(applied.json["actions"].as_array().unwrap().len(), 3);
        let revision = applied.json["revision"].as_u64().unwrap();
        assert_eq!(applied.headers["etag"], format!("\"{revision}\"").as_str());
        let exported = get(&app, "/api/graph").await;
        assert_eq!(exported.json["revision"], revision);
        assert_eq!(exported.json["processors"][0]["config"]["width"], 32);
        // The export applied again: nothing to do.
        let again = put("/api/graph", exported.json.clone(), vec![]).await;
        assert_eq!(again.json["actions"], json!([]), "{}", again.json);

        let bad = json!({
            "processors": [
                {"id": "src", "type": "TestPatternProcessor", "config": {"height": 2}},
                {"id": "x", "type": "Nope"}
            ],
            "connections": [{"from": "src.video", "to": "sink.video"}]
        });
        let refused = put("/api/graph", bad, vec![]).await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "graph_rejected");
        assert_eq!(
            refused.json["error"]["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["place"].as_str().unwrap())
                .collect::<Vec<_>>(),
            [
                "processors[0].config.height",
                "processors[1].type",
                "connections[0].to"
            ]
        );
        assert_eq!(get(&app, "/api/graph").await.json, exported.json);
        // A revision beyond int64 (as documented) names no state: refused, not 412.
        let huge = put(
            "/api/graph",
            json!({"revision": 9_223_372_036_854_775_808_u64, "processors": []}),
            vec![],
        )
        .await;
        assert_error(&huge, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        // An array is not a document (serde would make an empty graph of it, removing all).
        let array = put("/api/graph", json!([]), vec![]).await;
        assert_error(&array, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert_eq!(get(&app, "/api/graph").await.json, exported.json);
        let unknown = put("/api/graph", json!({"processors": [], "links": []}), vec![]).await;
        assert_eq!(
            unknown.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            unknown.json
        );
        // The drawing: positions set by PATCH, in the export, all or nothing.
        let patch = |body: Value| {
            let app = app.clone();
            async move { call(&app, Method::PATCH, "/api/graph/ui", Some(body), &[]).await }
        };
        let before = get(&app, "/api/graph").await.json["revision"]
            .as_u64()
            .unwrap();
        let placed = patch(json!({"positions": {"src": {"x": 12.5, "y": -40.0}}})).await;
        assert_eq!(placed.status, StatusCode::OK, "{}", placed.json);
        let revision = before + 1;
        assert_eq!(placed.json["revision"], revision);
        assert_eq!(placed.headers["etag"], format!("\"{revision}\"").as_str());
        let exported = get(&app, "/api/graph").await;
        assert_eq!(
            exported.json["ui"],
            json!({"positions": {"src": {"x": 12.5, "y": -40.0}}})
        );
        let unknown = patch(json!({"positions": {"src": null, "ghost": {"x": 0, "y": 0}}})).await;
        assert_error(&unknown, StatusCode::NOT_FOUND, "processor_not_found");
        let far = patch(json!({"positions": {"src": {"x": 1e12, "y": 0}}})).await;
        assert_error(&far, StatusCode::UNPROCESSABLE_ENTITY, "graph_rejected");
        assert_eq!(far.json["error"]["problems"][0]["place"], "positions.src");
        let typo = patch(json!({"positions": {"src": {"x": 1, "z": 0}}})).await;
        assert_error(&typo, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        let array = patch(json!({"positions": {"src": [1, 2]}})).await;
        assert_error(&array, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert_eq!(get(&app, "/api/graph").await.json, exported.json);
        let unplaced = patch(json!({"positions": {"src": null}})).await;
        assert_eq!(unplaced.status, StatusCode::OK, "{}", unplaced.json);
        assert!(get(&app, "/api/graph").await.json.get("ui").is_none());
    });
}

/// Health needs no token and asks nothing of the runtime; readiness needs the token and says
/// why the runtime is not ready: stopped, or which processors failed with their errors.
#[test]
fn health_answers_without_a_token_and_readiness_names_what_is_wrong() {
    let rt = RuntimeThread::start(|rt| {
        rt.add_processor(probe(ProbeConfig::default()).with_id("fine"))
            .unwrap();
    });
    let token = "correct horse";
    let app = app(
        rt.service.clone(),
        ApiOptions {
            token: Some(token.into()),
            ..Default::default()
        },
    );
    let authorized = [("authorization", "Bearer correct horse")];
    let get_ready = |app: &Router| {
        let app = app.clone();
        async move { call(&app, Method::GET, "/api/ready", None, &authorized).await }
    };
    block_on(async {
        let health = get(&app, "/api/health").await;
        assert_eq!(health.status, StatusCode::OK);
        assert_eq!(health.json, json!({"status": "ok"}));
        // Only reading it is open: a change there without the token is refused as anywhere
        // (so it cannot use up the token holder's budget of changes), and so are other paths.
        assert_error(
            &post(&app, "/api/health", json!({})).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        for near in ["/api/health/", "//api/health", "/api/%68ealth"] {
            assert_eq!(
                get(&app, near).await.status,
                StatusCode::UNAUTHORIZED,
                "{near}"
            );
        }
        // Host is still checked on it.
        let rebound = call(
            &app,
            Method::GET,
            "/api/health",
            None,
            &[("host", "evil.example")],
        )
        .await;
        assert_error(&rebound, StatusCode::FORBIDDEN, "forbidden");
        assert_error(
            &get(&app, "/api/ready").await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        // `run()` started the runtime: ready.
        let r = get_ready(&app).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json, json!({"ready": true, "processor_count": 1}));
        // Stopped: not ready.
        rt.service.stop().await.unwrap();
        let r = get_ready(&app).await;
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "not_ready");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("the runtime is stopped; POST /api/runtime/start runs it"),
            "{}",
            r.json
        );
        // A processor that fails makes it not ready, named with its error.
        rt.service
            .add_processor(
                probe(ProbeConfig {
                    fail_setup: true,
                    ..Default::default()
                })
                .with_id("broken"),
            )
            .await
            .unwrap();
        // And one whose setup waits: while it sets up, the runtime is starting, not ready.
        rt.service
            .add_processor(
                probe(ProbeConfig {
                    setup_gate: Some("ready-waits-for-setup".into()),
                    ..Default::default()
                })
                .with_id("slow"),
            )
            .await
            .unwrap();
        let start = {
            let service = rt.service.clone();
            tokio::spawn(async move { service.start().await })
        };
        let mut r = get_ready(&app).await;
        for _ in 0..1000 {
            let message = r.json["error"]["message"].as_str().unwrap_or("");
            if message.starts_with("starting") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            r = get_ready(&app).await;
        }
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "not_ready");
        // The slow one, and the broken one until the start has taken its report.
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(
            message.ends_with("processor(s) still setting up"),
            "{message}"
        );
        open_gate("ready-waits-for-setup");
        let _ = start.await.unwrap();
        let r = get_ready(&app).await;
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "not_ready");
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("1 processor(s) failed: 'broken' (setup:"),
            "{message}"
        );
        assert!(!message.contains("'fine'"), "{message}");
    });
}

/// The routes this API promises (RFC + registry + OpenAPI).
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/processors"),
    ("GET", "/api/processors"),
    ("GET", "/api/processors/{id}"),
    ("DELETE", "/api/processors/{id}"),
    ("POST", "/api/connections"),
    ("GET", "/api/connections"),
    ("DELETE", "/api/connections/{id}"),
    ("POST", "/api/runtime/start"),
    ("POST", "/api/runtime/stop"),
    ("GET", "/api/runtime/state"),
    ("GET", "/api/events"),
    ("GET", "/api/registry"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/processors/{id}/ports/{port}/targets"),
    ("GET", "/api/processors/{id}/config"),
    ("PATCH", "/api/processors/{id}/config"),
    ("PUT", "/api/processors/{id}/config"),
    ("POST", "/api/processors/{id}/restart"),
    ("GET", "/api/graph"),
    ("PUT", "/api/graph"),
    ("PATCH", "/api/graph/ui"),
    ("GET", "/api/health"),
    ("GET", "/api/ready"),
    ("GET", "/metrics"),
    ("GET", "/api/processors/{id}/ports/{port}/snapshot"),
    ("GET", "/api/preview"),
    ("GET", "/api/tap"),
];

#[test]
fn openapi_documents_every_route_of_the_router() {
    let doc = serde_json::to_value(http::openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if let Some(op) = item.get(method) {
                documented.push((method.to_uppercase(), path.clone()));
                for (status, response) in op["responses"].as_object().unwrap() {
                    assert!(
                        response["description"].is_string(),
                        "{method} {path} {status} lacks a description"
                    );
                }
            }
        }
    }
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);
    for schema in [
        "ErrorBody",
        "ProcessorInfo",
        "RuntimeState",
        "LinkInfo",
        "CreateProcessorRequest",
        "CreateConnectionRequest",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing from components"
        );
    }

    // Every documented route is served by the router (not the fallbacks), and nothing else is.
    let rt = RuntimeThread::start(|_| {});
    let app = app(rt.service.clone(), ApiOptions::default());
    block_on(async {
        for (method, path) in ROUTES {
            let concrete = path.replace("{id}", "ghost");
            let body = (*method == "POST").then(|| json!({}));
            let r = call(&app, method.parse().unwrap(), &concrete, body, &[]).await;
            let code = r.json["error"]["code"].as_str().unwrap_or("");
            assert!(
                code != "no_route" && code != "method_not_allowed",
                "{method} {path} is not routed: {}",
                r.json
            );
        }
        for (method, path) in [
            ("GET", "/api"),
            ("GET", "/api/links"),
            ("PATCH", "/api/processors/ghost"),
        ] {
            let r = call(&app, method.parse().unwrap(), path, None, &[]).await;
            let code = r.json["error"]["code"].as_str().unwrap_or("");
            assert!(
                code == "no_route" || code == "method_not_allowed",
                "{method} {path} is routed but undocumented"
            );
        }
    });
}

#[test]
fn failed_token_attempts_are_rate_limited() {
    let rt = RuntimeThread::start(|_| {});
    let options = ApiOptions {
        token: Some("correct horse".into()),
        auth_failure_limit: 2,
        ..Default::default()
    };
    let app = app(rt.service.clone(), options);
    block_on(async {
        let wrong = [("authorization", "Bearer guess")];
        let mut refused = 0;
        let limited = loop {
            let r = call(&app, Method::GET, "/api/runtime/state", None, &wrong).await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                break r;
            }
            assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
            refused += 1;
            assert!(refused < 20, "guessing was never rate limited");
        };
        assert!(refused >= 2, "the burst of attempts is answered with 401");
        assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        assert!(limited.headers.get("retry-after").is_some());
    });
}

#[test]
fn failed_logins_do_not_use_up_the_token_holders_budget() {
    let rt = RuntimeThread::start(|_| {});
    let token = "correct horse";
    let options = ApiOptions {
        token: Some(token.into()),
        rate_limit_per_second: 1,
        rate_limit_burst: 3,
        ..Default::default()
    };
    let app = app(rt.service.clone(), options);
    block_on(async {
        // Another client on the same address floods wrong tokens until it is throttled.
        let wrong = [("authorization", "Bearer guess")];
        let mut attempts = 0;
        loop {
            let r = call(
                &app,
                Method::POST,
                "/api/runtime/start",
                Some(json!({})),
                &wrong,
            )
            .await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                assert!(
                    r.json["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("failed authentication attempts"),
                    "{}",
                    r.json
                );
                break;
            }
            attempts += 1;
            assert!(attempts < 20, "guessing was never rate limited");
        }
        // The token holder still has its whole burst of changes.
        let bearer = format!("Bearer {token}");
        let right = [("authorization", bearer.as_str())];
        for i in 0..3 {
            let r = call(
                &app,
                Method::POST,
                "/api/processors",
                Some(json!({"processor_type": "SimplePassthroughProcessor"})),
                &right,
            )
            .await;
            assert_eq!(r.status, StatusCode::CREATED, "change {i}: {}", r.json);
        }
    });
}

#[test]
fn a_request_without_host_is_refused_where_the_host_is_checked() {
    let rt = RuntimeThread::start(|_| {});
    let app = app(rt.service.clone(), ApiOptions::default());
    block_on(async {
        let no_host = Request::builder()
            .method(Method::GET)
            .uri("/api/runtime/state")
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(no_host).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no Host header"),
            "{body}"
        );
    });
}

#[test]
fn allow_listed_origins_get_cors_and_others_do_not() {
    let rt = RuntimeThread::start(|_| {});
    let options = ApiOptions {
        token: Some("correct horse".into()),
        allowed_origins: vec!["https://console.example".into()],
        ..Default::default()
    };
    let app = app(rt.service.clone(), options);
    block_on(async {
        let preflight = |origin: &'static str| {
            Request::builder()
                .method(Method::OPTIONS)
                .uri("/api/processors")
                .header("host", BOUND)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization,content-type",
                )
                .body(Body::empty())
                .unwrap()
        };
        let ok = app
            .clone()
            .oneshot(preflight("https://console.example"))
            .await
            .unwrap();
        assert_eq!(
            ok.status(),
            StatusCode::OK,
            "the preflight carries no token and must still pass"
        );
        assert_eq!(
            ok.headers().get("access-control-allow-origin").unwrap(),
            "https://console.example"
        );
        let evil = app
            .clone()
            .oneshot(preflight("https://evil.example"))
            .await
            .unwrap();
        assert!(evil.headers().get("access-control-allow-origin").is_none());
        let r = call(
            &app,
            Method::GET,
            "/api/runtime/state",
            None,
            &[
                ("origin", "https://console.example"),
                ("authorization", "Bearer correct horse"),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.headers.get("access-control-allow-origin").unwrap(),
            "https://console.example"
        );
    });
}

#[test]
fn the_served_openapi_describes_this_server() {
    let rt = RuntimeThread::start(|_| {});
    block_on(async {
        // Without a token no route asks for credentials (token-less requests are valid).
        let open = app(rt.service.clone(), ApiOptions::default());
        let doc = get(&open, "/api/openapi.json").await;
        assert_eq!(doc.status, StatusCode::OK);
        assert!(
            doc.json.get("security").is_none(),
            "{}",
            doc.json["security"]
        );
        assert_eq!(
            doc.json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        // Statuses the layers answer with are documented on every route, e.g. the 415 of a
        // body that is not JSON.
        let post_connections = &doc.json["paths"]["/api/connections"]["post"]["responses"];
        for status in [
            "201", "400", "401", "403", "413", "415", "422", "429", "503", "504",
        ] {
            assert!(
                post_connections.get(status).is_some(),
                "POST /api/connections does not document {status}"
            );
        }

        // With a token every route requires the bearer scheme.
        let guarded = app(
            rt.service.clone(),
            ApiOptions {
                token: Some("correct horse".into()),
                ..Default::default()
            },
        );
        let doc = call(
            &guarded,
            Method::GET,
            "/api/openapi.json",
            None,
            &[("authorization", "Bearer correct horse")],
        )
        .await;
        assert_eq!(doc.status, StatusCode::OK);
        assert_eq!(doc.json["security"], json!([{"bearer": []}]));

        // And a body that is not JSON is refused with the documented status.
        let r = call(&open, Method::POST, "/api/connections", None, &[]).await;
        assert_error(
            &r,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
    });
}

#[test]
fn a_control_plane_processor_cannot_be_created_through_the_api() {
    let rt = RuntimeThread::start(|_| {});
    let app = app(rt.service.clone(), ApiOptions::default());
    block_on(async {
        let before = rt.service.get_state().await.unwrap();
        let r = call(
            &app,
            Method::POST,
            "/api/processors",
            Some(json!({"processor_type": "ApiServerProcessor", "config": {"port": 0}})),
            &[],
        )
        .await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("control-plane processor"),
            "{}",
            r.json
        );
        let after = rt.service.get_state().await.unwrap();
        assert_eq!(
            after.processors.len(),
            before.processors.len(),
            "graph unchanged"
        );
        assert_eq!(after.seq, before.seq, "nothing happened");
    });
}
