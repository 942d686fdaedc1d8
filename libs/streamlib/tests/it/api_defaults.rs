//! The API server's documented default limits, at their real values (the other tests shorten
//! them to stay quick): a silent runtime is answered `504` after 40 s, changes are limited to
//! 200/s per client with a burst of 400, idle WebSocket sessions are pinged every 20 s. (The
//! 64 KiB body limit is checked to the byte on `streamlib serve --demo` in the CLI's tests.)
#![cfg(feature = "api-server")]

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::Client;
use common::ws::connect;
use common::*;
use futures_util::StreamExt;
use serde_json::json;
use streamlib::core::RuntimeService;
use streamlib::core::service::http::{self, ApiOptions, ApiState};
use tokio_tungstenite::tungstenite::Message;

/// Serves the API with every option at its default until `stop` is dropped or sent.
async fn serve_defaults(service: RuntimeService) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = ApiState::new(service, addr, ApiOptions::default(), None);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));
    (addr, stop_tx)
}

#[test]
fn a_silent_runtime_is_answered_504_after_the_default_35_s() {
    // A runtime that exists but never executes commands (its thread is busy elsewhere).
    let (tx, rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let rt = streamlib::core::StreamRuntime::new().unwrap();
        tx.send(rt.runtime_service()).unwrap();
        let _ = release_rx.recv();
        drop(rt);
    });
    let silent = rx.recv().unwrap();
    block_on(async {
        let (addr, _stop) = serve_defaults(silent).await;
        let mut client = Client::connect(addr).await;
        let asked = Instant::now();
        let reply = client.get("/api/runtime/state").await;
        let waited = asked.elapsed();
        assert_eq!(reply.status, 504, "{}", reply.json);
        assert_eq!(reply.json["error"]["code"], "timeout", "{}", reply.json);
        assert!(
            waited >= Duration::from_secs(40) && waited < Duration::from_secs(60),
            "answered after {waited:?}"
        );
    });
    release_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn changes_are_limited_to_the_default_200_per_second_with_a_burst_of_400() {
    let rt = RuntimeThread::start(|_| {});
    block_on(async {
        let (addr, _stop) = serve_defaults(rt.service.clone()).await;
        let mut client = Client::connect(addr).await;
        // A change the runtime refuses (unknown type): counted by the limiter, no graph change.
        let change = json!({"processor_type": "NoSuchProcessor"});
        let started = Instant::now();
        let mut answered = 0u64;
        let limited = loop {
            let reply = client.post("/api/processors", change.clone()).await;
            if reply.status == 429 {
                break reply;
            }
            assert_eq!(
                reply.json["error"]["code"], "unknown_processor_type",
                "{}",
                reply.json
            );
            answered += 1;
            assert!(answered < 5_000, "never rate limited");
        };
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(
            limited.json["error"]["code"], "rate_limited",
            "{}",
            limited.json
        );
        assert!(limited.headers.contains_key("retry-after"));
        // The burst, plus what 200/s refilled while the requests were made.
        let refilled = (elapsed * 200.0).ceil() as u64;
        assert!(
            (400..=400 + refilled + 1).contains(&answered),
            "{answered} changes answered before the limit, in {elapsed:.3} s"
        );
    });
}

#[test]
fn idle_websocket_sessions_are_pinged_every_20_s_by_default() {
    let rt = RuntimeThread::start(|_| {});
    block_on(async {
        let (addr, _stop) = serve_defaults(rt.service.clone()).await;
        let mut ws = connect(addr, "/api/events").await;
        let opened = Instant::now();
        let waited = loop {
            match tokio::time::timeout(Duration::from_secs(60), ws.next())
                .await
                .expect("a ping within 60 s")
                .unwrap()
                .unwrap()
            {
                Message::Ping(_) => break opened.elapsed(),
                Message::Text(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!(
            waited >= Duration::from_millis(19_500) && waited < Duration::from_secs(40),
            "first ping after {waited:?}"
        );
    });
}
