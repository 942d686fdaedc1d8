//! Graph apply benchmark: `PUT /api/graph` of a 100-processor document over HTTP, as
//! `streamlib serve` runs it.
//!
//! Run: `cargo bench -p streamlib --bench graph_apply` (`-- --quick`: little work, CI runs it
//! so the command keeps working).
//!
//! The runtime runs `run()` on the main thread with an ApiServerProcessor on a free port. The
//! document: a watched test pattern at 200 fps feeding a probe that notes when each frame
//! arrives, plus 49 test patterns (16x16, 30 fps) each feeding a counting sink: 100 processors,
//! 50 links. Measured, one keep-alive connection:
//! 1. the peer, in the same run: building the same graph by single requests (100 creates, 50
//!    connects);
//! 2. `PUT /api/graph` of the document against an empty runtime, and of `{}` to remove it all;
//! 3. with the graph running, `PUT /api/graph` of the document with one field of one other
//!    processor changed, live (`pattern`, taken in place) and not live (`width`, a restart):
//!    the time, and the longest gap between two frames reaching the watched probe during the
//!    apply (at 200 fps, frames are 5 ms apart).

#[path = "../tests/it/common/http.rs"]
mod http_client;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_client::Client;
use serde_json::{Value, json};
use streamlib::core::service::http::ApiOptions;
use streamlib::core::{
    ApiServerConfig, ApiServerProcessor, LinkInput, Result, StreamRuntime, VideoFrame,
};

/// `-- --quick`: little work (CI runs it so this command keeps working).
static QUICK: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::args().any(|a| a == "--quick"));

fn reps(full: usize) -> usize {
    if *QUICK { 2 } else { full }
}

/// When each frame reached the probe.
static ARRIVALS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

#[streamlib::processor(execution = Reactive, description = "Bench: notes when each frame arrives")]
struct ArrivalProbeProcessor {
    #[streamlib::input(description = "Frames to time")]
    video: LinkInput<VideoFrame>,
}

impl streamlib::core::Processor for ArrivalProbeProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        while self.video.read().is_some() {
            if let Ok(mut arrivals) = ARRIVALS.lock() {
                arrivals.push(Instant::now());
            }
        }
        Ok(())
    }
}

const PAIRS: usize = 49;

/// The 100-processor document; `src-7` gets `width` and `pattern`.
fn document(width: u32, pattern: &str) -> Value {
    let mut processors = vec![
        json!({"id": "watched", "type": "TestPatternProcessor", "config": {"width": 16, "height": 16, "fps": 200}}),
        json!({"id": "probe", "type": "ArrivalProbeProcessor"}),
    ];
    let mut connections = vec![json!({"from": "watched.video", "to": "probe.video"})];
    for i in 0..PAIRS {
        let (w, p) = if i == 7 {
            (width, pattern)
        } else {
            (16, "bars")
        };
        processors.push(
            json!({"id": format!("src-{i}"), "type": "TestPatternProcessor",
            "config": {"width": w, "height": 16, "fps": 30, "pattern": p}}),
        );
        processors.push(json!({"id": format!("sink-{i}"), "type": "CountingSinkProcessor"}));
        connections
            .push(json!({"from": format!("src-{i}.video"), "to": format!("sink-{i}.video")}));
    }
    json!({"processors": processors, "connections": connections})
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{label:<58} n={:<4} p50 {:>9.2} ms  p99 {:>9.2} ms  max {:>9.2} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

/// The longest gap between two arrivals at the probe that overlaps `from..to`.
fn longest_gap(from: Instant, to: Instant) -> Duration {
    let arrivals = ARRIVALS.lock().map(|a| a.clone()).unwrap_or_default();
    let mut longest = Duration::ZERO;
    for pair in arrivals.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b >= from && a <= to {
            longest = longest.max(b - a);
        }
    }
    longest
}

/// `PUT /api/graph` of `doc`; panics unless it is answered 200.
async fn put(c: &mut Client, doc: &Value) -> Duration {
    put_expecting(c, doc, None).await
}

/// `PUT /api/graph` of `doc`, checking the plan was `actions` (kinds in order), if given: a
/// figure is only what it says it is.
async fn put_expecting(c: &mut Client, doc: &Value, actions: Option<&[&str]>) -> Duration {
    let t = Instant::now();
    let (status, _, body) = c
        .send_raw(hyper::Method::PUT, "/api/graph", Some(doc.clone()))
        .await;
    let took = t.elapsed();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    if let Some(expected) = actions {
        let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
        let kinds: Vec<&str> = answer["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["action"].as_str())
            .collect();
        assert_eq!(kinds, expected, "{answer}");
    }
    took
}

/// The peer: the same graph built by single requests.
async fn by_single_requests(c: &mut Client, doc: &Value) -> Duration {
    let t = Instant::now();
    for p in doc["processors"].as_array().into_iter().flatten() {
        let body = json!({"processor_type": p["type"], "id": p["id"], "config": p.get("config").cloned().unwrap_or(Value::Null)});
        let (status, _, _) = c
            .send_raw(hyper::Method::POST, "/api/processors", Some(body))
            .await;
        assert_eq!(status, 201);
    }
    for link in doc["connections"].as_array().into_iter().flatten() {
        let (from, to) = (
            link["from"].as_str().unwrap_or_default(),
            link["to"].as_str().unwrap_or_default(),
        );
        let (fp, fport) = from.split_once('.').unwrap_or_default();
        let (tp, tport) = to.split_once('.').unwrap_or_default();
        let body =
            json!({"from_processor": fp, "from_port": fport, "to_processor": tp, "to_port": tport});
        let (status, _, _) = c
            .send_raw(hyper::Method::POST, "/api/connections", Some(body))
            .await;
        assert_eq!(status, 201);
    }
    t.elapsed()
}

fn main() -> Result<()> {
    let mut runtime = StreamRuntime::new()?;
    runtime.set_file_access(streamlib::core::FileAccess::beneath(
        std::env::temp_dir().join("streamlib-bench-media"),
    )?);
    let config = ApiServerConfig {
        port: 0,
        options: ApiOptions {
            rate_limit_per_second: 1_000_000,
            rate_limit_burst: 1_000_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let api = runtime.add_processor(ApiServerProcessor::spec(config))?;
    let port = runtime.processor_info(&api)?.metrics["port"];
    let addr = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap_or(0)));
    let shutdown = runtime.shutdown_handle();

    let driver = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async {
            println!(
                "# streamlib graph apply benchmark: server on {addr}, 100-processor document (50 links), keep-alive HTTP/1.1"
            );
            let mut c = Client::connect(addr).await;
            let doc = document(16, "bars");
            let empty = json!({});
            let (mut peer, mut build, mut clear) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps(5) {
                peer.push(by_single_requests(&mut c, &doc).await);
                clear.push(put(&mut c, &empty).await);
                build.push(put(&mut c, &doc).await);
                clear.push(put(&mut c, &empty).await);
            }
            report("peer: 100 creates + 50 connects, one request each", peer);
            report("PUT /api/graph: 100 processors into an empty runtime", build);
            report("PUT /api/graph: {} (remove all 100)", clear);

            put(&mut c, &doc).await;
            // Let every processor settle, then take the probe's normal rhythm.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let quiet_from = Instant::now();
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let quiet = longest_gap(quiet_from, Instant::now());
            let (mut same, mut live, mut restart) = (Vec::new(), Vec::new(), Vec::new());
            let (mut live_gaps, mut restart_gaps) = (Vec::new(), Vec::new());
            // The document in force, changed one field at a time from what it is.
            let (mut width, mut pattern) = (16, "bars");
            for _ in 0..reps(20) {
                same.push(put_expecting(&mut c, &document(width, pattern), Some(&[])).await);
                pattern = if pattern == "bars" { "checkerboard" } else { "bars" };
                let t = Instant::now();
                live.push(
                    put_expecting(&mut c, &document(width, pattern), Some(&["reconfigure"])).await,
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                live_gaps.push(longest_gap(t, Instant::now()));
                width = if width == 16 { 32 } else { 16 };
                let t = Instant::now();
                restart.push(
                    put_expecting(&mut c, &document(width, pattern), Some(&["restart"])).await,
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                restart_gaps.push(longest_gap(t, Instant::now()));
            }
            report("PUT /api/graph: the same document (no change)", same);
            report("PUT /api/graph: one live field changed (reconfigure)", live);
            report("PUT /api/graph: one other field changed (restart)", restart);
            println!(
                "watched processor (200 fps, untouched): longest gap between frames while quiet {:.2} ms",
                quiet.as_secs_f64() * 1e3
            );
            report("  longest gap during a live-field apply", live_gaps);
            report("  longest gap during a restart apply", restart_gaps);
        });
        shutdown.request();
    });
    runtime.run()?;
    driver
        .join()
        .map_err(|_| streamlib::core::StreamError::processor("the bench driver panicked"))?;
    Ok(())
}
