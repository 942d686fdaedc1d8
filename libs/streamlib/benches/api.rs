//! API benchmark: the HTTP/WebSocket server as `streamlib serve --demo` runs it.
//!
//! Run: `cargo bench -p streamlib --bench api` (wrk from Debian for the read-only figure);
//! `-- --quick` does less work (CI runs it so the command keeps working).
//!
//! The runtime runs `run()` on the main thread with the demo graph (test pattern → passthrough
//! → sink, chord → sink) and an ApiServerProcessor on a free port. A client thread measures:
//! 1. round-trip latency of create / connect / delete over one keep-alive connection
//!    (sequential), then with 16 concurrent connections — while the demo graph runs, so every
//!    create also starts a processor thread;
//!    and of a live config change (`PATCH /api/processors/{id}/config`) to two running
//!    Continuous processors: the chord generator (paced every 10 ms) and the test pattern
//!    (30 fps), which take it between two frames;
//! 2. WebSocket event deliveries per second to 100 clients;
//! 3. read-only requests per second (`GET /api/runtime/state`, wrk, 16 connections).
//!
//! The rate limiter stays on, with a quota no benchmark reaches, so its cost is included.

#[path = "../tests/it/common/http.rs"]
mod http_client;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http_client::Client;
use serde_json::json;
use streamlib::core::service::http::ApiOptions;
use streamlib::core::{
    ApiServerConfig, ApiServerProcessor, GraphFile, ProcessorConfig, Result, RuntimeContext,
    StreamRuntime,
};

const CONCURRENT_CLIENTS: usize = 16;
const WS_CLIENTS: usize = 100;

/// `-- --quick`: less work (CI runs it so this command keeps working).
static QUICK: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::args().any(|a| a == "--quick"));

/// Requests per sequential figure.
fn sequential() -> usize {
    if *QUICK { 200 } else { 2_000 }
}

/// Create/connect/delete cycles per concurrent client.
fn per_client() -> usize {
    if *QUICK { 30 } else { 300 }
}

/// Events each WebSocket client receives.
fn ws_events() -> u64 {
    if *QUICK { 1_000 } else { 5_000 }
}

/// wrk's duration.
fn wrk_duration() -> &'static str {
    if *QUICK { "1s" } else { "5s" }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct BurstEventsConfig {
    /// Events to publish.
    count: u64,
    /// Clients that must have received a burst before the next one is published.
    clients: u64,
}

/// Events per burst: far below a WebSocket client's queue (1024), so nothing lags.
const WS_BURST: u64 = 200;

impl ProcessorConfig for BurstEventsConfig {}

#[streamlib::processor(execution = Manual, description = "Bench: publishes N events")]
struct BurstEventsProcessor {
    #[streamlib::config]
    config: BurstEventsConfig,
    ctx: Option<RuntimeContext>,
}

impl streamlib::core::Processor for BurstEventsProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.ctx = Some(ctx.clone());
        Ok(())
    }
    fn process(&mut self) -> Result<()> {
        if let Some(ctx) = &self.ctx {
            let stop = ctx.stop_signal();
            for i in 0..self.config.count {
                ctx.emit_event("bench", json!({ "i": i }));
                if (i + 1) % WS_BURST == 0 || i + 1 == self.config.count {
                    let wanted = (i + 1) * self.config.clients;
                    while WS_RECEIVED.load(Ordering::Relaxed) < wanted && !stop.is_stopping() {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "{label:<44} n={:<6} p50 {:>7.1} us   p99 {:>7.1} us   max {:>8.1} us",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e6
    );
}

#[derive(Default)]
struct Cycle {
    create: Vec<Duration>,
    connect: Vec<Duration>,
    delete: Vec<Duration>,
    errors: u64,
}

/// create a passthrough, connect the pattern to it, delete it (which removes the link).
async fn cycles(addr: SocketAddr, n: usize) -> Cycle {
    let mut c = Client::connect(addr).await;
    let mut out = Cycle::default();
    for _ in 0..n {
        let t = Instant::now();
        let (_, _, body) = c
            .send_raw(
                hyper::Method::POST,
                "/api/processors",
                Some(json!({"processor_type": "SimplePassthroughProcessor"})),
            )
            .await;
        out.create.push(t.elapsed());
        let created: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let Some(id) = created["processor_id"].as_str().map(str::to_string) else {
            out.errors += 1;
            continue;
        };
        let connection = json!({"from_processor": "pattern", "from_port": "video", "to_processor": id, "to_port": "video"});
        let t = Instant::now();
        let (status, _, _) = c
            .send_raw(hyper::Method::POST, "/api/connections", Some(connection))
            .await;
        out.connect.push(t.elapsed());
        out.errors += u64::from(status != 201);
        let t = Instant::now();
        let (status, _, _) = c
            .send_raw(
                hyper::Method::DELETE,
                &format!("/api/processors/{id}"),
                None,
            )
            .await;
        out.delete.push(t.elapsed());
        out.errors += u64::from(status != 204);
    }
    out
}

/// `n` live config changes to processor `id`, alternating `field` between two values.
async fn live_changes(
    addr: SocketAddr,
    id: &str,
    field: &str,
    values: [serde_json::Value; 2],
    n: usize,
) -> (Vec<Duration>, u64) {
    let mut c = Client::connect(addr).await;
    let path = format!("/api/processors/{id}/config");
    let mut samples = Vec::with_capacity(n);
    let mut errors = 0;
    for i in 0..n {
        let patch = json!({ field: values[i % 2].clone() });
        let t = Instant::now();
        let (status, _, body) = c.send_raw(hyper::Method::PATCH, &path, Some(patch)).await;
        samples.push(t.elapsed());
        // A change must have been made live: anything else is an error here.
        let live = status == 200
            && serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v["applied"] == "live");
        errors += u64::from(!live);
    }
    (samples, errors)
}

/// Events every client has received (closed loop: the producer waits for this).
static WS_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// 100 clients; events published in bursts of `WS_BURST` (well under a client's queue), the
/// next burst only once every client has the previous one. Measures sustainable deliveries/s
/// with nothing lost; `lagged` must stay 0.
async fn websocket_deliveries(
    addr: SocketAddr,
    service: streamlib::core::RuntimeService,
) -> (u64, u64, f64) {
    WS_RECEIVED.store(0, Ordering::SeqCst);
    let missed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(WS_CLIENTS);
    for _ in 0..WS_CLIENTS {
        let missed = missed.clone();
        let ready = ready_tx.clone();
        clients.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(format!(
                "ws://{addr}/api/events?types=processor_event"
            ))
            .await
            .unwrap();
            let _snapshot = ws.next().await;
            ready.send(()).await.unwrap();
            let mut mine = 0u64;
            while mine < ws_events() {
                let Some(Ok(msg)) = ws.next().await else {
                    break;
                };
                if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                    // Classify without a full parse: the clients share the server's 2 cores.
                    if t.as_str().contains("\"lagged\"") {
                        missed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if t.as_str().contains("\"processor_event\"") {
                        mine += 1;
                        WS_RECEIVED.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for _ in 0..WS_CLIENTS {
        ready_rx.recv().await.unwrap();
    }
    let started = Instant::now();
    let spec = BurstEventsProcessor::spec(BurstEventsConfig {
        count: ws_events(),
        clients: WS_CLIENTS as u64,
    });
    let id = service.add_processor(spec).await.unwrap();
    let all = futures_util::future::join_all(clients);
    if tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .is_err()
    {
        println!("websocket    some clients did not finish within 120 s");
    }
    let elapsed = started.elapsed().as_secs_f64();
    service.remove_processor(id).await.unwrap();
    (
        WS_RECEIVED.load(Ordering::Relaxed),
        missed.load(Ordering::Relaxed),
        elapsed,
    )
}

/// The machine's floor, measured in the same run: a bare loopback TCP round trip between two
/// threads, and a two-thread ping-pong (two wake-ups) over std channels.
fn floor() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let _ = s.set_nodelay(true);
        let mut b = [0u8; 64];
        while let Ok(n) = s.read(&mut b) {
            if n == 0 || s.write_all(&b[..n]).is_err() {
                break;
            }
        }
    });
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    let _ = c.set_nodelay(true);
    let mut b = [0u8; 64];
    let mut tcp = Vec::new();
    for _ in 0..sequential() {
        let t = Instant::now();
        let _ = c.write_all(b"ping");
        let _ = c.read(&mut b);
        tcp.push(t.elapsed());
    }
    report("floor        raw TCP round trip (std threads)", tcp);
    let (to_tx, to_rx) = std::sync::mpsc::channel::<u8>();
    let (back_tx, back_rx) = std::sync::mpsc::channel::<u8>();
    std::thread::spawn(move || {
        while let Ok(x) = to_rx.recv() {
            let _ = back_tx.send(x);
        }
    });
    let mut wakes = Vec::new();
    for _ in 0..sequential() {
        let t = Instant::now();
        let _ = to_tx.send(1);
        let _ = back_rx.recv();
        wakes.push(t.elapsed());
    }
    report("floor        thread ping-pong (2 wake-ups)", wakes);
}

fn wrk(addr: SocketAddr) -> Option<(f64, String)> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c16",
            &format!("-d{}", wrk_duration()),
            "--latency",
            &format!("http://{addr}/api/runtime/state"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((rps, text))
}

fn main() -> Result<()> {
    let mut runtime = StreamRuntime::new()?;
    // As under `streamlib serve`: the API server needs files confined to a media directory.
    runtime.set_file_access(streamlib::core::FileAccess::beneath(
        std::env::temp_dir().join("streamlib-bench-media"),
    )?);
    let demo = GraphFile::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../apps/streamlib-cli/src/demo.json"
    ))?;
    runtime.apply_graph(&demo)?;
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
    let service = runtime.runtime_service();
    let shutdown = runtime.shutdown_handle();

    let driver = std::thread::spawn(move || {
        // Sequential figures from a single-threaded client (no cross-thread wake-ups inside the
        // client itself); the concurrent ones from a 2-worker runtime.
        let single = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        println!(
            "# streamlib API benchmark: server on {addr}, demo graph running, keep-alive HTTP/1.1 (hyper client)"
        );
        floor();
        let seq = single.block_on(async {
            let mut samples = Vec::new();
            for _ in 0..sequential() {
                let t = Instant::now();
                let _ = service.get_state().await;
                samples.push(t.elapsed());
            }
            report("service      get_state() without HTTP", samples);
            let mut c = Client::connect(addr).await;
            for (label, path) in [
                (
                    "sequential   GET /api/nope (404, no runtime call)",
                    "/api/nope",
                ),
                ("sequential   GET /api/runtime/state", "/api/runtime/state"),
            ] {
                let mut samples = Vec::new();
                for _ in 0..sequential() {
                    let t = Instant::now();
                    c.send_raw(hyper::Method::GET, path, None).await;
                    samples.push(t.elapsed());
                }
                report(label, samples);
            }
            cycles(addr, 200).await; // warm-up
            let seq = cycles(addr, sequential()).await;
            report("sequential   create (POST /api/processors)", seq.create);
            report("sequential   connect (POST /api/connections)", seq.connect);
            report(
                "sequential   delete (DELETE /api/processors/{id})",
                seq.delete,
            );
            let mut errors = seq.errors;
            for (label, id, field, values) in [
                (
                    "sequential   PATCH live config: chord amplitude (Continuous, 10 ms)",
                    "chord",
                    "amplitude",
                    [json!(0.2), json!(0.3)],
                ),
                (
                    "sequential   PATCH live config: pattern fps (Continuous, 30 fps)",
                    "pattern",
                    "fps",
                    [json!(29), json!(30)],
                ),
            ] {
                let (samples, failed) = live_changes(addr, id, field, values, sequential()).await;
                report(label, samples);
                errors += failed;
            }
            errors
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let started = Instant::now();
            let tasks: Vec<_> = (0..CONCURRENT_CLIENTS).map(|_| tokio::spawn(cycles(addr, per_client()))).collect();
            let mut all = Cycle::default();
            for t in tasks {
                let c = t.await.unwrap();
                all.create.extend(c.create);
                all.connect.extend(c.connect);
                all.delete.extend(c.delete);
                all.errors += c.errors;
            }
            let secs = started.elapsed().as_secs_f64();
            let ops = (all.create.len() + all.connect.len() + all.delete.len()) as f64;
            report("16 clients   create", all.create);
            report("16 clients   connect", all.connect);
            report("16 clients   delete", all.delete);
            println!("16 clients   {:.0} changes/s overall; errors: sequential {}, concurrent {}", ops / secs, seq, all.errors);

            let (received, missed, secs) = websocket_deliveries(addr, service.clone()).await;
            println!(
                "websocket    {WS_CLIENTS} clients x {} events (bursts of {WS_BURST}, closed loop): {received} deliveries in {secs:.3} s = {:.0} deliveries/s; lagged clients: {missed}",
                ws_events(),
                received as f64 / secs
            );
        });
        match wrk(addr) {
            // A figure counted over error answers would measure the errors: refuse it, and
            // fail the bench.
            Some((_, text)) if text.contains("Non-2xx") => {
                eprintln!("wrk got answers other than 2xx; no figure is reported:\n{text}");
                std::process::exit(1);
            }
            Some((rps, text)) => {
                println!(
                    "read-only    GET /api/runtime/state, wrk -t2 -c16 -d{}: {rps:.0} requests/s",
                    wrk_duration()
                );
                for line in text.lines().filter(|l| {
                    l.contains("Latency")
                        || l.contains("50%")
                        || l.contains("99%")
                        || l.contains("Non-2xx")
                        || l.contains("Socket errors")
                }) {
                    println!("             wrk: {}", line.trim());
                }
            }
            None => println!("read-only    wrk not found (apt install wrk); skipped"),
        }
        shutdown.request();
    });
    runtime.run()?;
    driver
        .join()
        .map_err(|_| streamlib::core::StreamError::processor("bench driver panicked"))?;
    Ok(())
}
