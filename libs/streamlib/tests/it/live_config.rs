//! Live config changes and per-processor restarts through the service: a running processor
//! takes a live field between two frames (the tone changes, no frame is skipped), a field that
//! is not live is refused unless a restart is asked for, an invalid value changes nothing, and
//! a restart keeps the links (a failed processor comes back).

use crate::common;

use common::*;
use serde_json::json;
use streamlib::core::*;

/// The power of `freq` in `samples` (one channel) at `rate` (Goertzel).
fn power(samples: &[f32], rate: f64, freq: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * freq / rate).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Which of `a` and `b` Hz dominates a frame (its first channel).
fn dominant(frame: &AudioFrame, a: f64, b: f64) -> f64 {
    let mono: Vec<f32> = frame
        .samples
        .iter()
        .step_by(usize::from(frame.channels))
        .copied()
        .collect();
    let rate = f64::from(frame.sample_rate);
    if power(&mono, rate, a) > power(&mono, rate, b) {
        a
    } else {
        b
    }
}

/// A chord generator (`id` "chord", one tone) feeding an audio recorder ("sink") over a link
/// that loses nothing, added to `rt`.
fn chord_into_recorder(rt: &mut StreamRuntime, freq: f64, recorder: ProcessorSpec) {
    let chord = rt
        .add_processor(
            PROCESSOR_REGISTRY
                .create(
                    "ChordGeneratorProcessor",
                    json!({"frequencies": [freq], "channels": 1, "amplitude": 0.5}),
                )
                .unwrap()
                .with_id("chord"),
        )
        .unwrap();
    let sink = rt.add_processor(recorder.with_id("sink")).unwrap();
    rt.connect_with(out(&chord, "audio"), inp(&sink, "audio"), backpressure())
        .unwrap();
}

/// A runtime thread running chord -> sink, and what the sink records.
fn running_chord(freq: f64) -> (RuntimeThread, RecordedAudio) {
    let (recorder, store) = audio_recorder();
    let rt = RuntimeThread::start(move |rt| chord_into_recorder(rt, freq, recorder));
    (rt, store)
}

fn frames(store: &RecordedAudio) -> usize {
    store.lock().unwrap().len()
}

fn chord() -> ProcessorUniqueId {
    ProcessorUniqueId::new("chord")
}

/// Frame numbers of what was recorded, checked to run on by one from `first`.
#[track_caller]
fn assert_continuous(store: &RecordedAudio, first: u64) {
    let numbers: Vec<u64> = store
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.frame_number)
        .collect();
    let expected: Vec<u64> = (first..first + numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "frame numbers skip or repeat");
}

#[test]
fn the_schema_marks_live_fields_and_the_descriptor_lists_them() {
    let chord = PROCESSOR_REGISTRY
        .descriptor("ChordGeneratorProcessor")
        .unwrap();
    let mut live = chord.live_fields.clone();
    live.sort();
    assert_eq!(live, ["amplitude", "frequencies"]);
    let props = &chord.config_schema["properties"];
    assert_eq!(props["frequencies"][LIVE_KEYWORD], json!(true));
    assert_eq!(props["amplitude"][LIVE_KEYWORD], json!(true));
    assert!(props["sample_rate"].get(LIVE_KEYWORD).is_none());
    // A field whose schema is a reference to a definition is marked beside the reference.
    let pattern = PROCESSOR_REGISTRY
        .descriptor("TestPatternProcessor")
        .unwrap();
    assert_eq!(
        pattern.config_schema["properties"]["pattern"][LIVE_KEYWORD],
        json!(true)
    );
    assert!(
        PROCESSOR_REGISTRY
            .live_fields("ProbeProcessor")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_live_frequency_change_changes_the_tone_between_two_frames_with_no_frame_lost() {
    let (rt, store) = running_chord(440.0);
    let mut events = rt.service.subscribe_events();
    assert_eventually("the 440 Hz tone was recorded", || frames(&store) >= 20);
    let update = block_on(rt.service.update_config(
        chord(),
        ConfigChange::Merge(json!({"frequencies": [880.0]})),
        false,
    ))
    .unwrap();
    assert_eq!(update.applied, ConfigApplied::Live);
    assert_eq!(update.changed, ["frequencies"]);
    assert_eq!(update.config["frequencies"], json!([880.0]));
    // Everything else kept its value.
    assert_eq!(update.config["amplitude"], json!(0.5));
    let answered_at = frames(&store);
    assert_eventually("the 880 Hz tone was recorded", || {
        frames(&store) >= answered_at + 20
    });
    let recorded = store.lock().unwrap().clone();
    let tones: Vec<f64> = recorded.iter().map(|f| dominant(f, 440.0, 880.0)).collect();
    // Every frame is all one tone or all the other: 440 up to the change, 880 after it.
    let switch = tones.iter().position(|t| *t == 880.0).unwrap();
    assert!(
        switch >= 20,
        "the tone changed before the request: {tones:?}"
    );
    assert!(
        tones[switch..].iter().all(|t| *t == 880.0),
        "the tone went back: {tones:?}"
    );
    // The change was in force when the answer came: every frame made after it is at 880 Hz.
    // (The sink may be behind the source by the link's 4 frames and the one being made.)
    assert!(
        switch <= answered_at + 6,
        "switch at {switch}, answered at {answered_at}"
    );
    // The source was not restarted: its frames run on, none skipped.
    assert_continuous(&store, 0);
    // The change was announced.
    let announced = block_on(async {
        loop {
            match events.recv().await {
                Ok(RuntimeEvent {
                    kind:
                        RuntimeEventKind::ConfigChanged {
                            processor_id,
                            changed,
                            applied,
                        },
                    ..
                }) => break (processor_id, changed, applied),
                Ok(_) => continue,
                Err(e) => panic!("no config_changed event: {e}"),
            }
        }
    });
    assert_eq!(
        announced,
        (
            chord(),
            vec!["frequencies".to_string()],
            ConfigApplied::Live
        )
    );
    let info = block_on(rt.service.get_processor(chord())).unwrap();
    assert_eq!(info.config["frequencies"], json!([880.0]));
}

#[test]
fn a_field_that_is_not_live_is_refused_unless_a_restart_is_asked_for_and_a_restart_keeps_the_links()
{
    let (rt, store) = running_chord(440.0);
    assert_eventually("frames flow", || frames(&store) >= 5);
    let links_before = block_on(rt.service.get_state()).unwrap().links;
    let e = block_on(rt.service.update_config(
        chord(),
        ConfigChange::Merge(json!({"sample_rate": 44100, "amplitude": 0.25})),
        false,
    ))
    .unwrap_err();
    assert_eq!(e.code(), "config_not_live");
    let message = e.to_string();
    assert!(message.contains("field 'sample_rate'"), "{message}");
    assert!(
        !message.contains("'amplitude'"),
        "only the fields that are not live: {message}"
    );
    assert!(
        message.contains("frequencies, amplitude") || message.contains("amplitude, frequencies"),
        "{message}"
    );
    assert!(message.contains("restart"), "{message}");
    // Nothing changed, not even the live field sent with it.
    let info = block_on(rt.service.get_processor(chord())).unwrap();
    assert_eq!(info.config["sample_rate"], json!(48000));
    assert_eq!(info.config["amplitude"], json!(0.5));

    let update = block_on(rt.service.update_config(
        chord(),
        ConfigChange::Merge(json!({"sample_rate": 44100})),
        true,
    ))
    .unwrap();
    assert_eq!(update.applied, ConfigApplied::Restarted);
    assert_eq!(update.changed, ["sample_rate"]);
    let info = block_on(rt.service.get_processor(chord())).unwrap();
    assert_eq!(info.state, ProcessorStatus::Running);
    assert_eq!(info.config["sample_rate"], json!(44100));
    // The same link, still there: frames at the new rate reach the sink through it.
    let links_after = block_on(rt.service.get_state()).unwrap().links;
    assert_eq!(
        links_before.iter().map(|l| &l.id).collect::<Vec<_>>(),
        links_after.iter().map(|l| &l.id).collect::<Vec<_>>()
    );
    assert_eventually("frames at 44.1 kHz arrive", || {
        store
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.sample_rate == 44_100)
            .count()
            >= 5
    });
    // A restart is a new run of the source: its frame numbers start again, after the last
    // frame of the old run (none is lost on a backpressure link).
    let recorded = store.lock().unwrap().clone();
    let first_new = recorded
        .iter()
        .position(|f| f.sample_rate == 44_100)
        .unwrap();
    assert!(
        recorded[..first_new]
            .iter()
            .all(|f| f.sample_rate == 48_000)
    );
    assert_eq!(recorded[first_new].frame_number, 0);
}

#[test]
fn an_invalid_value_is_refused_naming_the_field_and_the_config_in_force_stays() {
    let (rt, store) = running_chord(440.0);
    assert_eventually("frames flow", || frames(&store) >= 5);
    for (patch, field) in [
        (json!({"frequencies": [440.0, 0.0]}), "frequencies[1]"),
        (json!({"amplitude": "loud"}), "amplitude"),
        (json!({"volume": 1}), "volume"),
        (json!(null), "merge patch"),
    ] {
        let e = block_on(rt.service.update_config(
            chord(),
            ConfigChange::Merge(patch.clone()),
            true,
        ))
        .unwrap_err();
        assert_eq!(e.code(), "invalid_config", "{patch}: {e}");
        assert!(e.to_string().contains(field), "{patch}: {e}");
    }
    let info = block_on(rt.service.get_processor(chord())).unwrap();
    assert_eq!(info.config["frequencies"], json!([440.0]));
    assert_eq!(info.state, ProcessorStatus::Running);
    let before = frames(&store);
    assert_eventually("frames still flow", || frames(&store) > before + 5);
    assert_continuous(&store, 0);
    // An unknown processor is not found; a change to nothing is answered `unchanged`.
    let e = block_on(rt.service.update_config(
        ProcessorUniqueId::new("ghost"),
        ConfigChange::Merge(json!({})),
        false,
    ))
    .unwrap_err();
    assert_eq!(e.code(), "processor_not_found");
    let same = block_on(rt.service.update_config(
        chord(),
        ConfigChange::Replace(info.config.clone()),
        false,
    ))
    .unwrap();
    assert_eq!(
        (same.applied, same.changed.len()),
        (ConfigApplied::Unchanged, 0)
    );
}

#[test]
fn a_failed_processor_takes_a_new_config_and_comes_back_with_its_links_on_restart() {
    let (recorder, store) = recording_sink();
    let rt = RuntimeThread::start(move |rt| {
        let src = add(
            rt,
            "TestPatternProcessor",
            json!({"width": 16, "height": 16, "fps": 200}),
        );
        let probe = rt
            .add_processor(
                probe(ProbeConfig {
                    fail_setup: true,
                    ..Default::default()
                })
                .with_id("probe"),
            )
            .unwrap();
        let sink = rt.add_processor(recorder.with_id("sink")).unwrap();
        rt.connect(out(&src, "video"), inp(&probe, "video"))
            .unwrap();
        rt.connect(out(&probe, "video"), inp(&sink, "video"))
            .unwrap();
    });
    let probe_id = ProcessorUniqueId::new("probe");
    assert_eventually("the probe failed in setup", || {
        block_on(rt.service.get_processor(probe_id.clone()))
            .unwrap()
            .state
            == ProcessorStatus::Failed
    });
    // Not running: any field may change, and is stored for the next setup.
    let update = block_on(rt.service.update_config(
        probe_id.clone(),
        ConfigChange::Merge(json!({"fail_setup": false})),
        false,
    ))
    .unwrap();
    assert_eq!(update.applied, ConfigApplied::Stored);
    assert_eq!(frames_of(&store), 0);
    let sink_id = ProcessorUniqueId::new("sink");
    let sink_ended = || {
        block_on(rt.service.get_processor(sink_id.clone()))
            .unwrap()
            .ended
    };
    assert!(sink_ended(), "the probe's failure ended the sink's stream");
    // Alone, the probe comes back; the sink, whose stream had ended, is left as it is.
    let info = block_on(rt.service.restart_processor(probe_id.clone(), false)).unwrap();
    assert_eq!(info.state, ProcessorStatus::Running);
    assert_eq!(info.error, None);
    assert!(sink_ended());
    // With `downstream`, the ended sink is restarted too, and frames reach it.
    block_on(rt.service.restart_processor(probe_id.clone(), true)).unwrap();
    assert_eventually("frames pass the probe to the sink", || {
        frames_of(&store) >= 10
    });
    assert!(!sink_ended());
    // Restarting a running processor keeps it running, and its links.
    let info = block_on(rt.service.restart_processor(probe_id.clone(), false)).unwrap();
    assert_eq!(info.state, ProcessorStatus::Running);
    let before = frames_of(&store);
    assert_eventually("frames pass again", || frames_of(&store) >= before + 10);
    assert_eq!(block_on(rt.service.get_state()).unwrap().link_count, 2);
    // A restart whose setup fails leaves it failed, still linked, and says why.
    block_on(rt.service.update_config(
        probe_id.clone(),
        ConfigChange::Merge(json!({"fail_setup": true})),
        true,
    ))
    .unwrap_err();
    let info = block_on(rt.service.get_processor(probe_id.clone())).unwrap();
    assert_eq!(info.state, ProcessorStatus::Failed);
    assert!(info.error.unwrap().contains("probe told to fail in setup"));
    assert_eq!(block_on(rt.service.get_state()).unwrap().link_count, 2);
    let e = block_on(rt.service.restart_processor(probe_id.clone(), false)).unwrap_err();
    assert_eq!(e.code(), "processor_failed");
    let e = block_on(
        rt.service
            .restart_processor(ProcessorUniqueId::new("ghost"), false),
    )
    .unwrap_err();
    assert_eq!(e.code(), "processor_not_found");
}

fn frames_of(store: &Recorded) -> usize {
    store.lock().unwrap().len()
}

#[test]
fn a_stopped_runtime_stores_any_change_and_the_next_start_uses_it() {
    let (recorder, store) = audio_recorder();
    let mut rt = StreamRuntime::new().unwrap();
    chord_into_recorder(&mut rt, 440.0, recorder);
    let service = rt.runtime_service();
    let client = std::thread::spawn(move || {
        block_on(service.update_config(
            chord(),
            ConfigChange::Merge(json!({"sample_rate": 32000, "buffer_size": 320})),
            false,
        ))
    });
    assert_eventually("the change was answered", || {
        rt.poll_commands();
        client.is_finished()
    });
    let update = client.join().unwrap().unwrap();
    assert_eq!(update.applied, ConfigApplied::Stored);
    assert_eq!(update.changed, ["sample_rate", "buffer_size"]);
    rt.start().unwrap();
    assert_eventually("frames arrive", || frames(&store) >= 3);
    rt.stop().unwrap();
    let first = store.lock().unwrap()[0].clone();
    assert_eq!((first.sample_rate, first.samples.len()), (32_000, 320));
}

#[test]
fn a_change_that_would_change_the_ports_is_refused() {
    let rt = RuntimeThread::start(|rt| {
        rt.add_processor(
            PROCESSOR_REGISTRY
                .create("AudioMixerProcessor", json!({"inputs": 2}))
                .unwrap()
                .with_id("mix"),
        )
        .unwrap();
    });
    let mix = ProcessorUniqueId::new("mix");
    let e = block_on(rt.service.update_config(
        mix.clone(),
        ConfigChange::Merge(json!({"inputs": 3})),
        true,
    ))
    .unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert!(
        e.to_string()
            .contains("input_0, input_1 -> input_0, input_1, input_2"),
        "{e}"
    );
    // Gains are live: changed in place.
    let update = block_on(rt.service.update_config(
        mix.clone(),
        ConfigChange::Merge(json!({"gains": [0.5, 2.0]})),
        false,
    ))
    .unwrap();
    assert_eq!(update.applied, ConfigApplied::Live);
    let info = block_on(rt.service.get_processor(mix)).unwrap();
    assert_eq!(info.config["inputs"], json!(2));
    assert_eq!(info.config["gains"], json!([0.5, 2.0]));
}
