//! The ApiServerProcessor over a real socket (port 0): lifecycle through the API, bind errors,
//! and many clients changing the graph at once.
#![cfg(feature = "api-server")]

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::http::Client;
use common::*;
use hyper::StatusCode;
use serde_json::{Value, json};
use streamlib::core::service::http::ApiOptions;
use streamlib::core::{ApiServerConfig, ApiServerProcessor, StreamRuntime};

#[test]
fn stop_and_start_through_the_api_keep_the_api_alive() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    block_on(async {
        let mut c = Client::connect(addr).await;
        let src = c.post("/api/processors", json!({"processor_type": "TestPatternProcessor", "id": "src", "config": {"width": 32, "height": 32, "fps": 200}})).await;
        assert_eq!(src.status, StatusCode::CREATED, "{}", src.json);
        c.post(
            "/api/processors",
            json!({"processor_type": "CountingSinkProcessor", "id": "sink"}),
        )
        .await;
        let link = c.post("/api/connections", json!({"from_processor": "src", "from_port": "video", "to_processor": "sink", "to_port": "video"})).await;
        assert_eq!(link.status, StatusCode::CREATED);

        for round in 0..3 {
            let stopped = c.post("/api/runtime/stop", json!({})).await;
            assert_eq!(
                (stopped.status, stopped.json["status"].as_str()),
                (StatusCode::OK, Some("stopped")),
                "round {round}"
            );
            let api = c.get("/api/processors/api").await;
            assert_eq!(
                api.json["state"], "running",
                "the API server is control-plane: stop does not stop it"
            );
            assert_eq!(c.get("/api/processors/src").await.json["state"], "stopped");
            let frames = c.get("/api/processors/sink").await.json["metrics"]["video_frames"]
                .as_u64()
                .unwrap();

            let started = c.post("/api/runtime/start", json!({})).await;
            assert_eq!(
                (started.status, started.json["status"].as_str()),
                (StatusCode::OK, Some("running"))
            );
            let mut now = frames;
            for _ in 0..4000 {
                now = c.get("/api/processors/sink").await.json["metrics"]["video_frames"]
                    .as_u64()
                    .unwrap();
                if now > frames + 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(
                now > frames + 3,
                "frames flow again after start (round {round})"
            );
        }

        let r = c.delete("/api/processors/api").await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.json["error"]["code"], "conflict");
    });
}

#[test]
fn bind_problems_fail_setup_with_a_clear_error() {
    let rt = RuntimeThread::start(|_| {});
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    block_on(async {
        let before = rt.service.get_state().await.unwrap();
        let e = rt
            .service
            .add_processor(ApiServerProcessor::spec(ApiServerConfig {
                port,
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "processor_failed");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("cannot listen on 127.0.0.1:{port}"))
                && msg.to_lowercase().contains("in use"),
            "{msg}"
        );

        let e = rt
            .service
            .add_processor(ApiServerProcessor::spec(ApiServerConfig {
                host: "0.0.0.0".into(),
                port: 0,
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("refusing to serve the API on 0.0.0.0:0 without a token"),
            "{e}"
        );

        let after = rt.service.get_state().await.unwrap();
        assert_eq!(
            after.processor_count, before.processor_count,
            "failed adds leave the graph unchanged"
        );
    });
}

#[test]
fn the_token_protects_the_socket_too() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(
        &rt.service,
        ApiServerConfig {
            options: ApiOptions {
                token: Some("tok-123456".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    block_on(async {
        let mut anonymous = Client::connect(addr).await;
        assert_eq!(
            anonymous.get("/api/runtime/state").await.status,
            StatusCode::UNAUTHORIZED
        );
        let mut c = Client::connect(addr).await.with_token("tok-123456");
        let api = c.get("/api/processors/api").await;
        assert_eq!(api.status, StatusCode::OK);
        assert!(
            api.json["config"].get("token").is_none(),
            "the token is never reported: {}",
            api.json["config"]
        );
    });
}

#[test]
fn thirty_two_clients_mutating_at_once_leave_a_consistent_graph() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, unlimited());
    const CLIENTS: usize = 32;
    const ROUNDS: usize = 5;
    let outcomes = block_on(async {
        let mut c = Client::connect(addr).await;
        c.post(
            "/api/processors",
            json!({"processor_type": "CountingSinkProcessor", "id": "shared-sink"}),
        )
        .await;
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            tasks.push(tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                let mut won_shared = 0;
                let mut kept = Vec::new();
                for round in 0..ROUNDS {
                    let src = c.post("/api/processors", json!({"processor_type": "TestPatternProcessor", "config": {"width": 16, "height": 16, "fps": 50}})).await;
                    assert_eq!(src.status, StatusCode::CREATED, "{}", src.json);
                    let src = src.json["processor_id"].as_str().unwrap().to_string();
                    let mid = c.post("/api/processors", json!({"processor_type": "SimplePassthroughProcessor"})).await.json["processor_id"].as_str().unwrap().to_string();
                    let l = c.post("/api/connections", json!({"from_processor": src, "from_port": "video", "to_processor": mid, "to_port": "video"})).await;
                    assert_eq!(l.status, StatusCode::CREATED, "{}", l.json);
                    // Everyone races for the one shared input: exactly one may win.
                    let race = c.post("/api/connections", json!({"from_processor": mid, "from_port": "video", "to_processor": "shared-sink", "to_port": "video"})).await;
                    match race.status {
                        StatusCode::CREATED => won_shared += 1,
                        StatusCode::CONFLICT => assert_eq!(race.json["error"]["code"], "input_already_connected"),
                        other => panic!("unexpected {other}: {}", race.json),
                    }
                    if (client + round) % 2 == 0 {
                        assert_eq!(c.delete(&format!("/api/processors/{src}")).await.status, StatusCode::NO_CONTENT);
                        if race.status != StatusCode::CREATED {
                            assert_eq!(c.delete(&format!("/api/processors/{mid}")).await.status, StatusCode::NO_CONTENT);
                        } else {
                            kept.push(mid);
                        }
                    } else {
                        kept.push(src);
                        kept.push(mid);
                    }
                }
                (won_shared, kept)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    });
    let winners: usize = outcomes.iter().map(|(w, _)| w).sum();
    assert_eq!(winners, 1, "exactly one client connected the shared input");
    let kept: HashSet<String> = outcomes
        .iter()
        .flat_map(|(_, k)| k.iter().cloned())
        .collect();

    let state: Value = block_on(async {
        Client::connect(addr)
            .await
            .get("/api/runtime/state")
            .await
            .json
    });
    let ids: HashSet<String> = state["processors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected = kept.clone();
    expected.insert("api".into());
    expected.insert("shared-sink".into());
    assert_eq!(
        ids, expected,
        "exactly the processors that were created and not deleted"
    );
    assert_eq!(
        state["processor_count"].as_u64().unwrap() as usize,
        ids.len()
    );

    let mut inputs: HashMap<String, usize> = HashMap::new();
    for l in state["links"].as_array().unwrap() {
        for end in ["from", "to"] {
            let p = l[end]["processor"].as_str().unwrap();
            assert!(
                ids.contains(p),
                "link {} points at missing processor {p}",
                l["id"]
            );
        }
        *inputs
            .entry(format!(
                "{}.{}",
                l["to"]["processor"].as_str().unwrap(),
                l["to"]["port"].as_str().unwrap()
            ))
            .or_default() += 1;
    }
    assert!(
        inputs.values().all(|n| *n == 1),
        "an input has two links: {inputs:?}"
    );
    for p in state["processors"].as_array().unwrap() {
        for input in p["inputs"].as_array().unwrap() {
            assert!(input["links"].as_array().unwrap().len() <= 1);
        }
        assert_ne!(p["state"], "failed", "{p}");
    }
}

#[test]
fn teardown_does_not_wait_for_a_client_that_never_finishes_its_request() {
    use std::io::Write;
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, ApiServerConfig::default());
    // Half a request line, never completed.
    let mut stuck = std::net::TcpStream::connect(addr).unwrap();
    stuck.write_all(b"GET /api/runtime/sta").unwrap();
    let mut events = rt.service.subscribe_events();
    block_on(async {
        // A second API server removes the first one (an API server cannot remove itself).
        let other = rt
            .service
            .add_processor(ApiServerProcessor::spec(ApiServerConfig {
                port: 0,
                ..Default::default()
            }))
            .await
            .unwrap();
        rt.service.remove_processor("api".into()).await.unwrap();
        rt.service.remove_processor(other).await.unwrap();
    });
    while let Ok(e) = events.try_recv() {
        if let streamlib::core::RuntimeEventKind::ProcessorFailed {
            processor_id,
            error,
            ..
        } = &e.kind
        {
            panic!("{processor_id} failed: {error} (teardown waited for the stuck client)");
        }
    }
    drop(stuck);
}

#[test]
fn an_api_server_needs_files_confined_unless_told_otherwise() {
    // A runtime whose processors may open any file (the library's default, `streamlib run`).
    let mut rt = StreamRuntime::new().unwrap();
    let e = rt
        .add_processor(ApiServerProcessor::spec(ApiServerConfig {
            port: 0,
            ..Default::default()
        }))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refusing to serve the API") && e.contains("unconfined_files"),
        "{e}"
    );
    rt.add_processor(ApiServerProcessor::spec(ApiServerConfig {
        port: 0,
        unconfined_files: true,
        ..Default::default()
    }))
    .unwrap();
}
