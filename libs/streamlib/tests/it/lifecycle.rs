//! Runtime lifecycle: hot graph changes while frames flow, stop/start, isolation of failing
//! processors, events, draining at stop, main-thread work, run() and shutdown.

use crate::common;

use std::time::Duration;

use common::*;
use streamlib::core::*;

fn state_of(rt: &StreamRuntime, id: &ProcessorUniqueId) -> ProcessorStatus {
    rt.processor_info(id).unwrap().state
}
fn small_pattern(fps: f64) -> ProcessorSpec {
    TestPatternProcessor::spec(TestPatternConfig {
        width: 32,
        height: 32,
        fps,
        ..Default::default()
    })
}

#[test]
fn hot_add_connect_disconnect_remove_while_frames_flow() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(small_pattern(500.0)).unwrap();
    let sink = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    let direct = rt.connect(out(&src, "video"), inp(&sink, "video")).unwrap();
    rt.start().unwrap();
    assert_eventually("frames reach the sink", || {
        metric(&rt, &sink, "video_frames") > 5
    });

    // Insert a passthrough while running: it starts at once, the new links carry the next frames.
    let mid = rt
        .add_processor(SimplePassthroughProcessor::spec(Default::default()))
        .unwrap();
    assert_eventually("passthrough is running", || {
        state_of(&rt, &mid) == ProcessorStatus::Running
    });
    rt.disconnect(&direct.id()).unwrap();
    rt.connect(out(&src, "video"), inp(&mid, "video")).unwrap();
    rt.connect(out(&mid, "video"), inp(&sink, "video")).unwrap();
    let at_rewire = metric(&rt, &sink, "video_frames");
    assert_eventually("frames flow through the passthrough", || {
        rt.processor_info(&mid).unwrap().counters.process_calls > 5
            && metric(&rt, &sink, "video_frames") > at_rewire + 5
    });

    // Add a second source while running and fan it into a second sink.
    let src2 = rt.add_processor(small_pattern(500.0)).unwrap();
    let sink2 = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    rt.connect(out(&src2, "video"), inp(&sink2, "video"))
        .unwrap();
    assert_eventually("second chain flows", || {
        metric(&rt, &sink2, "video_frames") > 5
    });

    // Removing the middle processor removes its links first; the rest keeps running.
    rt.remove_processor(&mid).unwrap();
    assert_eq!(rt.state().link_count, 1);
    let before = metric(&rt, &sink2, "video_frames");
    assert_eventually("other chain unaffected", || {
        metric(&rt, &sink2, "video_frames") > before + 5
    });
    assert_eq!(state_of(&rt, &src), ProcessorStatus::Running);
    assert_eq!(
        rt.remove_processor(&mid).unwrap_err().code(),
        "processor_not_found"
    );
    rt.stop().unwrap();
}

#[test]
fn stop_then_start_three_times() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(small_pattern(500.0)).unwrap();
    let p = rt.add_processor(probe(Default::default())).unwrap();
    let sink = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    rt.connect(out(&src, "video"), inp(&p, "video")).unwrap();
    rt.connect(out(&p, "video"), inp(&sink, "video")).unwrap();
    for round in 1..=3 {
        rt.start().unwrap();
        assert_eq!(rt.status(), RuntimeStatus::Running);
        let before = metric(&rt, &sink, "video_frames");
        assert_eventually("frames flow after start", || {
            metric(&rt, &sink, "video_frames") > before + 3
        });
        rt.stop().unwrap();
        assert_eq!(rt.status(), RuntimeStatus::Stopped);
        assert_eq!(metric(&rt, &p, "setups"), round, "setup once per start");
        assert_eq!(
            metric(&rt, &p, "teardowns"),
            round,
            "teardown once per stop"
        );
        for id in [&src, &p, &sink] {
            assert_eq!(state_of(&rt, id), ProcessorStatus::Stopped);
        }
        let frames = metric(&rt, &sink, "video_frames");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            metric(&rt, &sink, "video_frames"),
            frames,
            "nothing runs while stopped"
        );
    }
}

#[test]
fn failing_processors_are_isolated() {
    let mut rt = StreamRuntime::new().unwrap();
    let mut events = rt.subscribe_events();
    let src = rt.add_processor(small_pattern(500.0)).unwrap();
    let panicky = rt
        .add_processor(probe(ProbeConfig {
            panic_after: Some(3),
            ..Default::default()
        }))
        .unwrap();
    let erring = rt
        .add_processor(probe(ProbeConfig {
            error_after: Some(2),
            ..Default::default()
        }))
        .unwrap();
    let bad_setup = rt
        .add_processor(probe(ProbeConfig {
            fail_setup: true,
            ..Default::default()
        }))
        .unwrap();
    let bad_teardown = rt
        .add_processor(probe(ProbeConfig {
            panic_in_teardown: true,
            ..Default::default()
        }))
        .unwrap();
    let healthy = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    let src2 = rt.add_processor(small_pattern(500.0)).unwrap();
    rt.connect(out(&src, "video"), inp(&panicky, "video"))
        .unwrap();
    rt.connect(out(&src2, "video"), inp(&erring, "video"))
        .unwrap();
    let fan = rt
        .add_processor(SimplePassthroughProcessor::spec(Default::default()))
        .unwrap();
    rt.connect(out(&src, "video"), inp(&fan, "video")).unwrap();
    rt.connect(out(&fan, "video"), inp(&bad_teardown, "video"))
        .unwrap();
    rt.connect(out(&bad_teardown, "video"), inp(&healthy, "video"))
        .unwrap();

    rt.start().unwrap();
    assert_eq!(state_of(&rt, &bad_setup), ProcessorStatus::Failed);
    let info = rt.processor_info(&bad_setup).unwrap();
    assert!(
        info.error
            .as_deref()
            .unwrap()
            .contains("probe told to fail in setup"),
        "{info:?}"
    );

    assert_eventually("panicking processor failed", || {
        state_of(&rt, &panicky) == ProcessorStatus::Failed
    });
    let info = rt.processor_info(&panicky).unwrap();
    assert!(
        info.error
            .as_deref()
            .unwrap()
            .contains("panicked: probe told to panic after 3 frames"),
        "{info:?}"
    );
    assert_eventually("erroring processor failed", || {
        state_of(&rt, &erring) == ProcessorStatus::Failed
    });
    assert!(
        rt.processor_info(&erring)
            .unwrap()
            .error
            .unwrap()
            .contains("process: probe told to fail in process")
    );

    let before = metric(&rt, &healthy, "video_frames");
    assert_eventually("the rest keeps running", || {
        metric(&rt, &healthy, "video_frames") > before + 10
    });
    assert_eq!(state_of(&rt, &src), ProcessorStatus::Running);

    rt.stop().unwrap();
    let info = rt.processor_info(&bad_teardown).unwrap();
    assert_eq!(info.state, ProcessorStatus::Failed);
    assert!(info.error.unwrap().contains("teardown: panicked"));
    assert_eq!(state_of(&rt, &healthy), ProcessorStatus::Stopped);

    // Failures were published as events.
    let mut failed = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let RuntimeEventKind::ProcessorFailed {
            processor_id,
            stage,
            ..
        } = e.kind
        {
            failed.push((processor_id, stage));
        }
    }
    for (id, stage) in [
        (&bad_setup, "setup"),
        (&panicky, "process"),
        (&erring, "process"),
        (&bad_teardown, "teardown"),
    ] {
        assert!(
            failed.iter().any(|(p, s)| p == id && s == stage),
            "missing {id} {stage} in {failed:?}"
        );
    }

    // The next start gives failed processors a new chance (setup runs again).
    rt.start().unwrap();
    assert_eventually("panicky runs again", || {
        let i = rt.processor_info(&panicky).unwrap();
        i.metrics.get("setups") == Some(&2)
    });
    rt.stop().unwrap();
}

#[test]
fn adding_a_processor_whose_setup_fails_changes_nothing() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(small_pattern(100.0)).unwrap();
    rt.start().unwrap();
    assert_eq!(
        state_of(&rt, &src),
        ProcessorStatus::Running,
        "start() returns with processors running"
    );
    let before = rt.state();
    let e = rt
        .add_processor(probe(ProbeConfig {
            fail_setup: true,
            ..Default::default()
        }))
        .unwrap_err();
    assert_eq!(e.code(), "processor_failed");
    assert!(
        e.to_string().contains("setup: probe told to fail in setup")
            || e.to_string().contains("failed in setup"),
        "{e}"
    );
    let after = rt.state();
    assert_eq!(after.processor_count, before.processor_count);
    assert_eq!(
        after.seq, before.seq,
        "no event for a processor that never joined"
    );
    rt.stop().unwrap();
}

#[test]
fn events_are_ordered_and_serialisable() {
    let mut rt = StreamRuntime::new().unwrap();
    let mut rx = rt.subscribe_events();
    let src = rt.add_processor(small_pattern(100.0)).unwrap();
    let sink = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    let link = rt.connect(out(&src, "video"), inp(&sink, "video")).unwrap();
    rt.start().unwrap();
    rt.stop().unwrap();
    rt.disconnect(&link.id()).unwrap();
    rt.remove_processor(&sink).unwrap();

    let mut all = Vec::new();
    while let Ok(e) = rx.try_recv() {
        all.push(e);
    }
    for pair in all.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "gapless, increasing seq");
    }
    let types: Vec<&str> = all.iter().map(|e| e.kind.type_name()).collect();
    let pos = |t: &str| {
        types
            .iter()
            .position(|x| *x == t)
            .unwrap_or_else(|| panic!("{t} missing from {types:?}"))
    };
    assert!(pos("processor_added") < pos("link_created"));
    assert!(pos("link_created") < pos("runtime_started"));
    assert!(pos("runtime_started") < pos("runtime_stopped"));
    assert!(pos("runtime_stopped") < pos("link_removed"));
    assert!(pos("link_removed") < pos("processor_removed"));
    assert!(types.contains(&"processor_state_changed"));
    let json = serde_json::to_value(&all[0]).unwrap();
    assert_eq!(json["type"], "processor_added");
    assert_eq!(json["processor_type"], "TestPatternProcessor");
    assert!(json["seq"].is_u64() && json["timestamp_ms"].is_u64());
    assert_eq!(
        rt.state().seq,
        all.last().unwrap().seq,
        "snapshot carries the last seq"
    );
}

#[test]
fn stop_drains_queued_frames_before_stopping_readers() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(burst_source(5_000)).unwrap();
    let mid = rt
        .add_processor(SimplePassthroughProcessor::spec(Default::default()))
        .unwrap();
    let sink = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    let bp = LinkOptions::default()
        .with_overflow(OverflowPolicy::Backpressure)
        .with_capacity(64);
    rt.connect_with(out(&src, "video"), inp(&mid, "video"), bp)
        .unwrap();
    rt.connect_with(out(&mid, "video"), inp(&sink, "video"), bp)
        .unwrap();
    rt.start().unwrap();
    // Stop as soon as the source is done writing: frames are still queued downstream.
    assert_eventually("source wrote everything", || {
        rt.links()[0].counters.written == 5_000
    });
    rt.stop().unwrap();
    assert_eq!(
        metric(&rt, &sink, "video_frames"),
        5_000,
        "nothing produced was lost at stop"
    );
}

#[test]
fn setup_can_use_the_main_thread_while_start_waits() {
    let mut rt = StreamRuntime::new().unwrap();
    let p = rt
        .add_processor(probe(ProbeConfig {
            use_main_thread_in_setup: true,
            ..Default::default()
        }))
        .unwrap();
    let mut events = rt.subscribe_events();
    rt.start().unwrap();
    assert_eq!(state_of(&rt, &p), ProcessorStatus::Running);
    assert_eq!(metric(&rt, &p, "main_thread_runs"), 1);
    // It ran on the runtime's thread (this test's), while start() waited for the setup.
    let ran_on = std::iter::from_fn(|| events.try_recv().ok()).find_map(|e| match e.kind {
        RuntimeEventKind::ProcessorEvent { name, data, .. } if name == "main_thread" => {
            Some(data["name"].clone())
        }
        _ => None,
    });
    let here = std::thread::current().name().map(str::to_string);
    assert_eq!(ran_on, Some(serde_json::json!(here)));
    rt.stop().unwrap();
}

#[test]
fn run_returns_on_shutdown_request_after_stopping_everything() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(small_pattern(200.0)).unwrap();
    let sink = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    rt.connect(out(&src, "video"), inp(&sink, "video")).unwrap();
    let service = rt.runtime_service();
    let shutdown = rt.shutdown_handle();
    let driver = std::thread::spawn(move || {
        // Whatever happens here, let run() return so a failure is reported, not a hang.
        struct RequestOnDrop(ShutdownHandle);
        impl Drop for RequestOnDrop {
            fn drop(&mut self) {
                self.0.request();
            }
        }
        let _guard = RequestOnDrop(shutdown);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let state = service.get_state().await.unwrap();
            assert_eq!(
                state.status,
                RuntimeStatus::Running,
                "run() starts the runtime"
            );
            loop {
                let s = service.get_state().await.unwrap();
                let frames = s
                    .processors
                    .iter()
                    .find(|p| p.processor_type == "CountingSinkProcessor")
                    .unwrap()
                    .metrics["video_frames"];
                if frames >= 10 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    });
    rt.run().unwrap();
    driver.join().unwrap();
    assert_eq!(rt.status(), RuntimeStatus::Stopped);
    assert_eq!(state_of(&rt, &src), ProcessorStatus::Stopped);
    assert!(metric(&rt, &sink, "video_frames") >= 10);
}

#[test]
fn test_pattern_content_arrives_intact() {
    // Backpressure so nothing is skipped: the sink's CRC must equal the CRC of frames 0..n
    // rendered independently.
    let config = TestPatternConfig {
        width: 48,
        height: 32,
        fps: 1000.0,
        ..Default::default()
    };
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt
        .add_processor(TestPatternProcessor::spec(config.clone()))
        .unwrap();
    let mid = rt
        .add_processor(SimplePassthroughProcessor::spec(Default::default()))
        .unwrap();
    let sink = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    let bp = LinkOptions::default().with_overflow(OverflowPolicy::Backpressure);
    rt.connect_with(out(&src, "video"), inp(&mid, "video"), bp)
        .unwrap();
    rt.connect_with(out(&mid, "video"), inp(&sink, "video"), bp)
        .unwrap();
    rt.start().unwrap();
    assert_eventually("some frames arrived", || {
        metric(&rt, &sink, "video_frames") >= 20
    });
    rt.stop().unwrap();
    let n = metric(&rt, &sink, "video_frames");
    assert_eq!(
        metric(&rt, &sink, "last_frame_number"),
        n - 1,
        "frames arrived in order, none skipped"
    );

    let renderer = TestPatternRenderer::new(&config).unwrap();
    let mut crc = crc32fast::Hasher::new();
    for i in 0..n {
        let f = renderer.render(i, 0).unwrap();
        for y in 0..f.height {
            crc.update(f.row(y).unwrap());
        }
    }
    assert_eq!(metric(&rt, &sink, "checksum"), u64::from(crc.finalize()));
    assert_eq!(metric(&rt, &sink, "bytes"), n * 48 * 32 * 4);
}

#[test]
fn a_shutdown_requested_before_run_is_honoured() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(small_pattern(100.0)).unwrap();
    rt.shutdown_handle().request();
    rt.run().unwrap(); // returns instead of running forever
    assert_eq!(rt.status(), RuntimeStatus::Stopped);
    assert_eq!(state_of(&rt, &src), ProcessorStatus::Stopped);
}

#[test]
fn a_writer_blocked_by_backpressure_still_stops_cleanly() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(burst_source(1_000)).unwrap();
    let sink = rt
        .add_processor(IdleSinkProcessor::spec(Default::default()))
        .unwrap();
    let bp = LinkOptions::default()
        .with_overflow(OverflowPolicy::Backpressure)
        .with_capacity(4);
    rt.connect_with(out(&src, "video"), inp(&sink, "video"), bp)
        .unwrap();
    rt.start().unwrap();
    assert_eventually("the source filled the link and waits", || {
        rt.links()[0].counters.queued == 4
    });
    rt.stop().unwrap();
    // Not abandoned ("did not stop within 5s"): it noticed its own stop while waiting.
    let info = rt.processor_info(&src).unwrap();
    assert_eq!(info.state, ProcessorStatus::Stopped, "{:?}", info.error);
    rt.start().unwrap();
    assert_eq!(
        state_of(&rt, &src),
        ProcessorStatus::Running,
        "and it can run again"
    );
    rt.stop().unwrap();
}

/// Panics inside the main-thread work it asks for during setup.
#[streamlib::processor(execution = Manual, description = "Test: main-thread work that panics")]
pub struct MainThreadPanicProcessor {}

impl streamlib::core::Processor for MainThreadPanicProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        ctx.main_thread()
            .run(|| -> u32 { panic!("window system exploded") })
            .map(|_| ())
    }

    fn process(&mut self) -> Result<()> {
        Ok(())
    }
}

#[test]
fn a_panic_in_main_thread_work_fails_that_processor_only() {
    let rt = RuntimeThread::start(|_| {});
    let service = rt.service.clone();
    let spec = ProcessorSpec::new(MainThreadPanicProcessor::Processor::from_config(
        Default::default(),
    ));
    let e = block_on(service.add_processor(spec)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "processor '{}' failed in setup: main-thread work panicked: window system exploded",
            e_processor(&e)
        )
    );
    // The runtime thread is still there and serving.
    let state = block_on(service.get_state()).unwrap();
    assert!(state.processors.is_empty());
}

fn e_processor(e: &StreamError) -> String {
    match e {
        StreamError::ProcessorFailed { processor, .. } => processor.clone(),
        other => panic!("expected ProcessorFailed, got {other}"),
    }
}
