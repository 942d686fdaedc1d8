//! Link transport benchmark: frames through a chain of 10 Reactive passthrough stages.
//!
//! Run: `cargo bench -p streamlib --bench links` (add `-- --frames N` to change the count;
//! `-- --quick` runs each measurement once on 20,000 frames).
//!
//! Measures, in one run:
//! 1. small frames (64-byte payload) per second through source → 10 passthroughs → sink, with
//!    `backpressure` links (every frame delivered and counted): once with one payload shared
//!    by every frame (our source's way), once with a new payload allocated per frame (as
//!    GStreamer's `fakesrc` allocates a buffer per push), so the comparison is like for like;
//! 2. per-hop latency p50/p99 of single frames sent 1 ms apart through the same chain;
//! 3. 8 MB frames per second through the same chain, checking every delivered frame still
//!    points at the source's pixels (zero payload copies);
//! 4. heap allocations per frame in the link path during (1) (counting global allocator);
//! 5. GStreamer's rate for the same shape (`fakesrc ! (queue ! identity) x10 ! queue ! fakesink`),
//!    when `gst-launch-1.0` is installed, and the ratio.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use streamlib::core::{InputLinkPortRef, OutputLinkPortRef, ProcessorConfig};
use streamlib::core::{
    LinkInput, LinkOptions, LinkOutput, OverflowPolicy, ProcessorSpec, Result, RuntimeContext,
    SimplePassthroughProcessor, StopSignal, StreamError, StreamRuntime, VideoFrame, media_clock_ns,
};

const STAGES: usize = 10;
/// Ring size of every link: GStreamer's default `queue` holds 200 buffers.
const CAPACITY: usize = 200;

// ---------------------------------------------------------------------------------------------
// Allocation counting

struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Whether the next run counts allocations (between the first write and the last read).
static COUNT_NEXT_RUN: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts calls.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

// ---------------------------------------------------------------------------------------------
// Bench processors (results go to statics: one bench runs at a time)

static RECEIVED: AtomicU64 = AtomicU64::new(0);
static START_NS: AtomicU64 = AtomicU64::new(0);
static END_NS: AtomicU64 = AtomicU64::new(0);
static EXPECTED_PTR: AtomicUsize = AtomicUsize::new(0);
static COPIED: AtomicU64 = AtomicU64::new(0);
static LATENCIES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct SourceConfig {
    /// Frames to send.
    count: u64,
    /// Payload bytes per frame.
    bytes: usize,
    /// Send one frame at a time, 1 ms apart, stamped with the send time (latency mode).
    spaced: bool,
    /// Allocate a new payload for every frame (as GStreamer's fakesrc does per buffer)
    /// instead of sharing one.
    fresh: bool,
}

impl ProcessorConfig for SourceConfig {}

#[streamlib::processor(execution = Manual, description = "Bench source")]
struct BenchSourceProcessor {
    #[streamlib::output(description = "frames")]
    video: LinkOutput<VideoFrame>,
    #[streamlib::config]
    config: SourceConfig,
    stop: Option<StopSignal>,
}

impl streamlib::core::Processor for BenchSourceProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.stop = Some(ctx.stop_signal());
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        let side = ((self.config.bytes / 4) as f64).sqrt().max(1.0) as u32;
        let frame = VideoFrame::from_rgba(side, side, vec![7u8; (side * side * 4) as usize], 0, 0)?;
        // With a payload per frame there is no one pointer to check against.
        let shared_ptr = if self.config.fresh {
            0
        } else {
            frame.data.as_ptr() as usize
        };
        EXPECTED_PTR.store(shared_ptr, Ordering::SeqCst);
        START_NS.store(media_clock_ns(), Ordering::SeqCst);
        // The window opens at the first write and closes at the last read (in the sink): it
        // covers only the steady state of the link path, not setup or thread start.
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(COUNT_NEXT_RUN.load(Ordering::SeqCst), Ordering::SeqCst);
        for n in 0..self.config.count {
            if self.stop.as_ref().is_some_and(|s| s.is_stopping()) {
                break;
            }
            let mut f = if self.config.fresh {
                VideoFrame::from_rgba(side, side, vec![7u8; (side * side * 4) as usize], 0, 0)?
            } else {
                frame.clone()
            };
            f.frame_number = n;
            f.timestamp_ns = media_clock_ns();
            self.video.write(f);
            if self.config.spaced {
                while RECEIVED.load(Ordering::Acquire) <= n {
                    std::thread::sleep(Duration::from_micros(100));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct SinkConfig {
    /// Frames expected.
    count: u64,
    /// Record each frame's latency.
    latency: bool,
}

impl ProcessorConfig for SinkConfig {}

#[streamlib::processor(execution = Reactive, description = "Bench sink")]
struct BenchSinkProcessor {
    #[streamlib::input(description = "frames")]
    video: LinkInput<VideoFrame>,
    #[streamlib::config]
    config: SinkConfig,
}

impl streamlib::core::Processor for BenchSinkProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        let expected = EXPECTED_PTR.load(Ordering::Relaxed);
        while let Some(frame) = self.video.read() {
            if self.config.latency {
                let latency = media_clock_ns().saturating_sub(frame.timestamp_ns);
                if let Ok(mut l) = LATENCIES.lock() {
                    l.push(latency);
                }
            }
            if expected != 0 && frame.data.as_ptr() as usize != expected {
                COPIED.fetch_add(1, Ordering::Relaxed);
            }
            let n = RECEIVED.fetch_add(1, Ordering::AcqRel) + 1;
            if n == self.config.count {
                COUNTING.store(false, Ordering::SeqCst);
                END_NS.store(media_clock_ns(), Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

struct ChainRun {
    frames: u64,
    seconds: f64,
    copies: u64,
    allocations: u64,
}

/// How the source makes its frames.
#[derive(Clone, Copy, PartialEq)]
enum Payload {
    /// One payload shared by every frame.
    Shared,
    /// A new payload per frame.
    Fresh,
}

fn run_chain(
    count: u64,
    bytes: usize,
    spaced: bool,
    count_allocs: bool,
    payload: Payload,
) -> Result<ChainRun> {
    RECEIVED.store(0, Ordering::SeqCst);
    END_NS.store(0, Ordering::SeqCst);
    COPIED.store(0, Ordering::SeqCst);
    if let Ok(mut l) = LATENCIES.lock() {
        l.clear();
        l.reserve(count as usize);
    }
    // Every frame here shares one payload, but the memory budgets count each queued handle
    // (they cannot know it is shared): for the 8 MB run they are raised past what 11 full
    // links of 200 frames would count, so this measures the link path, not the budget policy.
    let limits = if bytes >= 1 << 20 {
        streamlib::core::RuntimeLimits {
            max_queued_mib: 11 * 200 * (bytes as u64 >> 20) + 1024,
            max_link_mib: 200 * (bytes as u64 >> 20) + 256,
            ..Default::default()
        }
    } else {
        Default::default()
    };
    let mut rt = StreamRuntime::with_limits(limits)?;
    let source = rt.add_processor(BenchSourceProcessor::spec(SourceConfig {
        count,
        bytes,
        spaced,
        fresh: payload == Payload::Fresh,
    }))?;
    let mut prev = source;
    let options = LinkOptions::default()
        .with_overflow(OverflowPolicy::Backpressure)
        .with_capacity(CAPACITY);
    for _ in 0..STAGES {
        let stage = rt.add_processor(SimplePassthroughProcessor::spec(Default::default()))?;
        rt.connect_with(
            OutputLinkPortRef::new(prev, "video"),
            InputLinkPortRef::new(stage.clone(), "video"),
            options,
        )?;
        prev = stage;
    }
    let sink = rt.add_processor(ProcessorSpec::new(
        BenchSinkProcessor::Processor::from_config(SinkConfig {
            count,
            latency: spaced,
        }),
    ))?;
    rt.connect_with(
        OutputLinkPortRef::new(prev, "video"),
        InputLinkPortRef::new(sink, "video"),
        options,
    )?;

    COUNT_NEXT_RUN.store(count_allocs, Ordering::SeqCst);
    rt.start()?;
    while RECEIVED.load(Ordering::Acquire) < count {
        std::thread::sleep(Duration::from_millis(2));
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    rt.stop()?;
    let lost: u64 = rt.links().iter().map(|l| l.counters.dropped).sum();
    assert_eq!(lost, 0, "backpressure links must not drop");
    let seconds = (END_NS.load(Ordering::SeqCst) - START_NS.load(Ordering::SeqCst)) as f64 / 1e9;
    Ok(ChainRun {
        frames: RECEIVED.load(Ordering::SeqCst),
        seconds,
        copies: COPIED.load(Ordering::SeqCst),
        allocations,
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// GStreamer: buffers/s through the same thread-per-stage shape, startup cancelled out by
/// timing two lengths. Median of 3.
fn gstreamer_rate(frames: u64) -> Option<f64> {
    let time = |n: u64| -> Option<f64> {
        let mut args: Vec<String> = vec![
            "-q".into(),
            "fakesrc".into(),
            "sizetype=fixed".into(),
            "sizemax=64".into(),
            "filltype=nothing".into(),
            format!("num-buffers={n}"),
        ];
        for _ in 0..STAGES {
            args.extend(["!", "queue", "!", "identity"].map(String::from));
        }
        args.extend(["!", "queue", "!", "fakesink", "sync=false"].map(String::from));
        let started = Instant::now();
        let status = Command::new("gst-launch-1.0").args(&args).status().ok()?;
        status.success().then(|| started.elapsed().as_secs_f64())
    };
    let small = frames / 20;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t_big = time(frames)?;
        let t_small = time(small)?;
        rates.push((frames - small) as f64 / (t_big - t_small).max(1e-9));
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    Some(rates[1])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let frames: u64 = args
        .iter()
        .position(|a| a == "--frames")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20_000 } else { 200_000 });
    let runs_wanted: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let skip_gst = args.iter().any(|a| a == "--skip-gst");
    println!(
        "# streamlib link benchmark: source -> {STAGES} Reactive passthroughs -> sink, backpressure links of {CAPACITY}"
    );

    // Warm-up, then the measured throughput runs (median of 3).
    run_chain(frames / 10, 64, false, false, Payload::Shared)?;
    if args.iter().any(|a| a == "--throughput-only") {
        let mut rates = Vec::new();
        for _ in 0..runs_wanted.max(1) {
            let r = run_chain(frames, 64, false, false, Payload::Shared)?;
            rates.push(r.frames as f64 / r.seconds);
        }
        rates.sort_by(|a, b| b.total_cmp(a));
        let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!("throughput runs: {}", shown.join(", "));
        return Ok(());
    }
    let mut runs = Vec::new();
    for _ in 0..runs_wanted.max(1) {
        runs.push(run_chain(frames, 64, false, true, Payload::Shared)?);
    }
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let all: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.0}", r.frames as f64 / r.seconds))
        .collect();
    println!(
        "small-frame runs (frames/s, fastest first): {}",
        all.join(", ")
    );
    let small = &runs[runs.len() / 2];
    let rate = small.frames as f64 / small.seconds;
    // Links never copy a payload: a copy is a regression, not a figure.
    if let Some(run) = runs.iter().find(|r| r.copies != 0) {
        return Err(StreamError::processor(format!(
            "{} payload copies in a small-frame run: links must not copy",
            run.copies
        )));
    }
    println!(
        "small frames (64 B), median run: {} frames in {:.3} s = {:.0} frames/s; payload copies: {}; allocations in the link path: {} ({:.4} per frame)",
        small.frames,
        small.seconds,
        rate,
        small.copies,
        small.allocations,
        small.allocations as f64 / small.frames as f64
    );

    // The same with a new payload per frame, as GStreamer's fakesrc allocates one per buffer.
    let mut fresh_rates = Vec::new();
    for _ in 0..runs_wanted.max(1) {
        let r = run_chain(frames, 64, false, false, Payload::Fresh)?;
        fresh_rates.push(r.frames as f64 / r.seconds);
    }
    fresh_rates.sort_by(|a, b| b.total_cmp(a));
    let fresh_rate = fresh_rates[fresh_rates.len() / 2];
    println!(
        "small frames (64 B), a new payload allocated per frame (as GStreamer's fakesrc does per buffer), median run: {fresh_rate:.0} frames/s"
    );

    let samples = if quick { 200 } else { 2_000 };
    run_chain(samples, 64, true, false, Payload::Shared)?;
    let mut latencies = LATENCIES.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort_unstable();
    let hops = (STAGES + 1) as f64;
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    println!(
        "latency, frames 1 ms apart ({samples} samples, {hops} hops): end-to-end p50 {:.1} us, p99 {:.1} us; end-to-end / hops (not measured per hop) p50 {:.1} us, p99 {:.1} us",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        p50 as f64 / 1e3 / hops,
        p99 as f64 / 1e3 / hops
    );

    let big = run_chain(frames / 4, 8 * 1024 * 1024, false, true, Payload::Shared)?;
    if big.copies != 0 {
        return Err(StreamError::processor(format!(
            "{} payload copies of 8 MB frames: links must not copy",
            big.copies
        )));
    }
    println!(
        "8 MB frames: {} frames in {:.3} s = {:.0} frames/s; payload copies: {}; allocations in the link path: {} (the payload is shared, so the cost does not depend on its size)",
        big.frames,
        big.seconds,
        big.frames as f64 / big.seconds,
        big.copies,
        big.allocations
    );

    if skip_gst {
        return Ok(());
    }
    match gstreamer_rate(frames) {
        Some(gst) => println!(
            "gstreamer 1.x, same shape (fakesrc ! (queue ! identity) x{STAGES} ! queue ! fakesink, 64 B buffers): {:.0} buffers/s; streamlib / gstreamer = {:.2}x with a shared payload, {:.2}x with a payload per frame",
            gst,
            rate / gst,
            fresh_rate / gst
        ),
        None => println!(
            "gstreamer: gst-launch-1.0 not found (apt install gstreamer1.0-tools); no comparison"
        ),
    }
    Ok(())
}
