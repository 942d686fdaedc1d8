//! `GET /metrics` and the rates in the JSON API, over a real socket: the scrape passes
//! `promtool check metrics`, its values are the JSON API's counters, the JSON carries rates and
//! latency over a recent window, and the route is behind the token (unless served to loopback
//! without one).
#![cfg(feature = "api-server")]

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use common::http::Client;
use common::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use streamlib::core::ApiServerConfig;
use streamlib::core::service::http::ApiOptions;

/// The samples of a scrape: `name{labels}` → value.
pub(crate) fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// The one sample of `name` whose labels contain every `label="value"` of `with`.
#[track_caller]
pub(crate) fn sample(all: &HashMap<String, f64>, name: &str, with: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = all
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && with
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{name} {with:?}: {found:?}");
    found[0]
}

async fn scrape(c: &mut Client) -> (StatusCode, String) {
    let (status, headers, body) = c.send_raw(Method::GET, "/metrics", None).await;
    if status == StatusCode::OK {
        assert_eq!(
            headers["content-type"], "text/plain; version=0.0.4",
            "the Prometheus text format"
        );
    }
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// `promtool check metrics` on `text`: its verdict and what it printed.
fn promtool(text: &str) -> (bool, String) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!("promtool is needed (Debian package `prometheus`; scripts/install-system-deps.sh installs it): {e}")
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A 200 fps test pattern "src" feeding a counting sink "sink", made through the API.
async fn pattern_into_sink(c: &mut Client, fps: u32) {
    let src = c.post("/api/processors", json!({"processor_type": "TestPatternProcessor", "id": "src", "config": {"width": 32, "height": 32, "fps": fps}})).await;
    assert_eq!(src.status, StatusCode::CREATED, "{}", src.json);
    let sink = c
        .post(
            "/api/processors",
            json!({"processor_type": "CountingSinkProcessor", "id": "sink"}),
        )
        .await;
    assert_eq!(sink.status, StatusCode::CREATED, "{}", sink.json);
    let link = c.post("/api/connections", json!({"from_processor": "src", "from_port": "video", "to_processor": "sink", "to_port": "video"})).await;
    assert_eq!(link.status, StatusCode::CREATED, "{}", link.json);
}

async fn sink_frames(c: &mut Client) -> u64 {
    c.get("/api/processors/sink").await.json["metrics"]["video_frames"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_scrape_passes_promtool_and_says_what_the_json_api_says() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        pattern_into_sink(&mut c, 200).await;
        let started = c.post("/api/runtime/start", json!({})).await;
        assert_eq!(started.status, StatusCode::OK);
        for _ in 0..2000 {
            if sink_frames(&mut c).await > 30 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(sink_frames(&mut c).await > 30, "frames flow");
        // Stopped, the data plane's counters hold still: the scrape and the JSON must agree.
        assert_eq!(
            c.post("/api/runtime/stop", json!({})).await.status,
            StatusCode::OK
        );
        let state = c.get("/api/runtime/state").await.json;
        let (status, text) = scrape(&mut c).await;
        assert_eq!(status, StatusCode::OK, "{text}");

        let (ok, said) = promtool(&text);
        assert!(ok, "promtool check metrics: {said}\n{text}");

        let all = samples(&text);
        assert_eq!(
            sample(&all, "streamlib_processors", &[]),
            state["processor_count"].as_f64().unwrap()
        );
        assert_eq!(
            sample(&all, "streamlib_links", &[]),
            state["link_count"].as_f64().unwrap()
        );
        assert_eq!(
            sample(&all, "streamlib_runtime_status", &[("status", "stopped")]),
            1.0
        );
        for p in state["processors"].as_array().unwrap() {
            let id = p["id"].as_str().unwrap();
            let of = |name: &str| sample(&all, name, &[("processor", id)]);
            let counters = &p["counters"];
            assert_eq!(
                of("streamlib_processor_process_calls_total"),
                counters["process_calls"].as_f64().unwrap(),
                "{id}"
            );
            assert_eq!(
                of("streamlib_processor_errors_total"),
                counters["errors"].as_f64().unwrap()
            );
            assert_eq!(
                of("streamlib_processor_restarts_total"),
                counters["restarts"].as_f64().unwrap()
            );
            // One duration per call, and their sum is the busy time.
            assert_eq!(
                of("streamlib_processor_process_duration_seconds_count"),
                counters["process_calls"].as_f64().unwrap(),
                "{id}"
            );
            let busy_s = counters["busy_ns"].as_f64().unwrap() / 1e9;
            assert!(
                (of("streamlib_processor_process_duration_seconds_sum") - busy_s).abs() < 1e-6,
                "{id}"
            );
            let state_label = p["state"].as_str().unwrap();
            assert_eq!(
                sample(
                    &all,
                    "streamlib_processor_state",
                    &[("processor", id), ("state", state_label)]
                ),
                1.0
            );
        }
        assert_eq!(
            sample(
                &all,
                "streamlib_processor_value",
                &[("processor", "sink"), ("name", "video_frames")]
            ),
            state["processors"][2]["metrics"]["video_frames"]
                .as_f64()
                .unwrap()
        );
        let link = &state["links"][0];
        let id = link["id"].as_str().unwrap();
        let of = |name: &str| {
            sample(
                &all,
                name,
                &[("link", id), ("from", "src.video"), ("to", "sink.video")],
            )
        };
        let counters = &link["counters"];
        for (metric, field) in [
            ("streamlib_link_frames_written_total", "written"),
            ("streamlib_link_frames_read_total", "read"),
            ("streamlib_link_frames_dropped_total", "dropped"),
            ("streamlib_link_queued_frames", "queued"),
            ("streamlib_link_queued_bytes", "queued_bytes"),
        ] {
            assert_eq!(of(metric), counters[field].as_f64().unwrap(), "{metric}");
        }
        let aged = of("streamlib_link_frame_age_seconds_count");
        assert!(
            aged > 0.0 && aged <= counters["read"].as_f64().unwrap(),
            "ages of read frames: {aged}"
        );
        assert_eq!(
            sample(
                &all,
                "streamlib_link_frame_age_seconds_bucket",
                &[("link", id), ("le", "+Inf")]
            ),
            aged
        );
        // The requests this test made, by route template and status.
        assert_eq!(
            sample(
                &all,
                "streamlib_http_requests_total",
                &[
                    ("route", "/api/processors"),
                    ("method", "POST"),
                    ("status", "201")
                ]
            ),
            2.0
        );
        assert!(
            sample(
                &all,
                "streamlib_http_requests_total",
                &[
                    ("route", "/api/processors/{id}"),
                    ("method", "GET"),
                    ("status", "200")
                ]
            ) >= 2.0
        );
        // The commands behind them: the API server and two processors added, one connect.
        assert_eq!(
            sample(
                &all,
                "streamlib_commands_total",
                &[("command", "add_processor"), ("result", "ok")]
            ),
            3.0
        );
        assert_eq!(
            sample(
                &all,
                "streamlib_commands_total",
                &[("command", "connect"), ("result", "ok")]
            ),
            1.0
        );
        assert_eq!(
            sample(
                &all,
                "streamlib_command_duration_seconds_count",
                &[("command", "connect")]
            ),
            1.0
        );
    });
}

#[test]
fn the_json_api_carries_rates_and_latency_over_a_recent_window() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        pattern_into_sink(&mut c, 50).await;
        assert_eq!(
            c.post("/api/runtime/start", json!({})).await.status,
            StatusCode::OK
        );
        // A first look after a second of flow, then one a second and a half later: rates run
        // from the oldest kept sample that has the link, the first look's (or the start's, if
        // the setup took a second or more), not from the link's creation.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        c.get("/api/connections").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let links = c.get("/api/connections").await.json;
        let rates = &links[0]["rates"];
        let window = rates["window_s"].as_f64().unwrap();
        assert!((1.4..3.0).contains(&window), "{rates}");
        let written = rates["written_per_s"].as_f64().unwrap();
        assert!((35.0..65.0).contains(&written), "a 50 fps source: {rates}");
        assert!(rates["latency_samples"].as_u64().unwrap() > 20, "{rates}");
        let p50 = rates["latency_p50_ms"].as_f64().unwrap();
        let p99 = rates["latency_p99_ms"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= p99 && p99 < 1000.0, "{rates}");

        let src = c.get("/api/processors/src").await.json["rates"].clone();
        let sink = c.get("/api/processors/sink").await.json["rates"].clone();
        let out = src["frames_out_per_s"].as_f64().unwrap();
        let inp = sink["frames_in_per_s"].as_f64().unwrap();
        assert!((35.0..65.0).contains(&out), "{src}");
        assert!((35.0..65.0).contains(&inp), "{sink}");
        assert_eq!(sink["frames_out_per_s"], json!(0.0), "no outputs: {sink}");
        assert!(src["process_calls_per_s"].as_f64().unwrap() > 30.0, "{src}");
        let busy = src["busy_percent"].as_f64().unwrap();
        assert!((0.0..100.0).contains(&busy), "{src}");
        assert!(src["process_p50_ms"].as_f64().unwrap() > 0.0, "{src}");
        assert_eq!(src["errors"], json!(0));
        // The same figures in the whole state.
        let state = c.get("/api/runtime/state").await.json;
        assert!(
            state["links"][0]["rates"]["written_per_s"]
                .as_f64()
                .unwrap()
                > 35.0
        );
    });
}

#[test]
fn metrics_need_the_token_unless_served_to_loopback_without_one() {
    let rt = RuntimeThread::start(|_| {});
    let token = "metrics-test-token";
    let with_token = ApiOptions {
        token: Some(token.into()),
        ..Default::default()
    };
    let addr = api_on_free_port(
        &rt.service,
        ApiServerConfig {
            options: with_token.clone(),
            ..Default::default()
        },
    );
    block_on(async {
        let mut anonymous = Client::connect(addr).await;
        let (status, body) = scrape(&mut anonymous).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["code"], "unauthorized");
        let mut holder = Client::connect(addr).await.with_token(token);
        assert_eq!(scrape(&mut holder).await.0, StatusCode::OK);
    });
    drop(rt);

    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(
        &rt.service,
        ApiServerConfig {
            options: ApiOptions {
                metrics_loopback_without_token: true,
                ..with_token
            },
            ..Default::default()
        },
    );
    block_on(async {
        let mut scraper = Client::connect(addr).await;
        let (status, text) = scrape(&mut scraper).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.contains("streamlib_processors 1"), "{text}");
        // Only the metrics: the rest of the API still needs the token.
        assert_eq!(
            scraper.get("/api/processors").await.status,
            StatusCode::UNAUTHORIZED
        );
    });
    drop(rt);

    // Not for a web page, nor through a name that is not loopback: a page on an allowed origin,
    // and a request through an allowed host name (a rebound name, a proxy), need the token.
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(
        &rt.service,
        ApiServerConfig {
            options: ApiOptions {
                token: Some(token.into()),
                metrics_loopback_without_token: true,
                allowed_origins: vec!["http://dash.example".into()],
                allowed_hosts: vec!["box.lan".into()],
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let status_of = |headers: &str| {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer.split(' ').nth(1).unwrap_or_default().to_string()
    };
    let port = addr.port();
    assert_eq!(status_of(&format!("Host: 127.0.0.1:{port}\r\n")), "200");
    assert_eq!(status_of(&format!("Host: localhost:{port}\r\n")), "200");
    assert_eq!(
        status_of(&format!(
            "Host: 127.0.0.1:{port}\r\nOrigin: http://dash.example\r\n"
        )),
        "401"
    );
    assert_eq!(status_of(&format!("Host: box.lan:{port}\r\n")), "401");
}

#[test]
fn the_service_gives_the_runtimes_metrics_without_the_api_server() {
    let rt = RuntimeThread::start(|rt| {
        let src = rt
            .add_processor(
                streamlib::core::PROCESSOR_REGISTRY
                    .create(
                        "TestPatternProcessor",
                        json!({"width": 16, "height": 16, "fps": 100}),
                    )
                    .unwrap()
                    .with_id("src"),
            )
            .unwrap();
        let sink = rt
            .add_processor(
                streamlib::core::PROCESSOR_REGISTRY
                    .create("CountingSinkProcessor", json!({}))
                    .unwrap()
                    .with_id("sink"),
            )
            .unwrap();
        rt.connect(out(&src, "video"), inp(&sink, "video")).unwrap();
        rt.start().unwrap();
    });
    let text = block_on(rt.service.metrics_text()).unwrap();
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics: {said}\n{text}");
    let all = samples(&text);
    assert_eq!(sample(&all, "streamlib_processors", &[]), 2.0);
    assert_eq!(
        sample(
            &all,
            "streamlib_processor_state",
            &[("processor", "src"), ("state", "running")]
        ),
        1.0
    );
    assert!(
        !text.contains("streamlib_http_"),
        "no API server, no request figures"
    );
}
