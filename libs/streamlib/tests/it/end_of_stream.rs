//! End of stream: a finite source's end flows downstream after its last frame, processors
//! finish (`on_end_of_stream`), and the graph reports that it has finished.

use crate::common;

use std::time::Duration;

use common::*;
use streamlib::core::*;

/// Waits (up to `PATIENCE`) for a `graph_finished` event.
fn wait_finished(events: &mut tokio::sync::broadcast::Receiver<RuntimeEvent>) {
    block_on(async {
        tokio::time::timeout(PATIENCE, async {
            loop {
                match events.recv().await {
                    Ok(event) if matches!(event.kind, RuntimeEventKind::GraphFinished) => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("events closed: {e}"),
                }
            }
        })
        .await
        .expect("the graph never finished")
    });
}

fn ended(rt: &StreamRuntime, id: &ProcessorUniqueId) -> bool {
    rt.processor_info(id).unwrap().ended
}

fn burst(count: u64) -> ProcessorSpec {
    BurstSourceProcessor::spec(BurstConfig {
        count,
        end: true,
        ..Default::default()
    })
}

#[test]
fn every_frame_arrives_before_the_end_and_the_graph_finishes() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(burst(1000)).unwrap();
    let pass = rt.add_processor(probe(ProbeConfig::default())).unwrap();
    let (sink, store, ends) = recording_sink_with_ends();
    let sink = rt.add_processor(sink).unwrap();
    // Small backpressure links: the source waits for the reader again and again.
    let small = backpressure().with_capacity(4);
    rt.connect_with(out(&src, "video"), inp(&pass, "video"), small)
        .unwrap();
    rt.connect_with(out(&pass, "video"), inp(&sink, "video"), small)
        .unwrap();
    let mut events = rt.subscribe_events();
    rt.start().unwrap();
    let service = rt.runtime_service();
    let waiter = std::thread::spawn(move || {
        wait_finished(&mut events);
        block_on(service.get_state()).unwrap()
    });
    assert_eventually("the graph finished", || {
        rt.poll_commands();
        waiter.is_finished()
    });
    let state = waiter.join().unwrap();
    assert!(state.processors.iter().all(|p| p.ended), "{state:?}");
    let numbers: Vec<u64> = store
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.frame_number)
        .collect();
    assert_eq!(
        numbers,
        (0..1000).collect::<Vec<_>>(),
        "every frame, in order"
    );
    assert_eq!(
        *ends.lock().unwrap(),
        [1000],
        "the end came after the last frame, once"
    );
    for id in [&src, &pass, &sink] {
        assert!(ended(&rt, id), "{id} ended");
    }
    // Still running (a finished graph is not stopped): `run` stops it, `serve` keeps it.
    assert_eq!(rt.status(), RuntimeStatus::Running);

    // A link connected after the end is ended at once.
    let (late, late_store, late_ends) = recording_sink_with_ends();
    let late = rt.add_processor(late).unwrap();
    rt.connect(out(&src, "video"), inp(&late, "video")).unwrap();
    assert_eventually("the late sink saw the end", || ended(&rt, &late));
    assert_eq!(*late_ends.lock().unwrap(), [0]);
    assert!(late_store.lock().unwrap().is_empty());

    // The next run plays the stream again, and ends again.
    rt.stop().unwrap();
    let mut events = rt.subscribe_events();
    rt.start().unwrap();
    let waiter = std::thread::spawn(move || wait_finished(&mut events));
    assert_eventually("the graph finished again", || {
        rt.poll_commands();
        waiter.is_finished()
    });
    waiter.join().unwrap();
    assert_eq!(store.lock().unwrap().len(), 2000);
    assert_eq!(*ends.lock().unwrap(), [1000, 2000]);
}

#[test]
fn a_mixer_with_one_finite_input_keeps_mixing_the_live_one() {
    let mut rt = StreamRuntime::new().unwrap();
    let live = add(
        &mut rt,
        "ChordGeneratorProcessor",
        serde_json::json!({"sample_rate": 48000, "channels": 1, "buffer_size": 480}),
    );
    let wav = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("eos-finite.wav");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("sine=frequency=220:sample_rate=48000")
        .args(["-t", "0.3", "-c:a", "pcm_f32le"])
        .arg(&wav)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success());
    let finite = add(
        &mut rt,
        "WavSourceProcessor",
        serde_json::json!({"path": wav, "frame_size": 480}),
    );
    let mixer = add(
        &mut rt,
        "AudioMixerProcessor",
        // A long wait for a silent input: only the end of the finite one lets the mix go on.
        serde_json::json!({"inputs": 2, "sample_rate": 48000, "channels": 1, "frame_size": 480, "max_wait_ms": 5000}),
    );
    let (rec, recorded) = audio_recorder();
    let rec = rt.add_processor(rec).unwrap();
    rt.connect(out(&live, "audio"), inp(&mixer, "input_0"))
        .unwrap();
    rt.connect(out(&finite, "audio"), inp(&mixer, "input_1"))
        .unwrap();
    rt.connect(out(&mixer, "audio"), inp(&rec, "audio"))
        .unwrap();
    let mut events = rt.subscribe_events();
    rt.start().unwrap();
    assert_eventually("the finite input ended", || {
        rt.poll_commands();
        ended(&rt, &finite)
    });
    let at_end = recorded.lock().unwrap().len();
    // Half a second later the mixer is still mixing the live input, not ended, and the
    // graph has not finished.
    let until = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < until {
        rt.poll_commands();
        std::thread::sleep(Duration::from_millis(10));
    }
    let later = recorded.lock().unwrap().len();
    assert!(
        later >= at_end + 30,
        "mixing went on: {at_end} -> {later} frames"
    );
    assert!(!ended(&rt, &mixer));
    while let Ok(event) = events.try_recv() {
        assert!(!matches!(event.kind, RuntimeEventKind::GraphFinished));
    }
    rt.stop().unwrap();
}

#[test]
fn wav_through_a_resampler_to_wav_accounts_for_every_sample() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let input = dir.join("eos-in.wav");
    let output = dir.join("eos-out.wav");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:sample_rate=48000")
        .args(["-t", "1.5", "-c:a", "pcm_f32le"])
        .arg(&input)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success());
    let mut rt = StreamRuntime::new().unwrap();
    let src = add(
        &mut rt,
        "WavSourceProcessor",
        serde_json::json!({"path": input, "realtime": false, "frame_size": 1000}),
    );
    let resample = add(
        &mut rt,
        "AudioResamplerProcessor",
        serde_json::json!({"sample_rate": 44100}),
    );
    let writer = add(
        &mut rt,
        "WavWriterProcessor",
        serde_json::json!({"path": output}),
    );
    rt.connect_with(out(&src, "audio"), inp(&resample, "audio"), backpressure())
        .unwrap();
    rt.connect_with(
        out(&resample, "audio"),
        inp(&writer, "audio"),
        backpressure(),
    )
    .unwrap();
    let mut events = rt.subscribe_events();
    rt.start().unwrap();
    let waiter = std::thread::spawn(move || {
        let mut written = None;
        let mut finished = false;
        block_on(async {
            tokio::time::timeout(PATIENCE, async {
                while !finished {
                    match events.recv().await.unwrap().kind {
                        RuntimeEventKind::ProcessorEvent { name, data, .. }
                            if name == "file_written" =>
                        {
                            written = Some(data)
                        }
                        RuntimeEventKind::GraphFinished => finished = true,
                        _ => {}
                    }
                }
            })
            .await
            .expect("the graph finished")
        });
        written
    });
    assert_eventually("the graph finished", || {
        rt.poll_commands();
        waiter.is_finished()
    });
    let written = waiter.join().unwrap().expect("a file_written event");
    // 1.5 s at 48 kHz is 72,000 samples; at 44.1 kHz, 66,150.
    assert_eq!(written["samples_per_channel"], 66_150, "{written}");
    assert_eq!(written["complete"], true);
    let shown = written["path"].as_str().unwrap();
    assert!(std::path::Path::new(shown).is_absolute(), "{shown}");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=sample_rate,duration_ts",
        ])
        .args(["-of", "csv=p=0"])
        .arg(&output)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&probe.stdout);
    assert_eq!(text.trim(), "44100,66150", "the file holds every sample");
    rt.stop().unwrap();
}

#[test]
fn a_source_that_fails_ends_its_readers_and_the_graph_finishes() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = add(
        &mut rt,
        "WavSourceProcessor",
        serde_json::json!({"path": "/nonexistent/eos.wav"}),
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("eos-failed.wav");
    let writer = add(
        &mut rt,
        "WavWriterProcessor",
        serde_json::json!({"path": path}),
    );
    rt.connect(out(&src, "audio"), inp(&writer, "audio"))
        .unwrap();
    let mut events = rt.subscribe_events();
    // Everything is decided during the start: the source fails its setup, the writer sees its
    // input end as soon as it runs.
    rt.start().unwrap();
    let waiter = std::thread::spawn(move || wait_finished(&mut events));
    assert_eventually("the graph finished", || {
        rt.poll_commands();
        waiter.is_finished()
    });
    waiter.join().unwrap();
    assert_eq!(
        rt.processor_info(&src).unwrap().state,
        ProcessorStatus::Failed
    );
    assert!(
        ended(&rt, &writer),
        "the writer's input ended with its failed source"
    );
}

/// Whether the graph has finished waits for a create in progress: what it sets up might
/// produce. Here the create then fails, so nothing can produce, and the graph finishes. Driven
/// through the service while `run()` serves, as under `streamlib run` and `serve`.
#[test]
fn the_graph_does_not_finish_while_a_create_is_in_progress() {
    let mut rt = StreamRuntime::new().unwrap();
    rt.start().unwrap();
    let mut events = rt.subscribe_events();
    let service = rt.runtime_service();
    let shutdown = rt.shutdown_handle();
    let client = std::thread::spawn(move || {
        let _shutdown_on_exit = ShutdownOnDrop(shutdown);
        block_on(async {
            let create = {
                let service = service.clone();
                tokio::spawn(async move {
                    service
                        .add_processor(probe(ProbeConfig {
                            setup_gate: Some("finish-waits-for-create".into()),
                            fail_setup: true,
                            ..Default::default()
                        }))
                        .await
                })
            };
            // The create has been sent (the task runs at this yield) and served: it is parked
            // (commands are served in order, so the answer to this comes after it).
            tokio::task::yield_now().await;
            service.get_state().await.unwrap();
            // Meanwhile a finite source is added and runs to its end.
            let src = service.add_processor(burst(10)).await.unwrap();
            tokio::time::timeout(PATIENCE, async {
                while !service.get_processor(src.clone()).await.unwrap().ended {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the source ended");
            // The runtime has served the end (an answer comes after it) and said nothing.
            service.get_state().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            while let Ok(event) = events.try_recv() {
                assert!(
                    !matches!(event.kind, RuntimeEventKind::GraphFinished),
                    "graph_finished while a create was in progress"
                );
            }
            assert!(!create.is_finished(), "the create is still in progress");
            open_gate("finish-waits-for-create");
            assert!(create.await.unwrap().is_err(), "its setup failed");
        });
        wait_finished(&mut events);
    });
    rt.run().unwrap();
    client.join().unwrap();
}
