//! `WS /api/events`: snapshot then ordered events with nothing lost in between, filters,
//! lag reporting, access checks, pings and shutdown.
#![cfg(feature = "api-server")]

use crate::common;

use std::time::Duration;

use common::ws::{connect, next_json, refused_status, send_json, try_connect};
use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use streamlib::core::service::http::{self, ApiOptions, ApiState};
use streamlib::core::{PROCESSOR_REGISTRY, RuntimeService};
use tokio_tungstenite::tungstenite::Message;

async fn add(service: &RuntimeService, type_name: &str) -> String {
    let spec = PROCESSOR_REGISTRY.create(type_name, Value::Null).unwrap();
    service.add_processor(spec).await.unwrap().to_string()
}

#[test]
fn snapshot_first_then_every_event_in_order() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, unlimited());
    let service = rt.service.clone();
    block_on(async {
        let mut ws = connect(addr, "/api/events").await;
        let snapshot = next_json(&mut ws).await;
        assert_eq!(snapshot["type"], "snapshot");
        let seq = snapshot["seq"].as_u64().unwrap();
        assert_eq!(snapshot["state"]["seq"].as_u64(), Some(seq));
        assert_eq!(snapshot["state"]["processors"][0]["id"], "api");

        let id = add(&service, "SimplePassthroughProcessor").await;
        service.remove_processor(id.clone().into()).await.unwrap();
        let mut seen = Vec::new();
        while seen
            .last()
            .map(|e: &Value| e["type"] != "processor_removed")
            .unwrap_or(true)
        {
            seen.push(next_json(&mut ws).await);
        }
        for (i, e) in seen.iter().enumerate() {
            assert_eq!(
                e["seq"].as_u64(),
                Some(seq + 1 + i as u64),
                "gapless after the snapshot: {seen:?}"
            );
            assert!(e["timestamp_ms"].is_u64());
        }
        assert_eq!(seen[0]["type"], "processor_added");
        assert_eq!(seen[0]["processor_id"], id.as_str());
    });
}

#[test]
fn nothing_is_lost_between_snapshot_and_stream_under_concurrent_changes() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, unlimited());
    let service = rt.service.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            block_on(async {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = add(&service, "SimplePassthroughProcessor").await;
                    service.remove_processor(id.into()).await.unwrap();
                }
            })
        })
    };
    block_on(async {
        for _ in 0..10 {
            let mut ws = connect(addr, "/api/events").await;
            let snapshot = next_json(&mut ws).await;
            let first = snapshot["seq"].as_u64().unwrap() + 1;
            for expected in first..first + 30 {
                let event = next_json(&mut ws).await;
                assert_eq!(event["seq"].as_u64(), Some(expected), "{event}");
            }
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
}

#[test]
fn clients_filter_by_query_and_by_message() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, unlimited());
    let service = rt.service.clone();
    block_on(async {
        assert_eq!(
            refused_status(addr, "/api/events?types=processor_added,bogus", &[]).await,
            400
        );

        let mut ws = connect(addr, "/api/events?types=processor_removed").await;
        assert_eq!(next_json(&mut ws).await["type"], "snapshot");
        let a = add(&service, "SimplePassthroughProcessor").await;
        let b = add(&service, "SimplePassthroughProcessor").await;
        service.remove_processor(a.clone().into()).await.unwrap();
        let e = next_json(&mut ws).await;
        assert_eq!(
            (e["type"].as_str(), e["processor_id"].as_str()),
            (Some("processor_removed"), Some(a.as_str()))
        );

        // Change the filter: only events about processor `b` from now on.
        send_json(
            &mut ws,
            json!({"type": "filter", "types": null, "processors": [b]}),
        )
        .await;
        let ack = next_json(&mut ws).await;
        assert_eq!(ack["type"], "filter_updated");
        assert_eq!(ack["processors"], json!([b]));
        let c = add(&service, "SimplePassthroughProcessor").await;
        service.remove_processor(c.into()).await.unwrap();
        service.remove_processor(b.clone().into()).await.unwrap();
        // Everything about `b` (its state change to stopped, then its removal), nothing about `c`.
        loop {
            let e = next_json(&mut ws).await;
            assert_eq!(e["processor_id"].as_str(), Some(b.as_str()), "{e}");
            if e["type"] == "processor_removed" {
                break;
            }
        }

        send_json(&mut ws, json!({"type": "filter", "types": ["nope"]})).await;
        let err = next_json(&mut ws).await;
        assert_eq!(
            (err["type"].as_str(), err["error"]["code"].as_str()),
            (Some("error"), Some("invalid_filter"))
        );
        send_json(&mut ws, json!({"type": "dance"})).await;
        assert_eq!(next_json(&mut ws).await["error"]["code"], "invalid_message");
        send_json(&mut ws, json!({"type": "snapshot"})).await;
        assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    });
}

#[test]
fn a_slow_client_is_told_it_lagged_and_gets_a_fresh_snapshot() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, unlimited());
    let service = rt.service.clone();
    block_on(async {
        let mut ws = connect(addr, "/api/events").await;
        let first = next_json(&mut ws).await;
        assert_eq!(first["type"], "snapshot");
        // 200,000 events (~30 MB of JSON) while this client reads nothing: more than the socket
        // buffers hold, so the server's sender blocks and the client's queue overflows.
        let spam = EventSpammerProcessor::spec(SpamConfig { count: 200_000 });
        service.add_processor(spam).await.unwrap();
        let mut lagged = None;
        let mut last_seq = first["seq"].as_u64().unwrap();
        for _ in 0..400_000 {
            let m = next_json(&mut ws).await;
            match m["type"].as_str() {
                Some("lagged") => {
                    lagged = m["missed"].as_u64();
                    break;
                }
                _ => {
                    let seq = m["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {m}"));
                    assert!(seq > last_seq, "in order until the lag");
                    last_seq = seq;
                }
            }
        }
        let missed = lagged.expect("the client was told it lagged");
        let snap = next_json(&mut ws).await;
        assert_eq!(
            snap["type"], "snapshot",
            "a fresh snapshot follows the lag notice"
        );
        let resync = snap["seq"].as_u64().unwrap();
        // Nothing is lost silently: the count is exactly the events between the last one this
        // client got and the new snapshot.
        assert_eq!(
            missed,
            resync - last_seq,
            "missed {missed}, last seen {last_seq}, snapshot {resync}"
        );
        // Then either events after the new snapshot, or (still too slow) another lag notice.
        let next = next_json(&mut ws).await;
        assert!(
            next["type"] == "lagged" || next["seq"].as_u64().is_some_and(|s| s > resync),
            "{next}"
        );
    });
}

#[test]
fn websocket_access_is_checked_before_upgrading() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, {
        let mut config = unlimited();
        config.options.token = Some("tok-abcdef".into());
        config
    });
    block_on(async {
        assert_eq!(refused_status(addr, "/api/events", &[]).await, 401);
        assert_eq!(
            refused_status(addr, "/api/events?token=wrong-token", &[]).await,
            401
        );
        let mut ws = connect(addr, "/api/events?token=tok-abcdef").await;
        assert_eq!(next_json(&mut ws).await["type"], "snapshot");
        let mut ws = try_connect(
            addr,
            "/api/events",
            &[("authorization", "Bearer tok-abcdef")],
        )
        .await
        .unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "snapshot");
        let evil = [
            ("authorization", "Bearer tok-abcdef"),
            ("origin", "http://evil.example"),
        ];
        assert_eq!(refused_status(addr, "/api/events", &evil).await, 403);
    });
}

#[test]
fn idle_connections_are_pinged_and_closed_on_shutdown() {
    let rt = RuntimeThread::start(|_| {});
    block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = ApiOptions {
            ws_ping_interval: Duration::from_millis(50),
            ..Default::default()
        };
        let state = ApiState::new(rt.service.clone(), addr, options, None);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(listener, state, async move {
            let _ = stop_rx.await;
        }));
        let mut ws = connect(addr, "/api/events").await;
        let mut pings = 0;
        while pings < 2 {
            match tokio::time::timeout(Duration::from_secs(20), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                Message::Ping(_) => pings += 1,
                Message::Text(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        stop_tx.send(()).unwrap();
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(20), ws.next())
                .await
                .unwrap()
            {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break None,
            }
        };
        assert_eq!(
            closed,
            Some(1001),
            "sessions are closed with 'going away' on shutdown"
        );
        server.await.unwrap().unwrap();
    });
}

#[test]
fn a_client_close_gets_the_closing_handshake_back() {
    let rt = RuntimeThread::start(|_| {});
    let addr = api_on_free_port(&rt.service, unlimited());
    block_on(async {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        let mut ws = connect(addr, "/api/events").await;
        assert_eq!(next_json(&mut ws).await["type"], "snapshot");
        ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
        // The server answers with a close frame (the client sees its own code back), not a
        // dropped connection (1006).
        let reply = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => return Ok(frame),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("closed without a close frame".to_string()),
                }
            }
        })
        .await
        .expect("an answer within 10 s");
        let frame = reply.expect("a close frame");
        assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away));
    });
}
