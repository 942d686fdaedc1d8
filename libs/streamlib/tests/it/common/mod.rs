//! Test harness: processors that script what tests need, and waiting helpers.
#![allow(dead_code)]

#[cfg(feature = "api-server")]
pub mod http;
#[cfg(feature = "api-server")]
pub mod ws;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use streamlib::core::{
    AudioFrame, ConfigError, Counter, LinkInput, LinkOutput, ProcessorConfig, ProcessorSpec,
    Result, RuntimeContext, StopSignal, StreamError, VideoFrame,
};

/// Creates `type_name` from JSON config and adds it.
pub fn add(
    rt: &mut streamlib::core::StreamRuntime,
    type_name: &str,
    config: serde_json::Value,
) -> streamlib::core::ProcessorUniqueId {
    rt.add_processor(
        streamlib::core::PROCESSOR_REGISTRY
            .create(type_name, config)
            .unwrap(),
    )
    .unwrap()
}

/// A processor's metric, 0 when it has not published it.
pub fn metric(
    rt: &streamlib::core::StreamRuntime,
    id: &streamlib::core::ProcessorUniqueId,
    name: &str,
) -> u64 {
    rt.processor_info(id)
        .unwrap()
        .metrics
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// Link options that lose nothing: the writer waits for the reader.
pub fn backpressure() -> streamlib::core::LinkOptions {
    streamlib::core::LinkOptions::default()
        .with_overflow(streamlib::core::OverflowPolicy::Backpressure)
}

/// Adds `type_name` to a running runtime, expects its setup to fail, checks the graph is
/// unchanged, and returns the setup error's message.
pub fn setup_error(type_name: &str, config: serde_json::Value) -> String {
    let mut rt = streamlib::core::StreamRuntime::new().unwrap();
    rt.start().unwrap();
    let result = rt.add_processor(
        streamlib::core::PROCESSOR_REGISTRY
            .create(type_name, config)
            .unwrap(),
    );
    assert!(
        rt.state().processors.is_empty(),
        "a failed add leaves the graph unchanged"
    );
    match result {
        Err(StreamError::ProcessorFailed { stage, error, .. }) => {
            assert_eq!(stage, "setup");
            error.to_string()
        }
        Err(other) => panic!("expected a setup failure, got {other}"),
        Ok(id) => panic!("expected a setup failure, got processor {id}"),
    }
}

/// `processor.port` as an output reference.
pub fn out(
    p: &streamlib::core::ProcessorUniqueId,
    port: &str,
) -> streamlib::core::OutputLinkPortRef {
    streamlib::core::OutputLinkPortRef::new(p.clone(), port)
}

/// `processor.port` as an input reference.
pub fn inp(
    p: &streamlib::core::ProcessorUniqueId,
    port: &str,
) -> streamlib::core::InputLinkPortRef {
    streamlib::core::InputLinkPortRef::new(p.clone(), port)
}

/// Generous bound for "this should happen soon": only reached when it never happens.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `cond` until true; false after `PATIENCE`.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// Asserts `cond` becomes true, with a message.
#[track_caller]
pub fn assert_eventually(what: &str, cond: impl FnMut() -> bool) {
    assert!(eventually(cond), "never happened: {what}");
}

// -------------------------------------------------------------------------------------------
// BurstSourceProcessor: writes `count` small numbered frames as fast as its links take them.

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BurstConfig {
    /// Frames to write.
    pub count: u64,
    /// Frame side in pixels.
    pub size: u32,
    /// Write the same payload every time (for zero-copy checks) instead of fresh ones.
    pub shared_payload: bool,
    /// End the stream after the burst.
    pub end: bool,
}

impl Default for BurstConfig {
    fn default() -> Self {
        Self {
            count: 100,
            size: 4,
            shared_payload: false,
            end: false,
        }
    }
}

impl ProcessorConfig for BurstConfig {
    fn validate(&self) -> std::result::Result<(), ConfigError> {
        ConfigError::check_range("size", self.size, 2, 4096)
    }
}

#[streamlib::processor(execution = Manual, description = "Test source: writes N numbered frames, then idles")]
pub struct BurstSourceProcessor {
    #[streamlib::output(description = "Numbered frames")]
    video: LinkOutput<VideoFrame>,
    #[streamlib::config]
    config: BurstConfig,
    stop: Option<StopSignal>,
}

/// Frame `n` of a burst: its number is in the first 8 bytes.
pub fn burst_frame(size: u32, n: u64) -> VideoFrame {
    let mut data = vec![0u8; (size * size * 4) as usize];
    data[..8].copy_from_slice(&n.to_le_bytes());
    VideoFrame::from_rgba(size, size, data, n, n).unwrap()
}

impl streamlib::core::Processor for BurstSourceProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.stop = Some(ctx.stop_signal());
        Ok(())
    }
    fn process(&mut self) -> Result<()> {
        let shared = burst_frame(self.config.size, 0);
        for n in 0..self.config.count {
            if self.stop.as_ref().is_some_and(|s| s.is_stopping()) {
                break;
            }
            let frame = if self.config.shared_payload {
                VideoFrame {
                    frame_number: n,
                    ..shared.clone()
                }
            } else {
                burst_frame(self.config.size, n)
            };
            self.video.write(frame);
        }
        if self.config.end {
            self.video.end();
        }
        Ok(())
    }
}

pub fn burst_source(count: u64) -> ProcessorSpec {
    BurstSourceProcessor::spec(BurstConfig {
        count,
        ..Default::default()
    })
}

// -------------------------------------------------------------------------------------------
// RecordingSinkProcessor: keeps every frame it receives, for tests to inspect.

/// Frames received by a recording sink.
pub type Recorded = Arc<Mutex<Vec<VideoFrame>>>;

#[streamlib::processor(execution = Reactive, description = "Test sink: records every frame")]
pub struct RecordingSinkProcessor {
    #[streamlib::input(description = "Frames to record")]
    video: LinkInput<VideoFrame>,
    store: Recorded,
    /// How many frames it had when its stream ended, each time it did.
    ends: Arc<Mutex<Vec<usize>>>,
}

impl streamlib::core::Processor for RecordingSinkProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.video.read() {
            self.store.lock().unwrap().push(frame);
        }
        Ok(())
    }
    fn on_end_of_stream(&mut self) -> Result<()> {
        let frames = self.store.lock().unwrap().len();
        self.ends.lock().unwrap().push(frames);
        Ok(())
    }
}

/// A recording sink and what it records: frames, and the frame count at each end of stream.
pub fn recording_sink_with_ends() -> (ProcessorSpec, Recorded, Arc<Mutex<Vec<usize>>>) {
    let p = RecordingSinkProcessor::Processor::from_config(Default::default());
    let (store, ends) = (p.store.clone(), p.ends.clone());
    (ProcessorSpec::new(p), store, ends)
}

pub fn recording_sink() -> (ProcessorSpec, Recorded) {
    let mut p = RecordingSinkProcessor::Processor::from_config(Default::default());
    let store = p.store.clone();
    p.store = store.clone();
    (ProcessorSpec::new(p), store)
}

// AudioRecorderProcessor: keeps every audio frame it receives.

/// Audio frames received by an audio recorder.
pub type RecordedAudio = Arc<Mutex<Vec<AudioFrame>>>;

#[streamlib::processor(execution = Reactive, description = "Test sink: records every audio frame")]
pub struct AudioRecorderProcessor {
    #[streamlib::input(description = "Audio to record")]
    audio: LinkInput<AudioFrame>,
    store: RecordedAudio,
}

impl streamlib::core::Processor for AudioRecorderProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.audio.read() {
            self.store.lock().unwrap().push(frame);
        }
        Ok(())
    }
}

pub fn audio_recorder() -> (ProcessorSpec, RecordedAudio) {
    let p = AudioRecorderProcessor::Processor::from_config(Default::default());
    let store = p.store.clone();
    (ProcessorSpec::new(p), store)
}

// -------------------------------------------------------------------------------------------
// IdleSinkProcessor: connected but never reads (to fill links on purpose).

#[streamlib::processor(execution = Reactive, description = "Test sink: never reads its input")]
pub struct IdleSinkProcessor {
    #[streamlib::input(description = "Ignored frames")]
    video: LinkInput<VideoFrame>,
}

impl streamlib::core::Processor for IdleSinkProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
// ProbeProcessor: a Reactive passthrough that counts its lifecycle and fails on request.

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// Return an error from setup.
    pub fail_setup: bool,
    /// Panic in process when this many frames have passed.
    pub panic_after: Option<u64>,
    /// Return an error from process when this many frames have passed.
    pub error_after: Option<u64>,
    /// Panic in teardown.
    pub panic_in_teardown: bool,
    /// Call the runtime service synchronously from setup (must be refused, not deadlock).
    pub call_service_in_setup: bool,
    /// Run a closure on the main thread from setup (must be serviced while start waits).
    pub use_main_thread_in_setup: bool,
    /// Block in setup until the test opens the gate of this name (`open_gate`), at most 60 s.
    pub setup_gate: Option<String>,
    /// Block in teardown until the test opens the gate of this name, at most 60 s.
    pub teardown_gate: Option<String>,
}

/// Gates that `ProbeConfig::setup_gate` and `teardown_gate` wait on: a test decides when a setup ends.
static GATES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static GATE_OPENED: std::sync::Condvar = std::sync::Condvar::new();

/// Opens a setup gate: every probe waiting on `name` finishes its setup.
pub fn open_gate(name: &str) {
    GATES.lock().unwrap().push(name.to_string());
    GATE_OPENED.notify_all();
}

fn wait_for_gate(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut open = GATES.lock().unwrap();
    while !open.iter().any(|g| g == name) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        open = GATE_OPENED.wait_timeout(open, deadline - now).unwrap().0;
    }
}

impl ProcessorConfig for ProbeConfig {}

#[streamlib::processor(execution = Reactive, description = "Test passthrough that counts its lifecycle and fails on request")]
pub struct ProbeProcessor {
    #[streamlib::input(description = "Frames in")]
    video: LinkInput<VideoFrame>,
    #[streamlib::output(name = "video", description = "Frames out")]
    video_out: LinkOutput<VideoFrame>,
    #[streamlib::config]
    config: ProbeConfig,
    passed: u64,
    teardowns: Option<Counter>,
}

impl streamlib::core::Processor for ProbeProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        ctx.counter("setups").add(1);
        self.teardowns = Some(ctx.counter("teardowns"));
        if self.config.use_main_thread_in_setup {
            let main = ctx.main_thread();
            let on_main = main.run(|| std::thread::current().name().map(str::to_string))?;
            ctx.counter("main_thread_runs").add(1);
            // Which thread ran it, for the test to compare with the runtime's.
            ctx.emit_event("main_thread", serde_json::json!({ "name": on_main }));
        }
        if self.config.call_service_in_setup {
            let service = ctx.runtime_service();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(service.get_state())?;
        }
        if let Some(gate) = &self.config.setup_gate {
            wait_for_gate(gate);
        }
        if self.config.fail_setup {
            return Err(StreamError::processor("probe told to fail in setup"));
        }
        Ok(())
    }
    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.video.read() {
            self.passed += 1;
            if self.config.panic_after == Some(self.passed) {
                panic!("probe told to panic after {} frames", self.passed);
            }
            if self.config.error_after == Some(self.passed) {
                return Err(StreamError::processor("probe told to fail in process"));
            }
            self.video_out.write(frame);
        }
        Ok(())
    }
    fn teardown(&mut self) -> Result<()> {
        if let Some(gate) = &self.config.teardown_gate {
            wait_for_gate(gate);
        }
        if let Some(t) = &self.teardowns {
            t.add(1);
        }
        if self.config.panic_in_teardown {
            panic!("probe told to panic in teardown");
        }
        Ok(())
    }
}

pub fn probe(config: ProbeConfig) -> ProcessorSpec {
    ProbeProcessor::spec(config)
}

// -------------------------------------------------------------------------------------------
// SumProcessor: ports declared from config (like a mixer): `inputs: N` gives input_0..input_{N-1}.

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SumConfig {
    /// Number of inputs.
    pub inputs: u32,
}

impl Default for SumConfig {
    fn default() -> Self {
        Self { inputs: 2 }
    }
}

impl ProcessorConfig for SumConfig {
    fn validate(&self) -> std::result::Result<(), ConfigError> {
        ConfigError::check_range("inputs", self.inputs, 1, 64)
    }
}

#[streamlib::processor(execution = Reactive, description = "Test mixer: sums N audio inputs sample by sample")]
pub struct SumProcessor {
    #[streamlib::input(name = "input", count = config.inputs, description = "Audio to sum")]
    inputs: Vec<LinkInput<AudioFrame>>,
    #[streamlib::output(description = "The sum")]
    audio: LinkOutput<AudioFrame>,
    #[streamlib::config]
    config: SumConfig,
    pending: Vec<Option<AudioFrame>>,
}

impl streamlib::core::Processor for SumProcessor::Processor {
    fn setup(&mut self, _: &RuntimeContext) -> Result<()> {
        self.pending = vec![None; self.inputs.len()];
        Ok(())
    }
    fn process(&mut self) -> Result<()> {
        for (slot, input) in self.pending.iter_mut().zip(&self.inputs) {
            if slot.is_none() {
                *slot = input.read_next();
            }
        }
        if self.pending.iter().all(|p| p.is_some()) {
            let frames: Vec<AudioFrame> =
                self.pending.iter_mut().filter_map(|p| p.take()).collect();
            let first = &frames[0];
            let mut sum = vec![0.0f32; first.samples.len()];
            for f in &frames {
                for (s, v) in sum.iter_mut().zip(f.samples.iter()) {
                    *s += v;
                }
            }
            self.audio.write(AudioFrame::new(
                first.sample_rate,
                first.channels,
                sum,
                first.timestamp_ns,
                first.frame_number,
            )?);
        }
        Ok(())
    }
}

#[streamlib::processor(execution = Manual, description = "Test source: writes the audio frames it is given")]
pub struct AudioScriptProcessor {
    #[streamlib::output(description = "Scripted audio")]
    audio: LinkOutput<AudioFrame>,
    script: Vec<AudioFrame>,
}

impl streamlib::core::Processor for AudioScriptProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        for f in self.script.drain(..) {
            self.audio.write(f);
        }
        Ok(())
    }
}

pub fn audio_script(frames: Vec<AudioFrame>) -> ProcessorSpec {
    let mut p = AudioScriptProcessor::Processor::from_config(Default::default());
    p.script = frames;
    ProcessorSpec::new(p)
}

// -------------------------------------------------------------------------------------------
// A runtime on its own thread (as `streamlib serve` has it on the main thread), for tests that
// drive it through the service or the API.

/// A `StreamRuntime` running `run()` on a thread of its own; dropped = shut down and joined.
pub struct RuntimeThread {
    pub service: streamlib::core::RuntimeService,
    shutdown: streamlib::core::ShutdownHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RuntimeThread {
    /// Starts a runtime, lets `setup` add processors, then runs it.
    pub fn start(setup: impl FnOnce(&mut streamlib::core::StreamRuntime) + Send + 'static) -> Self {
        Self::with_limits(Default::default(), setup)
    }

    /// [`RuntimeThread::start`] with the given limits.
    pub fn with_limits(
        limits: streamlib::core::RuntimeLimits,
        setup: impl FnOnce(&mut streamlib::core::StreamRuntime) + Send + 'static,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("test-runtime".to_string())
            .spawn(move || {
                let mut rt = streamlib::core::StreamRuntime::with_limits(limits).unwrap();
                // As under `streamlib serve`: an API server needs files confined.
                let media = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("api-media");
                rt.set_file_access(streamlib::core::FileAccess::beneath(media).unwrap());
                setup(&mut rt);
                tx.send((rt.runtime_service(), rt.shutdown_handle()))
                    .unwrap();
                rt.run().unwrap();
            })
            .unwrap();
        let (service, shutdown) = rx.recv().unwrap();
        Self {
            service,
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        self.shutdown.request();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs a future to completion on a fresh current-thread Tokio runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

// -------------------------------------------------------------------------------------------
// EventSpammerProcessor: publishes `count` processor events as fast as it can (to make slow
// WebSocket clients lag).

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpamConfig {
    /// Events to publish.
    pub count: u64,
}

impl ProcessorConfig for SpamConfig {}

#[streamlib::processor(execution = Manual, description = "Test source of events: publishes N processor events at once")]
pub struct EventSpammerProcessor {
    #[streamlib::config]
    config: SpamConfig,
    ctx: Option<RuntimeContext>,
}

impl streamlib::core::Processor for EventSpammerProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.ctx = Some(ctx.clone());
        Ok(())
    }
    fn process(&mut self) -> Result<()> {
        if let Some(ctx) = &self.ctx {
            for i in 0..self.config.count {
                ctx.emit_event("spam", serde_json::json!({ "i": i }));
            }
        }
        Ok(())
    }
}

/// Adds an API server with id `api` on a free port (through the service) and returns its address.
#[cfg(feature = "api-server")]
pub fn api_on_free_port(
    service: &streamlib::core::RuntimeService,
    config: streamlib::core::ApiServerConfig,
) -> std::net::SocketAddr {
    use streamlib::core::{ApiServerConfig, ApiServerProcessor};
    block_on(async {
        let id = service
            .add_processor(
                ApiServerProcessor::spec(ApiServerConfig { port: 0, ..config }).with_id("api"),
            )
            .await
            .unwrap();
        let port = service.get_processor(id).await.unwrap().metrics["port"];
        std::net::SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap()))
    })
}

/// An API server config without rate limiting (for tests that make many changes).
#[cfg(feature = "api-server")]
pub fn unlimited() -> streamlib::core::ApiServerConfig {
    streamlib::core::ApiServerConfig {
        options: streamlib::core::service::http::ApiOptions {
            rate_limit_per_second: 0,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Reports a test that returned early because this machine cannot exercise it (e.g. it has the
/// device whose absence the test checks). Written to the terminal directly, past the test
/// harness's output capture, so the skip shows in `cargo test`'s output even when it passes.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED ({}): {why}",
        std::thread::current().name().unwrap_or("test")
    );
}

/// Requests the runtime's shutdown when dropped: a client thread holds one, so `run()` returns
/// however the client ends, also if it panics (the test then fails instead of hanging).
pub struct ShutdownOnDrop(pub streamlib::core::ShutdownHandle);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.request();
    }
}
