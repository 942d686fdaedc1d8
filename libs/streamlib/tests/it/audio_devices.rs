//! AudioOutputProcessor and AudioCaptureProcessor against ALSA's `null` device (present on
//! every ALSA system, no sound card needed), and the exact errors when a device is missing.
#![cfg(all(target_os = "linux", feature = "audio-devices"))]

use crate::common;

use common::{add, assert_eventually, inp, metric, out, setup_error};
use streamlib::core::*;
use streamlib::linux::audio::{DeviceDirection, list_devices};

#[test]
fn null_device_is_listed() {
    assert!(list_devices(DeviceDirection::Output).contains(&"alsa:null".to_string()));
    assert!(list_devices(DeviceDirection::Input).contains(&"alsa:null".to_string()));
}

#[test]
fn output_plays_a_chord_resampled_and_remixed_to_the_device() {
    let mut rt = StreamRuntime::new().unwrap();
    // 44.1 kHz mono in; the device is opened at 48 kHz stereo.
    let chord = add(
        &mut rt,
        "ChordGeneratorProcessor",
        serde_json::json!({"sample_rate": 44100, "channels": 1, "buffer_size": 441}),
    );
    let speaker = add(
        &mut rt,
        "AudioOutputProcessor",
        serde_json::json!({"device": "alsa:null", "sample_rate": 48000, "channels": 2}),
    );
    rt.connect(out(&chord, "audio"), inp(&speaker, "audio"))
        .unwrap();
    rt.start().unwrap();
    // A second of audio (100 frames of 10 ms), however long the machine takes.
    assert_eventually("100 frames consumed", || {
        metric(&rt, &speaker, "frames_consumed") >= 100
    });
    rt.stop().unwrap();

    let info = rt.processor_info(&speaker).unwrap();
    assert_eq!(info.error, None);
    assert_eq!(info.counters.errors, 0);
    assert_eq!(metric(&rt, &speaker, "device_errors"), 0);
    let consumed = metric(&rt, &speaker, "frames_consumed");
    let played = metric(&rt, &speaker, "samples_played");
    // Each 441-sample frame at 44.1 kHz is 480 samples at 48 kHz. The null device takes all
    // it is given at once, and stopping plays the resampler's tail: nothing is lost.
    assert_eq!(played, consumed * 480, "consumed {consumed} frames");
    assert_eq!(metric(&rt, &speaker, "dropped_samples"), 0);
}

#[test]
fn capture_records_fixed_size_frames_in_the_configured_format() {
    let mut rt = StreamRuntime::new().unwrap();
    let mic = add(
        &mut rt,
        "AudioCaptureProcessor",
        serde_json::json!({"device": "null", "sample_rate": 16000, "channels": 1, "frame_size": 160}),
    );
    let (sink, recorded) = common::audio_recorder();
    let sink = rt.add_processor(sink).unwrap();
    rt.connect(out(&mic, "audio"), inp(&sink, "audio")).unwrap();
    rt.start().unwrap();
    assert_eventually("20 frames recorded", || {
        recorded.lock().unwrap().len() >= 20
    });
    rt.stop().unwrap();
    assert_eq!(rt.processor_info(&mic).unwrap().error, None);
    let frames = recorded.lock().unwrap();
    for f in frames.iter() {
        assert_eq!(
            (f.sample_rate, f.channels, f.samples.len()),
            (16000, 1, 160)
        );
        // ALSA's null device records silence.
        assert!(f.samples.iter().all(|s| *s == 0.0));
    }
    // The link (drop-oldest) may drop frames; those that arrive are in order and stamped by
    // the sample clock: at least 10 ms per frame number, in whole samples.
    for pair in frames.windows(2) {
        let numbers = pair[1].frame_number - pair[0].frame_number;
        let elapsed = pair[1].timestamp_ns - pair[0].timestamp_ns;
        assert!(numbers >= 1, "frames in order");
        assert!(
            elapsed >= numbers * 10_000_000,
            "{elapsed} ns for {numbers} frames"
        );
        assert_eq!(elapsed % 62_500, 0, "a whole number of 16 kHz samples");
    }
}

/// ALSA's `null` device is not paced: it delivers thousands of times real time. The capture
/// says so (`capture_unpaced`, once) and keeps only real time's worth, so a recording of a
/// second is about a second long, not a quarter of an hour.
#[test]
fn an_unpaced_device_is_kept_to_real_time() {
    let mut rt = StreamRuntime::new().unwrap();
    let mic = add(
        &mut rt,
        "AudioCaptureProcessor",
        serde_json::json!({"device": "alsa:null", "sample_rate": 16000, "channels": 1, "frame_size": 160, "buffer_ms": 200}),
    );
    let (sink, recorded) = common::audio_recorder();
    let sink = rt.add_processor(sink).unwrap();
    rt.connect_with(
        out(&mic, "audio"),
        inp(&sink, "audio"),
        LinkOptions::default().with_capacity(1024),
    )
    .unwrap();
    let mut events = rt.subscribe_events();
    let started = std::time::Instant::now();
    rt.start().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    rt.stop().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(rt.processor_info(&mic).unwrap().error, None);
    let frames = recorded.lock().unwrap();
    let last = frames.last().expect("frames recorded");
    // Every frame sent is numbered; 160 samples at 16 kHz is 10 ms each.
    let recorded_s = (last.frame_number + 1) as f64 * 0.01;
    // At most real time plus the queue (0.2 s) and the slack before it counts as unpaced
    // (0.5 s, and 10%); the device delivered far more.
    assert!(
        recorded_s <= elapsed * 1.1 + 0.7 && recorded_s >= elapsed * 0.5,
        "{recorded_s} s recorded in {elapsed} s"
    );
    // In order on the sample clock: at least 10 ms per frame number, in whole samples.
    for pair in frames.windows(2) {
        let numbers = pair[1].frame_number - pair[0].frame_number;
        let apart = pair[1].timestamp_ns - pair[0].timestamp_ns;
        assert!(numbers >= 1 && apart >= numbers * 10_000_000, "{apart} ns");
        assert_eq!(apart % 62_500, 0, "a whole number of 16 kHz samples");
    }
    // The device delivered far more than real time: read and discarded, or dropped by the
    // full queue.
    let discarded = metric(&rt, &mic, "unpaced_samples");
    let dropped = metric(&rt, &mic, "dropped_samples");
    assert!(discarded > 0, "nothing discarded");
    assert!(
        (discarded + dropped) as f64 > 10.0 * 16_000.0 * elapsed,
        "only {discarded} samples discarded and {dropped} dropped"
    );
    let mut unpaced = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let RuntimeEventKind::ProcessorEvent { name, data, .. } = event.kind {
            if name == "capture_unpaced" {
                unpaced.push(data);
            }
        }
    }
    assert_eq!(unpaced.len(), 1, "{unpaced:?}");
    assert_eq!(unpaced[0]["device"], "alsa:null");
}

/// Whether this machine has a sound card (then the default device works and the "missing
/// device" messages below do not apply).
fn has_sound_card() -> bool {
    std::fs::read_dir("/dev/snd").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("pcm"))
    })
}

#[test]
fn missing_devices_are_named_with_the_ones_there_are() {
    let outputs = list_devices(DeviceDirection::Output).join(", ");
    let inputs = list_devices(DeviceDirection::Input).join(", ");
    assert_eq!(
        setup_error(
            "AudioOutputProcessor",
            serde_json::json!({"device": "speakers"})
        ),
        format!(
            "AudioOutputProcessor: sound output device 'speakers' not found (output devices: {outputs})"
        )
    );
    assert_eq!(
        setup_error(
            "AudioCaptureProcessor",
            serde_json::json!({"device": "hw:9,0"})
        ),
        format!(
            "AudioCaptureProcessor: sound input device 'hw:9,0' not found (input devices: {inputs})"
        )
    );
    if has_sound_card() || outputs != "alsa:null" {
        common::skipped(
            "skipped the default-device check: this machine has a sound card or server",
        );
        return;
    }
    assert_eq!(
        setup_error("AudioOutputProcessor", serde_json::json!({"device": null})),
        "AudioOutputProcessor: sound output device 'alsa:default' is not available (no sound \
         card or sound server behind it); output devices: alsa:null"
    );
    assert_eq!(
        setup_error("AudioCaptureProcessor", serde_json::Value::Null),
        "AudioCaptureProcessor: sound input device 'alsa:default' is not available (no sound \
         card or sound server behind it); input devices: alsa:null"
    );
}

#[test]
fn configs_are_validated() {
    let e = PROCESSOR_REGISTRY
        .create("AudioOutputProcessor", serde_json::json!({"channels": 0}))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid config for AudioOutputProcessor: field 'channels': must be between 1 and 32, got 0"
    );
    let e = PROCESSOR_REGISTRY
        .create(
            "AudioCaptureProcessor",
            serde_json::json!({"frame_size": 8}),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("field 'frame_size'"), "{e}");
}
