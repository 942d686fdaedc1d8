//! `streamlib serve` under an address-space limit (`ulimit -v`), with the default budgets: no
//! sequence of API calls makes queued frames outgrow the runtime's memory budget, so the
//! process survives graphs that would otherwise queue gigabytes.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

/// Address space the server may use (KiB): the default 1 GiB budget for queued frames, the
/// frames being worked on, thread stacks and malloc arenas fit; the gigabytes the graphs below
/// would queue without the budget do not.
const ULIMIT_KB: u64 = 4_500_000;

/// `streamlib serve` under `ulimit -v`, with DISPLAY unset; returns the child and its port.
fn serve_limited(name: &str) -> (Child, u16) {
    let media = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("limits-{name}"));
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -v {ULIMIT_KB} && exec \"$0\" serve --port 0 --rate-limit 0 --media-dir \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_streamlib"))
        .arg(&media)
        .env_remove("DISPLAY");
    serving(command)
}

fn post(port: u16, path: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, reply) = http(port, "POST", path, Some(body));
    assert!((200..300).contains(&status), "{path}: {status} {reply}");
    reply
}

/// Polls the state for `secs`, checking the budgets each time; returns the last state.
fn watch(child: &mut Child, port: u16, secs: u64) -> serde_json::Value {
    let budget = 1024u64 << 20;
    let per_link = 256u64 << 20;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut last = serde_json::Value::Null;
    while Instant::now() < end {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the server died (out of memory?)"
        );
        let (status, state) = http(port, "GET", "/api/runtime/state", None);
        assert_eq!(status, 200, "{state}");
        let queued = state["queued_bytes"].as_u64().unwrap();
        assert!(queued <= budget, "queued {queued} bytes");
        let mut sum = 0;
        for link in state["links"].as_array().unwrap() {
            let bytes = link["counters"]["queued_bytes"].as_u64().unwrap();
            assert!(bytes <= per_link, "a link queued {bytes} bytes");
            sum += bytes;
        }
        assert!(sum <= budget);
        last = state;
        std::thread::sleep(Duration::from_millis(250));
    }
    last
}

#[test]
fn a_consumer_that_failed_setup_queues_nothing() {
    let (mut child, port) = serve_limited("failed");
    // Stopped, so that the display is only set up at start, fails, and stays in the graph.
    post(port, "/api/runtime/stop", json!({}));
    post(
        port,
        "/api/processors",
        json!({"processor_type": "TestPatternProcessor", "id": "src", "config": {"width": 1920, "height": 1080, "fps": 30}}),
    );
    post(
        port,
        "/api/processors",
        json!({"processor_type": "DisplayProcessor", "id": "screen"}),
    );
    post(
        port,
        "/api/connections",
        json!({"from_processor": "src", "from_port": "video", "to_processor": "screen", "to_port": "video", "capacity": 1024}),
    );
    post(port, "/api/runtime/start", json!({}));
    let state = watch(&mut child, port, 6);
    let screen = state["processors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "screen")
        .unwrap();
    assert_eq!(screen["state"], "failed", "{screen}");
    let link = &state["links"][0]["counters"];
    assert_eq!(link["queued"], 0, "{link}");
    assert!(link["written"].as_u64().unwrap() > 0, "{link}");
    assert_eq!(link["written"], link["dropped"], "{link}");
    terminate(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn slow_consumers_share_the_memory_budget() {
    let (mut child, port) = serve_limited("slow");
    // Six 4K sources, each into a 4x upscale that cannot keep up, through links that may hold
    // 1024 frames: unbounded, that is 6 x 1024 x 33 MB.
    for i in 0..6 {
        post(
            port,
            "/api/processors",
            json!({"processor_type": "TestPatternProcessor", "id": format!("src{i}"), "config": {"width": 3840, "height": 2160, "fps": 30}}),
        );
        post(
            port,
            "/api/processors",
            json!({"processor_type": "VideoScaleProcessor", "id": format!("slow{i}"), "config": {"width": 7680, "height": 4320, "algorithm": "lanczos3"}}),
        );
        post(
            port,
            "/api/connections",
            json!({"from_processor": format!("src{i}"), "from_port": "video", "to_processor": format!("slow{i}"), "to_port": "video", "capacity": 1024, "read_mode": "in_order"}),
        );
    }
    let state = watch(&mut child, port, 8);
    let dropped: u64 = state["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["counters"]["dropped"].as_u64().unwrap())
        .sum();
    assert!(dropped > 0, "the budget never had to drop a frame: {state}");
    terminate(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_processor_limit_holds_and_a_full_graph_shuts_down_promptly() {
    let media = Path::new(env!("CARGO_TARGET_TMPDIR")).join("limits-full");
    let mut command = Command::new(env!("CARGO_BIN_EXE_streamlib"));
    command
        .args(["serve", "--port", "0", "--rate-limit", "0", "--media-dir"])
        .arg(&media);
    let (mut child, port) = serving(command);
    // The API server is one of the 1,000; 999 tone generators fill the graph.
    let tone = json!({"processor_type": "ChordGeneratorProcessor", "config": {"sample_rate": 8000, "channels": 1, "buffer_size": 4000}});
    for i in 0..999 {
        let (status, reply) = http(port, "POST", "/api/processors", Some(tone.clone()));
        assert_eq!(status, 201, "processor {i}: {reply}");
    }
    let (status, reply) = http(port, "POST", "/api/processors", Some(tone));
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["error"]["code"], "limit_reached", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-processors"),
        "{reply}"
    );
    let (status, state) = http(port, "GET", "/api/runtime/state", None);
    assert_eq!(
        (status, state["processor_count"].as_u64()),
        (200, Some(1000))
    );
    // Shutdown is bounded whatever the graph's size (GRAPH_STOP_TIMEOUT and the drain's
    // 5 s are the bounds; a healthy graph takes far less).
    let signalled = Instant::now();
    terminate(&child);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(30),
            "a full graph did not shut down within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
