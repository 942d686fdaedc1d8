//! Audio and video processing end to end through a runtime: WAV round trip, resampling (rate,
//! length and the tone's frequency), mixing (sums, gains, limiting), channel conversion,
//! re-chunking, video scaling.

use crate::common;

use std::f64::consts::TAU;

use common::{
    add, assert_eventually, audio_recorder, audio_script, backpressure, inp, out, recording_sink,
};
use streamlib::core::*;

/// A `freq` Hz sine at `rate`, `frames` frames of `size` samples (mono).
fn sine_frames(
    freq: f64,
    rate: u32,
    size: usize,
    frames: usize,
    amplitude: f64,
) -> Vec<AudioFrame> {
    (0..frames)
        .map(|n| {
            let samples: Vec<f32> = (0..size)
                .map(|i| {
                    let t = (n * size + i) as f64 / f64::from(rate);
                    (amplitude * (TAU * freq * t).sin()) as f32
                })
                .collect();
            let ts = (n * size) as u64 * 1_000_000_000 / u64::from(rate);
            AudioFrame::new(rate, 1, samples, ts, n as u64).unwrap()
        })
        .collect()
}

fn constant_frames(value: f32, channels: u16, size: usize, frames: usize) -> Vec<AudioFrame> {
    (0..frames)
        .map(|n| {
            let ts = (n * size) as u64 * 1_000_000_000 / 48_000;
            AudioFrame::new(
                48_000,
                channels,
                vec![value; size * usize::from(channels)],
                ts,
                n as u64,
            )
            .unwrap()
        })
        .collect()
}

/// Runs `script` through the processor `type_name` (input `audio`, output `audio`), stops
/// once `done` holds for what was recorded, and returns it.
fn through(
    type_name: &str,
    config: serde_json::Value,
    script: Vec<AudioFrame>,
    done: impl Fn(&[AudioFrame]) -> bool,
) -> Vec<AudioFrame> {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(audio_script(script)).unwrap();
    let p = add(&mut rt, type_name, config);
    let (rec, recorded) = audio_recorder();
    let rec = rt.add_processor(rec).unwrap();
    rt.connect_with(out(&src, "audio"), inp(&p, "audio"), backpressure())
        .unwrap();
    rt.connect_with(out(&p, "audio"), inp(&rec, "audio"), backpressure())
        .unwrap();
    rt.start().unwrap();
    assert_eventually("the output arrived", || done(&recorded.lock().unwrap()));
    rt.stop().unwrap();
    assert_eq!(rt.processor_info(&p).unwrap().error, None);
    recorded.lock().unwrap().clone()
}

fn all_samples(frames: &[AudioFrame]) -> Vec<f32> {
    frames
        .iter()
        .flat_map(|f| f.samples.iter().copied())
        .collect()
}

/// The strongest frequency near `guess` (±50 Hz, 0.1 Hz steps), by correlation.
fn measure_frequency(samples: &[f32], rate: u32, guess: f64) -> f64 {
    let power = |f: f64| {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, s) in samples.iter().enumerate() {
            let phase = TAU * f * i as f64 / f64::from(rate);
            re += f64::from(*s) * phase.cos();
            im += f64::from(*s) * phase.sin();
        }
        re * re + im * im
    };
    let mut best = (guess, 0.0);
    let mut f = guess - 50.0;
    while f <= guess + 50.0 {
        let p = power(f);
        if p > best.1 {
            best = (f, p);
        }
        f += 0.1;
    }
    best.0
}

#[test]
fn wav_round_trip_keeps_the_samples() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (format, tolerance) in [
        ("f32", 0.0),
        ("i16", 0.5 / 32_768.0),
        ("i24", 0.5 / 8_388_608.0),
    ] {
        let path = dir.join(format!("round_trip_{format}.wav"));
        let script = sine_frames(440.0, 44_100, 441, 50, 0.8);
        let expected = all_samples(&script);

        let mut rt = StreamRuntime::new().unwrap();
        let src = rt.add_processor(audio_script(script)).unwrap();
        let writer = add(
            &mut rt,
            "WavWriterProcessor",
            serde_json::json!({"path": path, "sample_format": format}),
        );
        rt.connect_with(out(&src, "audio"), inp(&writer, "audio"), backpressure())
            .unwrap();
        rt.start().unwrap();
        assert_eventually("all samples written", || {
            rt.processor_info(&writer)
                .unwrap()
                .metrics
                .get("samples_written")
                == Some(&22_050)
        });
        rt.stop().unwrap();

        // Read back through WavSourceProcessor, as fast as the recorder takes it.
        let mut rt = StreamRuntime::new().unwrap();
        let source = add(
            &mut rt,
            "WavSourceProcessor",
            serde_json::json!({"path": path, "realtime": false, "frame_size": 1000}),
        );
        let (rec, recorded) = audio_recorder();
        let rec = rt.add_processor(rec).unwrap();
        rt.connect_with(out(&source, "audio"), inp(&rec, "audio"), backpressure())
            .unwrap();
        let mut events = rt.subscribe_events();
        rt.start().unwrap();
        assert_eventually("the whole file played", || {
            all_samples(&recorded.lock().unwrap()).len() == expected.len()
        });
        rt.stop().unwrap();
        let frames = recorded.lock().unwrap().clone();
        assert!(
            frames
                .iter()
                .all(|f| f.sample_rate == 44_100 && f.channels == 1)
        );
        assert_eq!(frames[0].samples.len(), 1000);
        let got = all_samples(&frames);
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Half a step of the integer formats (rounding), exact for f32.
        assert!(
            worst <= tolerance * 1.0001,
            "{format}: worst error {worst}, allowed {tolerance}"
        );
        // The end is announced.
        let mut ended = false;
        while let Ok(e) = events.try_recv() {
            if let RuntimeEventKind::ProcessorEvent { name, .. } = &e.kind {
                ended |= name == "end_of_stream";
            }
        }
        assert!(ended, "{format}: no end_of_stream event");
    }
}

#[test]
fn wav_errors_name_the_file() {
    let mut rt = StreamRuntime::new().unwrap();
    rt.start().unwrap();
    let e = rt
        .add_processor(
            PROCESSOR_REGISTRY
                .create(
                    "WavSourceProcessor",
                    serde_json::json!({"path": "/nonexistent/a.wav"}),
                )
                .unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "WavSourceProcessor: cannot open '/nonexistent/a.wav': No such file or directory"
        ),
        "{e}"
    );
    let e = rt
        .add_processor(
            PROCESSOR_REGISTRY
                .create(
                    "WavWriterProcessor",
                    serde_json::json!({"path": "/nonexistent/b.wav"}),
                )
                .unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "WavWriterProcessor: cannot create '/nonexistent/b.wav': No such file or directory"
        ),
        "{e}"
    );
    let not_wav = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("not_a.wav");
    std::fs::write(&not_wav, b"hello, this is text").unwrap();
    let e = rt
        .add_processor(
            PROCESSOR_REGISTRY
                .create("WavSourceProcessor", serde_json::json!({"path": not_wav}))
                .unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("Ill-formed WAVE file"), "{e}");
    let e = PROCESSOR_REGISTRY
        .create("WavSourceProcessor", serde_json::json!({}))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid config for WavSourceProcessor: field 'path': is required: the WAV file to play"
    );
}

#[test]
fn resampler_keeps_the_tone_and_gets_rate_and_length_exact() {
    // One second of 1 kHz at 44.1 kHz, in 10 ms frames.
    let frames = through(
        "AudioResamplerProcessor",
        serde_json::json!({"sample_rate": 48000}),
        sine_frames(1000.0, 44_100, 441, 100, 0.5),
        |f| all_samples(f).len() >= 47_000,
    );
    assert!(
        frames
            .iter()
            .all(|f| f.sample_rate == 48_000 && f.channels == 1)
    );
    // Stopping flushed the tail: exactly one second at the new rate.
    let samples = all_samples(&frames);
    assert_eq!(samples.len(), 48_000);
    // The tone is still 1 kHz (measured away from the edges) and keeps its level.
    let middle = &samples[4_800..43_200];
    let freq = measure_frequency(middle, 48_000, 1000.0);
    assert!((freq - 1000.0).abs() < 0.5, "measured {freq} Hz");
    let peak = middle.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    assert!((peak - 0.5).abs() < 0.01, "peak {peak}");
    // Timestamps follow the output samples from the first input's time.
    assert_eq!(frames[0].timestamp_ns, 0);
    let mut position = 0u64;
    for f in &frames {
        assert_eq!(f.timestamp_ns, position * 1_000_000_000 / 48_000);
        position += f.samples.len() as u64;
    }
}

#[test]
fn mixer_sums_with_gains_and_limits_to_full_scale() {
    let mut rt = StreamRuntime::new().unwrap();
    let a = rt
        .add_processor(audio_script(constant_frames(0.25, 2, 480, 10)))
        .unwrap();
    let b = rt
        .add_processor(audio_script(constant_frames(0.5, 1, 480, 10)))
        .unwrap();
    let c = rt
        .add_processor(audio_script(constant_frames(0.9, 2, 480, 10)))
        .unwrap();
    let mix = add(
        &mut rt,
        "AudioMixerProcessor",
        serde_json::json!({"inputs": 3, "gains": [1.0, 0.5, 0.0], "frame_size": 480, "max_wait_ms": 10000}),
    );
    let loud = add(
        &mut rt,
        "AudioMixerProcessor",
        serde_json::json!({"inputs": 2, "frame_size": 480, "max_wait_ms": 10000}),
    );
    let (rec, recorded) = audio_recorder();
    let rec = rt.add_processor(rec).unwrap();
    let (rec_loud, loud_recorded) = audio_recorder();
    let rec_loud = rt.add_processor(rec_loud).unwrap();
    let d = rt
        .add_processor(audio_script(constant_frames(0.9, 2, 480, 10)))
        .unwrap();
    let e = rt
        .add_processor(audio_script(constant_frames(0.3, 2, 480, 10)))
        .unwrap();
    for (src, dst) in [(&a, "input_0"), (&b, "input_1"), (&c, "input_2")] {
        rt.connect_with(out(src, "audio"), inp(&mix, dst), backpressure())
            .unwrap();
    }
    rt.connect_with(out(&d, "audio"), inp(&loud, "input_0"), backpressure())
        .unwrap();
    rt.connect_with(out(&e, "audio"), inp(&loud, "input_1"), backpressure())
        .unwrap();
    rt.connect_with(out(&mix, "audio"), inp(&rec, "audio"), backpressure())
        .unwrap();
    rt.connect_with(out(&loud, "audio"), inp(&rec_loud, "audio"), backpressure())
        .unwrap();
    rt.start().unwrap();
    assert_eventually("10 mixed frames each", || {
        recorded.lock().unwrap().len() == 10 && loud_recorded.lock().unwrap().len() == 10
    });
    rt.stop().unwrap();
    // 0.25 × 1 + 0.5 (mono, on both channels) × 0.5 + 0.9 × 0 = 0.5 everywhere.
    for f in recorded.lock().unwrap().iter() {
        assert_eq!(
            (f.sample_rate, f.channels, f.samples.len()),
            (48_000, 2, 960)
        );
        assert!(
            f.samples.iter().all(|s| (s - 0.5).abs() < 1e-6),
            "{:?}",
            &f.samples[..4]
        );
    }
    // 0.9 + 0.3 = 1.2 is limited to 1.0, and counted.
    for f in loud_recorded.lock().unwrap().iter() {
        assert!(f.samples.iter().all(|s| *s == 1.0));
    }
    assert_eq!(
        rt.processor_info(&loud).unwrap().metrics["clipped_samples"],
        10 * 960
    );
    assert_eq!(
        rt.processor_info(&mix).unwrap().metrics["clipped_samples"],
        0
    );
}

#[test]
fn mixer_config_is_checked() {
    let e = PROCESSOR_REGISTRY
        .create(
            "AudioMixerProcessor",
            serde_json::json!({"inputs": 3, "gains": [1.0]}),
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid config for AudioMixerProcessor: field 'gains': must be empty or list one gain per input (3), got 1"
    );
    let mut rt = StreamRuntime::new().unwrap();
    let mix = add(
        &mut rt,
        "AudioMixerProcessor",
        serde_json::json!({"inputs": 4}),
    );
    let names: Vec<String> = rt
        .processor_info(&mix)
        .unwrap()
        .inputs
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names, ["input_0", "input_1", "input_2", "input_3"]);
}

#[test]
fn channel_converter_copies_mono_to_both_sides() {
    let frames = through(
        "AudioChannelConverterProcessor",
        serde_json::json!({"channels": 2}),
        sine_frames(300.0, 48_000, 480, 5, 0.5),
        |f| f.len() == 5,
    );
    let source = sine_frames(300.0, 48_000, 480, 5, 0.5);
    for (f, s) in frames.iter().zip(&source) {
        assert_eq!(
            (f.channels, f.samples.len(), f.timestamp_ns),
            (2, 960, s.timestamp_ns)
        );
        for (pair, m) in f.samples.chunks(2).zip(s.samples.iter()) {
            assert_eq!(pair, [*m, *m]);
        }
    }
}

#[test]
fn rechunker_cuts_fixed_sizes_and_loses_nothing() {
    // 7 frames of uneven sizes, 1 234 stereo samples in all.
    let sizes = [100usize, 250, 37, 400, 1, 300, 146];
    let mut script = Vec::new();
    let mut value = 0.0f32;
    let mut position = 0u64;
    for (n, size) in sizes.iter().enumerate() {
        let samples: Vec<f32> = (0..size * 2)
            .map(|_| {
                value += 1.0;
                value
            })
            .collect();
        script.push(
            AudioFrame::new(
                48_000,
                2,
                samples,
                position * 1_000_000_000 / 48_000,
                n as u64,
            )
            .unwrap(),
        );
        position += *size as u64;
    }
    let input = all_samples(&script);
    let frames = through(
        "BufferRechunkerProcessor",
        serde_json::json!({"frame_size": 256}),
        script,
        |f| f.len() >= 4,
    );
    // 1234 = 4 × 256 + 210: four full frames, then the last padded with silence at stop.
    assert_eq!(frames.len(), 5);
    assert!(
        frames
            .iter()
            .all(|f| f.samples.len() == 512 && f.channels == 2)
    );
    let output = all_samples(&frames);
    assert_eq!(&output[..input.len()], &input[..]);
    assert!(output[input.len()..].iter().all(|s| *s == 0.0));
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.frame_number, i as u64);
        assert_eq!(f.timestamp_ns, i as u64 * 256 * 1_000_000_000 / 48_000);
    }
}

#[test]
fn video_scale_resizes_and_converts() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = add(
        &mut rt,
        "TestPatternProcessor",
        serde_json::json!({"width": 640, "height": 360, "fps": 100}),
    );
    let half = add(
        &mut rt,
        "VideoScaleProcessor",
        serde_json::json!({"width": 320}),
    );
    let gray = add(
        &mut rt,
        "VideoScaleProcessor",
        serde_json::json!({"width": null, "height": 90, "format": "gray8", "algorithm": "nearest"}),
    );
    let (sink_half, half_frames) = recording_sink();
    let sink_half = rt.add_processor(sink_half).unwrap();
    let (sink_gray, gray_frames) = recording_sink();
    let sink_gray = rt.add_processor(sink_gray).unwrap();
    rt.connect(out(&src, "video"), inp(&half, "video")).unwrap();
    rt.connect(out(&src, "video"), inp(&gray, "video")).unwrap();
    rt.connect(out(&half, "video"), inp(&sink_half, "video"))
        .unwrap();
    rt.connect(out(&gray, "video"), inp(&sink_gray, "video"))
        .unwrap();
    rt.start().unwrap();
    assert_eventually("scaled frames", || {
        !half_frames.lock().unwrap().is_empty() && !gray_frames.lock().unwrap().is_empty()
    });
    rt.stop().unwrap();
    let f = half_frames.lock().unwrap()[0].clone();
    assert_eq!(
        (f.width, f.height, f.format),
        (320, 180, PixelFormat::Rgba8)
    );
    let g = gray_frames.lock().unwrap()[0].clone();
    assert_eq!(
        (g.width, g.height, g.format, g.stride),
        (160, 90, PixelFormat::Gray8, 160)
    );
    for (i, bar) in BAR_COLOURS.iter().enumerate() {
        let x = (2 * i as u32 + 1) * 320 / 14;
        let p = f.pixel(x, 160).unwrap();
        assert_eq!(&p[..3], bar, "bar {i} at x {x}");
        let luma =
            (77 * u32::from(bar[0]) + 150 * u32::from(bar[1]) + 29 * u32::from(bar[2]) + 128) >> 8;
        let gx = (2 * i as u32 + 1) * 160 / 14;
        assert_eq!(u32::from(g.pixel(gx, 80).unwrap()[0]), luma, "gray bar {i}");
    }
}

#[test]
fn mixer_places_a_late_input_at_its_time() {
    // Input 1 starts 100 ms after input 0: the first 100 ms of the mix hold input 0 only.
    let mut rt = StreamRuntime::new().unwrap();
    let early = rt
        .add_processor(audio_script(constant_frames(0.25, 1, 480, 40)))
        .unwrap();
    let late_frames: Vec<AudioFrame> = constant_frames(0.5, 1, 480, 30)
        .into_iter()
        .map(|f| {
            AudioFrame::new(
                48_000,
                1,
                f.samples.to_vec(),
                f.timestamp_ns + 100_000_000,
                f.frame_number,
            )
            .unwrap()
        })
        .collect();
    let late = rt.add_processor(audio_script(late_frames)).unwrap();
    let mix = add(
        &mut rt,
        "AudioMixerProcessor",
        serde_json::json!({"inputs": 2, "channels": 1, "frame_size": 480, "max_wait_ms": 10000}),
    );
    let (rec, recorded) = audio_recorder();
    let rec = rt.add_processor(rec).unwrap();
    rt.connect_with(out(&early, "audio"), inp(&mix, "input_0"), backpressure())
        .unwrap();
    rt.connect_with(out(&late, "audio"), inp(&mix, "input_1"), backpressure())
        .unwrap();
    rt.connect_with(out(&mix, "audio"), inp(&rec, "audio"), backpressure())
        .unwrap();
    rt.start().unwrap();
    if !common::eventually(|| recorded.lock().unwrap().len() >= 40) {
        let state = rt.state();
        panic!(
            "only {} frames mixed; links: {:?}",
            recorded.lock().unwrap().len(),
            state
                .links
                .iter()
                .map(|l| (l.to.to_string(), l.counters))
                .collect::<Vec<_>>()
        );
    }
    rt.stop().unwrap();
    let samples = all_samples(&recorded.lock().unwrap());
    // 100 ms = 4800 samples of input 0 alone, then both.
    assert!(samples[..4800].iter().all(|s| (s - 0.25).abs() < 1e-6));
    assert!(
        samples[4800..19_200]
            .iter()
            .all(|s| (s - 0.75).abs() < 1e-6)
    );
}

#[test]
fn chord_generator_to_wav_and_back() {
    // The generator feeds the writer and a recorder; the file played back must equal what
    // was recorded, sample for sample (f32 WAV stores them exactly).
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chord.wav");
    let mut rt = StreamRuntime::new().unwrap();
    let chord = add(
        &mut rt,
        "ChordGeneratorProcessor",
        serde_json::json!({"sample_rate": 48000, "channels": 2, "buffer_size": 480}),
    );
    let writer = add(
        &mut rt,
        "WavWriterProcessor",
        serde_json::json!({"path": path}),
    );
    let (rec, generated) = audio_recorder();
    let rec = rt.add_processor(rec).unwrap();
    rt.connect_with(out(&chord, "audio"), inp(&writer, "audio"), backpressure())
        .unwrap();
    rt.connect_with(out(&chord, "audio"), inp(&rec, "audio"), backpressure())
        .unwrap();
    rt.start().unwrap();
    assert_eventually("half a second generated", || {
        generated.lock().unwrap().len() >= 50
    });
    rt.stop().unwrap();
    let generated = all_samples(&generated.lock().unwrap());
    assert_eq!(
        rt.processor_info(&writer).unwrap().metrics["samples_written"] * 2,
        generated.len() as u64
    );

    let mut rt = StreamRuntime::new().unwrap();
    let source = add(
        &mut rt,
        "WavSourceProcessor",
        serde_json::json!({"path": path, "realtime": false}),
    );
    let (rec, played) = audio_recorder();
    let rec = rt.add_processor(rec).unwrap();
    rt.connect_with(out(&source, "audio"), inp(&rec, "audio"), backpressure())
        .unwrap();
    rt.start().unwrap();
    assert_eventually("the file played", || {
        all_samples(&played.lock().unwrap()).len() == generated.len()
    });
    rt.stop().unwrap();
    let played = played.lock().unwrap();
    assert!(
        played
            .iter()
            .all(|f| f.sample_rate == 48_000 && f.channels == 2)
    );
    assert_eq!(all_samples(&played), generated);
}
