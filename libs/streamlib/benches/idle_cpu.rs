//! CPU used by a started runtime that has nothing to do, and by the demo pipeline.
//!
//! Run: `cargo bench -p streamlib --bench idle_cpu` (Linux: reads /proc/self/stat).
//!
//! Scenario 1: `run()` on the main thread waiting for commands, with 10 Reactive passthroughs
//! and a sink started but no source: every thread should be asleep, so CPU ≈ 0.
//! Scenario 2: the same plus a 640x360 test pattern at 30 fps feeding the chain, for scale.

use std::time::{Duration, Instant};

use streamlib::core::{
    CountingSinkProcessor, InputLinkPortRef, OutputLinkPortRef, ProcessorUniqueId, Result,
    SimplePassthroughProcessor, StreamError, StreamRuntime, TestPatternConfig,
    TestPatternProcessor,
};

/// How long each scenario is measured (`-- --quick`: [`QUICK_WINDOW`]).
const WINDOW: Duration = Duration::from_secs(3);
/// The window of a quick run (CI runs it so this command keeps working).
const QUICK_WINDOW: Duration = Duration::from_secs(1);
/// /proc reports CPU time in USER_HZ ticks, which Linux fixes at 100 per second.
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map_err(|e| StreamError::io("cannot read /proc/self/stat", e))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((ticks(11) + ticks(12)) / TICKS_PER_SECOND)
}

fn chain(rt: &mut StreamRuntime) -> Result<ProcessorUniqueId> {
    let first = rt.add_processor(SimplePassthroughProcessor::spec(Default::default()))?;
    let mut prev = first.clone();
    for _ in 1..10 {
        let next = rt.add_processor(SimplePassthroughProcessor::spec(Default::default()))?;
        rt.connect(
            OutputLinkPortRef::new(prev, "video"),
            InputLinkPortRef::new(next.clone(), "video"),
        )?;
        prev = next;
    }
    let sink = rt.add_processor(CountingSinkProcessor::spec(Default::default()))?;
    rt.connect(
        OutputLinkPortRef::new(prev, "video"),
        InputLinkPortRef::new(sink, "video"),
    )?;
    Ok(first)
}

/// Runs `rt.run()` for `window` after a short settling time; returns CPU% of one core.
fn measure(rt: &mut StreamRuntime, window: Duration) -> Result<f64> {
    let shutdown = rt.shutdown_handle();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let start = (cpu_seconds(), Instant::now());
        std::thread::sleep(window);
        let end = (cpu_seconds(), Instant::now());
        let _ = tx.send((start, end));
        shutdown.request();
    });
    rt.run()?;
    let ((c0, t0), (c1, t1)) = rx
        .recv()
        .map_err(|_| StreamError::processor("measuring thread ended early"))?;
    Ok(100.0 * (c1? - c0?) / t1.duration_since(t0).as_secs_f64())
}

fn main() -> Result<()> {
    let window = if std::env::args().any(|a| a == "--quick") {
        QUICK_WINDOW
    } else {
        WINDOW
    };
    let mut idle = StreamRuntime::new()?;
    chain(&mut idle)?;
    let idle_cpu = measure(&mut idle, window)?;
    println!(
        "idle started runtime (run() waiting for commands, 11 Reactive processors, no source): {idle_cpu:.2}% of one core over {}s",
        window.as_secs()
    );

    let mut demo = StreamRuntime::new()?;
    let first = chain(&mut demo)?;
    let pattern = demo.add_processor(TestPatternProcessor::spec(TestPatternConfig {
        width: 640,
        height: 360,
        fps: 30.0,
        ..Default::default()
    }))?;
    demo.connect(
        OutputLinkPortRef::new(pattern, "video"),
        InputLinkPortRef::new(first, "video"),
    )?;
    let busy_cpu = measure(&mut demo, window)?;
    println!(
        "640x360 test pattern at 30 fps through the same 10 passthroughs into a checksumming sink: {busy_cpu:.2}% of one core"
    );
    Ok(())
}
