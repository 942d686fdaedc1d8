//! Soak and chaos test of the API server (a test binary of its own, `harness = false`).
//!
//! The binary runs twice: as the *driver* (what `cargo test` starts) and as the *server* it
//! starts as a child (`--serve`): a runtime with an API server on a free loopback port, whose
//! registry also holds processors that fail, panic or block in setup, process and teardown,
//! slow and dead consumers, and a heap probe (live bytes from a counting allocator).
//!
//! The driver repeats three phases until its time is up:
//! - **churn**: N clients (threads, keep-alive HTTP) make random creates, connects, removals
//!   and reads while frames flow, and WebSocket clients subscribe and never read;
//! - **check**: the graph is consistent (every link's ends exist, counts match), everything
//!   the clients made is removed, then the graph is back to the API server alone, nothing is
//!   queued, and threads, RSS and live heap are back near their baseline;
//! - **backpressure**: a burst of numbered frames through a `backpressure` chain arrives
//!   whole and in order.
//!
//! Then a last churn ends with SIGTERM at a random moment: the server must exit 0, promptly.
//! Any 5xx, unanswered request, lost frame, or resource not returned fails the run.
//!
//! `cargo test -p streamlib --test soak` runs about a minute; longer:
//! `cargo test --release -p streamlib --test soak -- --minutes 30 --clients 8`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use streamlib::core::{
    ApiServerConfig, ApiServerProcessor, ConfigError, Counter, LinkInput, LinkOutput,
    ProcessorConfig, Result, RuntimeContext, RuntimeLimits, StopSignal, StreamError, StreamRuntime,
    VideoFrame,
};

// -------------------------------------------------------------------------------------------
// The heap, counted (both roles use it; the server reports it through `SoakHeapProcessor`).

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the caller's arguments; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's pointer, layout and size, passed on unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// -------------------------------------------------------------------------------------------
// Fault-injecting processors (registered in the server's registry).

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct FaultConfig {
    fail_setup: bool,
    panic_setup: bool,
    /// Milliseconds `setup` blocks (the server's setup timeout is 1000 ms).
    block_setup_ms: u64,
    panic_after: Option<u64>,
    error_after: Option<u64>,
    panic_in_teardown: bool,
    /// Milliseconds each frame takes (a slow consumer).
    slow_ms: u64,
}

impl ProcessorConfig for FaultConfig {
    fn validate(&self) -> std::result::Result<(), ConfigError> {
        ConfigError::check_range("block_setup_ms", self.block_setup_ms, 0, 5_000)?;
        ConfigError::check_range("slow_ms", self.slow_ms, 0, 1_000)
    }
}

#[streamlib::processor(execution = Reactive, description = "Soak: a passthrough that fails as told")]
struct SoakFaultProcessor {
    #[streamlib::input(description = "Frames in")]
    video: LinkInput<VideoFrame>,
    #[streamlib::output(name = "video", description = "Frames out")]
    video_out: LinkOutput<VideoFrame>,
    #[streamlib::config]
    config: FaultConfig,
    passed: u64,
}

impl streamlib::core::Processor for SoakFaultProcessor::Processor {
    fn setup(&mut self, _: &RuntimeContext) -> Result<()> {
        std::thread::sleep(Duration::from_millis(self.config.block_setup_ms));
        if self.config.panic_setup {
            panic!("soak: told to panic in setup");
        }
        if self.config.fail_setup {
            return Err(StreamError::processor("soak: told to fail in setup"));
        }
        Ok(())
    }
    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.video.read_next() {
            self.passed += 1;
            if self.config.panic_after == Some(self.passed) {
                panic!("soak: told to panic after {} frames", self.passed);
            }
            if self.config.error_after == Some(self.passed) {
                return Err(StreamError::processor("soak: told to fail in process"));
            }
            if self.config.slow_ms > 0 {
                std::thread::sleep(Duration::from_millis(self.config.slow_ms));
            }
            self.video_out.write(frame);
        }
        Ok(())
    }
    fn teardown(&mut self) -> Result<()> {
        if self.config.panic_in_teardown {
            panic!("soak: told to panic in teardown");
        }
        Ok(())
    }
}

#[streamlib::processor(execution = Reactive, description = "Soak: a consumer that never reads")]
struct SoakDeadSinkProcessor {
    #[streamlib::input(description = "Ignored")]
    video: LinkInput<VideoFrame>,
}

impl streamlib::core::Processor for SoakDeadSinkProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct BurstConfig {
    count: u64,
}

impl ProcessorConfig for BurstConfig {
    fn validate(&self) -> std::result::Result<(), ConfigError> {
        ConfigError::check_range("count", self.count, 0, 10_000_000)
    }
}

#[streamlib::processor(execution = Manual, description = "Soak: writes N numbered frames")]
struct SoakBurstProcessor {
    #[streamlib::output(description = "Numbered frames")]
    video: LinkOutput<VideoFrame>,
    #[streamlib::config]
    config: BurstConfig,
    stop: Option<StopSignal>,
}

impl streamlib::core::Processor for SoakBurstProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.stop = Some(ctx.stop_signal());
        Ok(())
    }
    fn process(&mut self) -> Result<()> {
        for n in 0..self.config.count {
            if self.stop.as_ref().is_some_and(|s| s.is_stopping()) {
                break;
            }
            let frame = VideoFrame::from_rgba(2, 2, vec![0u8; 16], n, n)?;
            self.video.write(frame);
        }
        Ok(())
    }
}

#[streamlib::processor(execution = Reactive, description = "Soak: counts frames and gaps in their numbers")]
struct SoakCheckSinkProcessor {
    #[streamlib::input(description = "Numbered frames")]
    video: LinkInput<VideoFrame>,
    next: u64,
    frames: Option<Counter>,
    gaps: Option<Counter>,
}

impl streamlib::core::Processor for SoakCheckSinkProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.frames = Some(ctx.counter("frames"));
        self.gaps = Some(ctx.counter("gaps"));
        Ok(())
    }
    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.video.read_next() {
            if frame.frame_number != self.next {
                if let Some(g) = &self.gaps {
                    g.add(1);
                }
            }
            self.next = frame.frame_number + 1;
            if let Some(f) = &self.frames {
                f.add(1);
            }
        }
        Ok(())
    }
}

#[streamlib::processor(execution = Continuous, interval_ms = 100, control_plane = true, description = "Soak: reports the live heap")]
struct SoakHeapProcessor {
    live: Option<Counter>,
}

impl streamlib::core::Processor for SoakHeapProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.live = Some(ctx.counter("live_bytes"));
        Ok(())
    }
    fn process(&mut self) -> Result<()> {
        if let Some(live) = &self.live {
            live.set(LIVE_BYTES.load(Ordering::Relaxed) as u64);
        }
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
// The server role.

fn serve() -> ExitCode {
    // The processors here panic on purpose, hundreds of times; the runtime reports each as a
    // processor failure, so the default hook's message for each is noise.
    std::panic::set_hook(Box::new(|_| {}));
    let limits = RuntimeLimits {
        setup_timeout_ms: 1_000,
        ..Default::default()
    };
    let mut runtime = match StreamRuntime::with_limits(limits) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let media = std::env::temp_dir().join(format!("streamlib-soak-{}", std::process::id()));
    match streamlib::core::FileAccess::beneath(&media) {
        Ok(files) => runtime.set_file_access(files),
        Err(e) => {
            eprintln!("soak server: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut config = ApiServerConfig {
        port: 0,
        ..Default::default()
    };
    config.options.rate_limit_per_second = 0;
    let (spec, handle) = ApiServerProcessor::Processor::spec_with_handle(config);
    let added = runtime.add_processor(spec.with_id("api")).and_then(|_| {
        runtime.add_processor(SoakHeapProcessor::spec(Default::default()).with_id("heap"))
    });
    if let Err(e) = added {
        eprintln!("soak server: {e}");
        return ExitCode::FAILURE;
    }
    match handle.local_addr() {
        Some(addr) => println!("{addr}"),
        None => return ExitCode::FAILURE,
    }
    match runtime.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak server: {e}");
            ExitCode::FAILURE
        }
    }
}

// -------------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client.

struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

/// What a request got: a status and JSON, or no answer at all.
enum Answer {
    Reply(u16, Value),
    NoAnswer(String),
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// Sends a request; a kept-alive connection the server closed while idle (its header
    /// timeout) is replaced and the request sent again, as HTTP clients do: the server never saw
    /// it.
    fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let reused = self.conn.is_some();
        match self.send(method, path, body) {
            Answer::NoAnswer(why) if reused && why.starts_with("stale") => {
                self.send(method, path, body)
            }
            answer => answer,
        }
    }

    fn send(&mut self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        if self.conn.is_none() {
            match TcpStream::connect(self.addr) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(40)));
                    let _ = s.set_nodelay(true);
                    self.conn = Some(BufReader::new(s));
                }
                Err(e) => return Answer::NoAnswer(format!("connect: {e}")),
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Answer::NoAnswer("no connection".into());
        };
        if let Err(e) = conn.get_mut().write_all(request.as_bytes()) {
            self.conn = None;
            return Answer::NoAnswer(format!("stale connection, write: {e}"));
        }
        match read_response(conn) {
            Ok((status, close, json)) => {
                if close {
                    self.conn = None;
                }
                Answer::Reply(status, json)
            }
            Err(e) => {
                self.conn = None;
                let why = e.to_string();
                if why.starts_with("stale") {
                    Answer::NoAnswer(why)
                } else {
                    Answer::NoAnswer(format!("read: {why}"))
                }
            }
        }
    }
}

fn read_response(conn: &mut BufReader<TcpStream>) -> std::io::Result<(u16, bool, Value)> {
    let mut status_line = String::new();
    match conn.read_line(&mut status_line) {
        Ok(0) => {
            return Err(std::io::Error::other(
                "stale connection: closed before an answer",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            return Err(std::io::Error::other(format!("stale connection: {e}")));
        }
        other => {
            other?;
        }
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let (mut length, mut close) = (0usize, false);
    loop {
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "connection: close" {
            close = true;
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body)?;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((status, close, json))
}

// -------------------------------------------------------------------------------------------
// The driver role.

/// Tallies of one run.
#[derive(Default)]
struct Tally {
    operations: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    unanswered: AtomicU64,
}

struct Options {
    secs: u64,
    clients: usize,
    seed: u64,
    /// Drive this command's server instead of our own (`--server 'streamlib serve --port 0'`):
    /// built-in processor types only, no heap figure, no backpressure phase.
    server: Option<String>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Options {
        secs: value("--minutes").map_or(60, |m| (m * 60.0) as u64),
        clients: value("--clients").map_or(8, |c| c as usize),
        seed: value("--seed").map_or_else(|| fastrand::u64(..), |s| s as u64),
        server: args
            .iter()
            .position(|a| a == "--server")
            .and_then(|i| args.get(i + 1))
            .cloned(),
    }
}

/// One kind of processor the clients create: type, config, and port names.
struct Kind {
    processor_type: &'static str,
    config: fn() -> Value,
    input: Option<&'static str>,
    output: Option<&'static str>,
}

const KINDS: &[Kind] = &[
    Kind {
        processor_type: "TestPatternProcessor",
        config: || json!({"width": 64, "height": 48, "fps": 60}),
        input: None,
        output: Some("video"),
    },
    Kind {
        processor_type: "ChordGeneratorProcessor",
        config: || json!({}),
        input: None,
        output: Some("audio"),
    },
    Kind {
        processor_type: "CountingSinkProcessor",
        config: || json!({}),
        input: Some("video"),
        output: None,
    },
    Kind {
        processor_type: "SimplePassthroughProcessor",
        config: || json!({}),
        input: Some("video"),
        output: Some("video"),
    },
    Kind {
        processor_type: "SoakFaultProcessor",
        config: || json!({"fail_setup": true}),
        input: Some("video"),
        output: Some("video"),
    },
    Kind {
        processor_type: "SoakFaultProcessor",
        config: || json!({"panic_setup": true}),
        input: Some("video"),
        output: Some("video"),
    },
    Kind {
        processor_type: "SoakFaultProcessor",
        config: || json!({"block_setup_ms": 1500}),
        input: Some("video"),
        output: Some("video"),
    },
    Kind {
        processor_type: "SoakFaultProcessor",
        config: || json!({"block_setup_ms": 200}),
        input: Some("video"),
        output: Some("video"),
    },
    Kind {
        processor_type: "SoakFaultProcessor",
        config: || json!({"panic_after": 20}),
        input: Some("video"),
        output: Some("video"),
    },
    Kind {
        processor_type: "SoakFaultProcessor",
        config: || json!({"error_after": 10}),
        input: Some("video"),
        output: Some("video"),
    },
    Kind {
        processor_type: "SoakFaultProcessor",
        config: || json!({"panic_in_teardown": true}),
        input: Some("video"),
        output: Some("video"),
    },
    Kind {
        processor_type: "SoakFaultProcessor",
        config: || json!({"slow_ms": 30}),
        input: Some("video"),
        output: Some("video"),
    },
    Kind {
        processor_type: "SoakDeadSinkProcessor",
        config: || json!({}),
        input: Some("video"),
        output: None,
    },
];

/// One churn client: random changes and reads until `stop`.
fn churn_client(
    addr: SocketAddr,
    seed: u64,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    strict: bool,
    built_in_only: bool,
) {
    let kinds: Vec<usize> = (0..KINDS.len())
        .filter(|k| !built_in_only || !KINDS[*k].processor_type.starts_with("Soak"))
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut http = Http::new(addr);
    let mut mine: Vec<(String, usize)> = Vec::new();
    let mut links: Vec<String> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.u32(0..100);
        let mut creating = None;
        let (method, path, body): (&str, String, Option<Value>) = match roll {
            0..=24 if mine.len() < 25 => {
                let k = kinds[rng.usize(0..kinds.len())];
                creating = Some(k);
                (
                    "POST",
                    "/api/processors".into(),
                    Some(
                        json!({"processor_type": KINDS[k].processor_type, "config": (KINDS[k].config)()}),
                    ),
                )
            }
            25..=49 if mine.len() >= 2 => {
                let from = &mine[rng.usize(0..mine.len())];
                let to = &mine[rng.usize(0..mine.len())];
                let (Some(out), Some(inp)) = (KINDS[from.1].output, KINDS[to.1].input) else {
                    continue;
                };
                let mut body = json!({"from_processor": from.0, "from_port": out, "to_processor": to.0, "to_port": inp});
                if rng.bool() {
                    body["overflow"] = json!("backpressure");
                }
                ("POST", "/api/connections".into(), Some(body))
            }
            50..=59 if !mine.is_empty() => {
                let (id, _) = mine.swap_remove(rng.usize(0..mine.len()));
                ("DELETE", format!("/api/processors/{id}"), None)
            }
            60..=67 if !links.is_empty() => {
                let id = links.swap_remove(rng.usize(0..links.len()));
                ("DELETE", format!("/api/connections/{id}"), None)
            }
            68..=69 => ("POST", "/api/runtime/stop".into(), Some(json!({}))),
            70..=72 => ("POST", "/api/runtime/start".into(), Some(json!({}))),
            73..=85 => ("GET", "/api/runtime/state".into(), None),
            86..=92 if !mine.is_empty() => {
                let (id, _) = &mine[rng.usize(0..mine.len())];
                ("GET", format!("/api/processors/{id}"), None)
            }
            93..=95 => ("GET", "/api/connections".into(), None),
            _ => ("GET", "/api/processors".into(), None),
        };
        tally.operations.fetch_add(1, Ordering::Relaxed);
        match http.request(method, &path, body.as_ref()) {
            Answer::Reply(status, json) if status >= 500 => {
                // After SIGTERM (not strict) a 503 "shutting down" is the right answer.
                if strict {
                    tally.server_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("soak: {method} {path} -> {status} {json}");
                }
            }
            Answer::Reply(status, json) => {
                if status >= 400 {
                    tally.client_errors.fetch_add(1, Ordering::Relaxed);
                }
                if let (Some(k), 201) = (creating, status) {
                    if let Some(id) = json["processor_id"].as_str() {
                        mine.push((id.to_string(), k));
                    }
                }
                if path == "/api/connections" && status == 201 {
                    if let Some(id) = json["link_id"].as_str() {
                        links.push(id.to_string());
                    }
                }
            }
            Answer::NoAnswer(why) => {
                if strict {
                    tally.unanswered.fetch_add(1, Ordering::Relaxed);
                    eprintln!("soak: {method} {path} got no answer: {why}");
                }
            }
        }
    }
}

/// A WebSocket client that subscribes to `/api/events` and never reads.
fn laggard(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).ok()?;
    let request = format!(
        "GET /api/events HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).ok()?;
    Some(s)
}

/// Threads and resident memory of a process, from /proc.
fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:") * 1024)
}

fn get(http: &mut Http, path: &str) -> Value {
    match http.request("GET", path, None) {
        Answer::Reply(200, json) => json,
        Answer::Reply(status, json) => panic!("GET {path}: {status} {json}"),
        Answer::NoAnswer(why) => panic!("GET {path}: no answer: {why}"),
    }
}

fn live_heap(http: &mut Http) -> u64 {
    get(http, "/api/processors/heap")["metrics"]["live_bytes"]
        .as_u64()
        .unwrap_or(0)
}

/// Checks the graph is consistent, removes everything but the server's own processors, and
/// checks it is back to them alone with nothing queued.
fn check_and_clean(http: &mut Http, own: u64) -> std::result::Result<usize, String> {
    let state = get(http, "/api/runtime/state");
    let processors = state["processors"].as_array().cloned().unwrap_or_default();
    let links = state["links"].as_array().cloned().unwrap_or_default();
    if state["processor_count"].as_u64() != Some(processors.len() as u64)
        || state["link_count"].as_u64() != Some(links.len() as u64)
    {
        return Err(format!("counts do not match the lists: {state}"));
    }
    let ids: Vec<&str> = processors.iter().filter_map(|p| p["id"].as_str()).collect();
    for link in &links {
        for end in ["from", "to"] {
            let processor = link[end]["processor"].as_str().unwrap_or("");
            if !ids.contains(&processor) {
                return Err(format!(
                    "link {} has a missing {end} end: {link}",
                    link["id"]
                ));
            }
        }
    }
    let mut removed = 0;
    for id in ids.iter().filter(|id| **id != "api" && **id != "heap") {
        match http.request("DELETE", &format!("/api/processors/{id}"), None) {
            Answer::Reply(204 | 404, _) => removed += 1,
            Answer::Reply(status, json) => return Err(format!("DELETE {id}: {status} {json}")),
            Answer::NoAnswer(why) => return Err(format!("DELETE {id}: no answer: {why}")),
        }
    }
    // The runtime may have been left stopped by a client.
    if let Answer::Reply(status, json) =
        http.request("POST", "/api/runtime/start", Some(&json!({})))
    {
        if status != 200 {
            return Err(format!("start: {status} {json}"));
        }
    }
    let state = get(http, "/api/runtime/state");
    if state["processor_count"] != own || state["link_count"] != 0 || state["queued_bytes"] != 0 {
        return Err(format!("not back to the server's own processors: {state}"));
    }
    Ok(removed)
}

/// A POST that must answer `expected`.
fn post(
    http: &mut Http,
    path: &str,
    body: Value,
    expected: u16,
) -> std::result::Result<(), String> {
    match http.request("POST", path, Some(&body)) {
        Answer::Reply(status, _) if status == expected => Ok(()),
        Answer::Reply(status, json) => Err(format!("POST {path}: {status} {json}")),
        Answer::NoAnswer(why) => Err(format!("POST {path}: no answer: {why}")),
    }
}

/// A burst through a backpressure chain arrives whole and in order.
fn backpressure_phase(http: &mut Http, count: u64) -> std::result::Result<(), String> {
    let link = |from: &str, to: &str| json!({"from_processor": from, "from_port": "video", "to_processor": to, "to_port": "video", "overflow": "backpressure", "capacity": 16});
    // Built while stopped: the source writes its burst as soon as it runs, so its link must
    // be there first.
    post(http, "/api/runtime/stop", json!({}), 200)?;
    post(
        http,
        "/api/processors",
        json!({"processor_type": "SoakCheckSinkProcessor", "id": "bp-sink"}),
        201,
    )?;
    post(
        http,
        "/api/processors",
        json!({"processor_type": "SoakFaultProcessor", "id": "bp-mid"}),
        201,
    )?;
    post(
        http,
        "/api/processors",
        json!({"processor_type": "SoakBurstProcessor", "id": "bp-src", "config": {"count": count}}),
        201,
    )?;
    post(http, "/api/connections", link("bp-mid", "bp-sink"), 201)?;
    post(http, "/api/connections", link("bp-src", "bp-mid"), 201)?;
    post(http, "/api/runtime/start", json!({}), 200)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sink = get(http, "/api/processors/bp-sink");
        let frames = sink["metrics"]["frames"].as_u64().unwrap_or(0);
        let gaps = sink["metrics"]["gaps"].as_u64().unwrap_or(0);
        if gaps > 0 {
            return Err(format!("{gaps} gaps in the frame numbers: {sink}"));
        }
        if frames == count {
            break;
        }
        if frames > count || Instant::now() > deadline {
            return Err(format!("{frames} of {count} frames arrived: {sink}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let links = get(http, "/api/connections");
    for link in links.as_array().into_iter().flatten() {
        if link["counters"]["dropped"] != 0 {
            return Err(format!("a backpressure link dropped frames: {link}"));
        }
    }
    Ok(())
}

/// The server process, killed if the driver returns early (a failed check, a panic).
struct KillOnDrop(Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start_server(external: Option<&str>) -> (Child, SocketAddr) {
    if let Some(command) = external {
        let mut child = Command::new("sh")
            .args(["-c", &format!("exec {command}")])
            .env("STREAMLIB_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the server command");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let addr = loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("the server command printed no http:// address");
            }
            if let Some(rest) = line.split("http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("");
                break addr
                    .parse()
                    .unwrap_or_else(|_| panic!("not an address: {line:?}"));
            }
        };
        std::thread::spawn(move || for _ in out.lines() {});
        return (child, addr);
    }
    let exe = std::env::current_exe().expect("the soak binary's path");
    let mut child = Command::new(exe)
        .arg("--serve")
        .env("STREAMLIB_LOG", "warn")
        // No backtraces for the panics made on purpose (their symbol tables would also be a
        // one-time 60 MB in the live heap figure).
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start the soak server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the server's address");
    let addr = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an address: {line:?}"));
    (child, addr)
}

/// Starts the churn clients; they run until the returned flag is raised.
fn churn(
    addr: SocketAddr,
    options: &Options,
    seed: u64,
    tally: &Arc<Tally>,
    strict: bool,
) -> (Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let clients = (0..options.clients)
        .map(|i| {
            let (stop, tally) = (stop.clone(), tally.clone());
            let built_in_only = options.server.is_some();
            std::thread::spawn(move || {
                churn_client(
                    addr,
                    seed.wrapping_add(i as u64),
                    stop,
                    tally,
                    strict,
                    built_in_only,
                )
            })
        })
        .collect();
    (stop, clients)
}

fn drive(options: &Options) -> std::result::Result<(), String> {
    println!(
        "soak: {} s, {} clients, seed {} (--seed to repeat)",
        options.secs, options.clients, options.seed
    );
    let external = options.server.as_deref();
    let (child, addr) = start_server(external);
    let mut child = KillOnDrop(child);
    // Our own server has the API and the heap probe; another has its API server.
    let own = if external.is_some() { 1 } else { 2 };
    let live_heap = |http: &mut Http| {
        if external.is_some() {
            0
        } else {
            live_heap(http)
        }
    };
    let pid = child.id();
    let mut http = Http::new(addr);
    std::thread::sleep(Duration::from_millis(500));
    let (threads_start, rss_start) = threads_and_rss(pid);
    let heap_start = live_heap(&mut http);
    println!(
        "soak: at start {threads_start} threads, RSS {} MiB, live heap {} KiB",
        rss_start >> 20,
        heap_start >> 10
    );
    // The baseline is taken after the first round: one-time allocations (thread-local and
    // lazily built tables, the symbol cache of a first panic's backtrace) are not growth.
    let (mut threads0, mut rss0, mut heap0) = (threads_start, rss_start, heap_start);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let total = Duration::from_secs(options.secs);
    let churn_secs = (options.secs as f64 / 6.0).clamp(5.0, 60.0);
    let mut round = 0u64;
    let mut peak = (threads0, rss0);
    while started.elapsed() + Duration::from_secs_f64(churn_secs) < total {
        round += 1;
        let mut laggards: Vec<TcpStream> = (0..4).filter_map(|_| laggard(addr)).collect();
        let (stop, clients) = churn(
            addr,
            options,
            options.seed.wrapping_add(round * 1000),
            &tally,
            true,
        );
        let end = Instant::now() + Duration::from_secs_f64(churn_secs);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(250));
            let now = threads_and_rss(pid);
            peak = (peak.0.max(now.0), peak.1.max(now.1));
            if child.try_wait().ok().flatten().is_some() {
                return Err("the server died during churn".into());
            }
        }
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join()
                .map_err(|_| "a client thread panicked".to_string())?;
        }
        laggards.clear();
        let removed = check_and_clean(&mut http, own)?;
        if external.is_none() {
            backpressure_phase(&mut http, 20_000)?;
            check_and_clean(&mut http, own)?;
        }
        // Abandoned setups end within their block time; threads are joined on the next create.
        std::thread::sleep(Duration::from_millis(1_600));
        let _ = http.request(
            "POST",
            "/api/processors",
            Some(&json!({"processor_type": "SimplePassthroughProcessor", "id": "reap"})),
        );
        let _ = http.request("DELETE", "/api/processors/reap", None);
        let (threads, rss) = threads_and_rss(pid);
        let heap = live_heap(&mut http);
        println!(
            "soak: round {round} at {:.0} s: {} operations so far, {removed} processors removed; {threads} threads, RSS {} MiB, live heap {} KiB",
            started.elapsed().as_secs_f64(),
            tally.operations.load(Ordering::Relaxed),
            rss >> 20,
            heap >> 10
        );
        if round == 1 {
            (threads0, rss0, heap0) = (threads, rss, heap);
            println!("soak: baseline after the warm-up round");
        }
        if threads > threads0 + 2 {
            return Err(format!(
                "threads not back to baseline: {threads} (baseline {threads0})"
            ));
        }
        if heap > heap0 + (8 << 20) {
            return Err(format!(
                "live heap not back to baseline: {heap} bytes (baseline {heap0})"
            ));
        }
        let failures =
            tally.server_errors.load(Ordering::Relaxed) + tally.unanswered.load(Ordering::Relaxed);
        if failures > 0 {
            return Err(format!(
                "{} server errors, {} unanswered requests",
                tally.server_errors.load(Ordering::Relaxed),
                tally.unanswered.load(Ordering::Relaxed)
            ));
        }
    }
    let (threads1, rss1) = threads_and_rss(pid);
    let heap1 = live_heap(&mut http);
    let operations = tally.operations.load(Ordering::Relaxed);
    let client_errors = tally.client_errors.load(Ordering::Relaxed);
    let server_errors = tally.server_errors.load(Ordering::Relaxed);
    let unanswered = tally.unanswered.load(Ordering::Relaxed);

    // The end: SIGTERM in the middle of churn.
    let (stop, clients) = churn(addr, options, options.seed ^ 0x5eed, &tally, false);
    std::thread::sleep(Duration::from_millis(
        fastrand::Rng::with_seed(options.seed).u64(200..3000),
    ));
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    if !kill.is_ok_and(|s| s.success()) {
        return Err("cannot send SIGTERM".into());
    }
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return Err("the server did not exit within 30 s of SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let exit_time = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join()
            .map_err(|_| "a client thread panicked".to_string())?;
    }
    if !status.success() {
        return Err(format!("the server exited with {status} after SIGTERM"));
    }
    println!("| what was tried | how many | result |");
    println!("|---|---|---|");
    println!(
        "| random API operations from {} clients over {} rounds ({} s) | {operations} | {client_errors} 4xx answers (bad links, failing setups: expected), {server_errors} 5xx, {unanswered} unanswered |",
        options.clients, round, options.secs,
    );
    if external.is_none() {
        println!(
            "| backpressure bursts of 20,000 numbered frames | {round} | every frame, in order, 0 dropped |"
        );
    }
    println!(
        "| threads / RSS / live heap: at start → after the warm-up round → peak → after the last round | {threads_start} → {threads0} → {} → {threads1} threads; {} → {} → {} → {} MiB RSS; {} → {} → {} KiB heap | threads back to the warm-up figure, heap within 8 MiB of it |",
        peak.0,
        rss_start >> 20,
        rss0 >> 20,
        peak.1 >> 20,
        rss1 >> 20,
        heap_start >> 10,
        heap0 >> 10,
        heap1 >> 10
    );
    println!(
        "| SIGTERM during churn | 1 | exit 0 in {} ms |",
        exit_time.as_millis()
    );
    Ok(())
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--serve") {
        return serve();
    }
    match drive(&options()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
