//! FileSourceProcessor and Mp4WriterProcessor end to end, checked by FFmpeg's own `ffprobe`:
//! streams, size, duration, frame count; the file read back gives the same frames and the
//! colour bars; missing and corrupt files give clear errors.
#![cfg(feature = "ffmpeg")]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    add, assert_eventually, audio_recorder, backpressure, inp, metric, out, recording_sink,
};
use streamlib::core::*;

fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// `ffprobe`'s view of each stream of `path`.
fn probe(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run ffprobe ({e}); install ffmpeg (scripts/install-system-deps.sh)")
        });
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["streams"].as_array().unwrap().clone()
}

fn field(stream: &serde_json::Value, name: &str) -> f64 {
    match &stream[name] {
        serde_json::Value::String(s) => s.parse().unwrap(),
        v => v
            .as_f64()
            .unwrap_or_else(|| panic!("no {name} in {stream}")),
    }
}

/// Writes `seconds` of test pattern (640x360 at 30 fps) and a stereo 48 kHz chord to `path`;
/// returns the frames and samples the writer encoded.
fn record(path: &Path, seconds: u64) -> (u64, u64) {
    let mut rt = StreamRuntime::new().unwrap();
    let pattern = add(
        &mut rt,
        "TestPatternProcessor",
        serde_json::json!({"width": 640, "height": 360, "fps": 30}),
    );
    let chord = add(
        &mut rt,
        "ChordGeneratorProcessor",
        serde_json::json!({"sample_rate": 48000, "channels": 2}),
    );
    let writer = add(
        &mut rt,
        "Mp4WriterProcessor",
        serde_json::json!({"path": path}),
    );
    rt.connect_with(
        out(&pattern, "video"),
        inp(&writer, "video"),
        backpressure(),
    )
    .unwrap();
    rt.connect_with(out(&chord, "audio"), inp(&writer, "audio"), backpressure())
        .unwrap();
    rt.start().unwrap();
    assert_eventually("the frames were encoded", || {
        metric(&rt, &writer, "video_frames") >= seconds * 30
    });
    rt.stop().unwrap();
    assert_eq!(rt.processor_info(&writer).unwrap().error, None);
    (
        metric(&rt, &writer, "video_frames"),
        metric(&rt, &writer, "audio_samples"),
    )
}

#[test]
fn test_pattern_and_chord_to_mp4_and_back() {
    let path = tmp("pattern_and_chord.mp4");
    let (frames, samples) = record(&path, 2);
    assert!(frames >= 60);

    let streams = probe(&path);
    assert_eq!(streams.len(), 2, "{streams:?}");
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(video["pix_fmt"], "yuv420p");
    // Every encoded frame is in the file, and the duration is the frames' (within a frame).
    assert_eq!(field(video, "nb_read_frames") as u64, frames);
    let expected = frames as f64 / 30.0;
    let duration = field(video, "duration");
    assert!(
        (duration - expected).abs() <= 1.0 / 30.0 + 1e-6,
        "video lasts {duration} s, expected {expected}"
    );
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(field(audio, "sample_rate") as u64, 48_000);
    assert_eq!(audio["channels"].as_u64(), Some(2));
    let audio_duration = field(audio, "duration");
    let expected_audio = samples as f64 / 48_000.0;
    assert!(
        (audio_duration - expected_audio).abs() <= 1024.0 / 48_000.0 + 1e-6,
        "audio lasts {audio_duration} s, expected {expected_audio}"
    );

    // Read back through FileSourceProcessor as fast as the sinks take it.
    let mut rt = StreamRuntime::new().unwrap();
    let file = add(
        &mut rt,
        "FileSourceProcessor",
        serde_json::json!({"path": path, "realtime": false}),
    );
    let (video_sink, video_frames) = recording_sink();
    let video_sink = rt.add_processor(video_sink).unwrap();
    let (audio_sink, audio_frames) = audio_recorder();
    let audio_sink = rt.add_processor(audio_sink).unwrap();
    rt.connect_with(
        out(&file, "video"),
        inp(&video_sink, "video"),
        backpressure().with_capacity(1024),
    )
    .unwrap();
    rt.connect_with(
        out(&file, "audio"),
        inp(&audio_sink, "audio"),
        backpressure().with_capacity(1024),
    )
    .unwrap();
    let mut events = rt.subscribe_events();
    rt.start().unwrap();
    let mut ended = false;
    assert_eventually("end of stream", || {
        while let Ok(e) = events.try_recv() {
            if let RuntimeEventKind::ProcessorEvent { name, .. } = &e.kind {
                ended |= name == "end_of_stream";
            }
        }
        ended
    });
    rt.stop().unwrap();
    let decoded = video_frames.lock().unwrap().clone();
    assert_eq!(decoded.len() as u64, frames, "every frame read back");
    // Frame timestamps step by 1/30 s from the start.
    for (i, f) in decoded.iter().enumerate() {
        let expected_ns = i as u64 * 1_000_000_000 / 30;
        assert!(
            f.timestamp_ns
                .abs_diff(decoded[0].timestamp_ns + expected_ns)
                < 1_000_000,
            "frame {i}"
        );
    }
    // The colour bars survived the encoder (H.264 is lossy: within a few levels).
    let f = &decoded[decoded.len() / 2];
    assert_eq!((f.width, f.height), (640, 360));
    for (i, bar) in BAR_COLOURS.iter().enumerate() {
        let x = (2 * i as u32 + 1) * 640 / 14;
        let p = f.pixel(x, 300).unwrap();
        for c in 0..3 {
            assert!(
                p[c].abs_diff(bar[c]) <= 12,
                "bar {i}: {:?} vs {bar:?}",
                &p[..3]
            );
        }
    }
    // The audio comes back at its rate, about as long as written (AAC adds up to a frame).
    let audio = audio_frames.lock().unwrap().clone();
    assert!(
        audio
            .iter()
            .all(|f| f.sample_rate == 48_000 && f.channels == 2)
    );
    let decoded_samples: u64 = audio.iter().map(|f| f.samples_per_channel() as u64).sum();
    assert!(
        decoded_samples.abs_diff(samples) <= 2048,
        "{decoded_samples} vs {samples}"
    );
}

#[test]
fn missing_and_corrupt_files_fail_clearly() {
    let mut rt = StreamRuntime::new().unwrap();
    rt.start().unwrap();
    let setup_error = |rt: &mut StreamRuntime, type_name: &str, path: &Path| {
        let spec = PROCESSOR_REGISTRY
            .create(type_name, serde_json::json!({"path": path}))
            .unwrap();
        let e = rt.add_processor(spec).unwrap_err().to_string();
        assert!(
            rt.state().processors.is_empty(),
            "a failed add leaves the graph unchanged"
        );
        e
    };
    let e = setup_error(
        &mut rt,
        "FileSourceProcessor",
        Path::new("/nonexistent/clip.mp4"),
    );
    assert!(
        e.ends_with(
            "FileSourceProcessor: cannot open '/nonexistent/clip.mp4': No such file or directory (os error 2)"
        ),
        "{e}"
    );
    let corrupt = tmp("corrupt.mp4");
    std::fs::write(
        &corrupt,
        (0..10_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let e = setup_error(&mut rt, "FileSourceProcessor", &corrupt);
    assert!(
        e.ends_with(&format!(
            "FileSourceProcessor: cannot open '{}': Invalid data found when processing input",
            corrupt.display()
        )),
        "{e}"
    );
    let e = setup_error(
        &mut rt,
        "Mp4WriterProcessor",
        Path::new("/nonexistent/out.mp4"),
    );
    assert!(e.ends_with("Mp4WriterProcessor: cannot create '/nonexistent/out.mp4': No such file or directory (os error 2)"), "{e}");
    let e = PROCESSOR_REGISTRY
        .create(
            "Mp4WriterProcessor",
            serde_json::json!({"path": "/tmp/x.mp4", "width": 641}),
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid config for Mp4WriterProcessor: field 'width': must be even (H.264 4:2:0), got 641"
    );
}

#[test]
fn file_source_loops_with_increasing_timestamps() {
    // Tracks of exactly the same length (30 frames at 30 fps, 48,000 PCM samples at 48 kHz:
    // one second each, no codec padding), so a pass ends exactly one frame after its last.
    let path = tmp("loop.mkv");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "pcm_s16le",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success());
    let frames = 30u64;
    let mut rt = StreamRuntime::new().unwrap();
    let file = add(
        &mut rt,
        "FileSourceProcessor",
        serde_json::json!({"path": path, "realtime": false, "loop": true}),
    );
    let (sink, video) = recording_sink();
    let sink = rt.add_processor(sink).unwrap();
    rt.connect_with(out(&file, "video"), inp(&sink, "video"), backpressure())
        .unwrap();
    rt.start().unwrap();
    assert_eventually("more than two passes", || {
        video.lock().unwrap().len() as u64 > 2 * frames
    });
    rt.stop().unwrap();
    let video = video.lock().unwrap();
    for pair in video.windows(2) {
        assert!(
            pair[1].timestamp_ns > pair[0].timestamp_ns,
            "timestamps keep increasing across loops"
        );
    }
    // Frames are 1/30 s apart, across a pass boundary too: a new pass starts where the previous
    // one ended (the later of its last video frame's and last audio sample's end, the same
    // here).
    let step = 1_000_000_000 / 30;
    let boundaries = video
        .windows(2)
        .filter(|pair| pair[1].frame_number % frames == 0)
        .count();
    assert!(boundaries >= 2, "two pass boundaries seen");
    for pair in video.windows(2) {
        let gap = pair[1].timestamp_ns - pair[0].timestamp_ns;
        assert!(
            gap.abs_diff(step) < 1_000_000,
            "frames {} and {} are {gap} ns apart",
            pair[0].frame_number,
            pair[1].frame_number
        );
    }
}

#[test]
fn writer_added_to_a_running_graph_records_both_streams_at_an_aac_rate() {
    // The API's order: the writer is created (and set up) first, then connected.
    let path = tmp("hot_added.mp4");
    let mut rt = StreamRuntime::new().unwrap();
    let pattern = add(
        &mut rt,
        "TestPatternProcessor",
        serde_json::json!({"width": 320, "height": 240, "fps": 30}),
    );
    // 192 kHz mono: AAC does not take it; the writer resamples to 96 kHz.
    let chord = add(
        &mut rt,
        "ChordGeneratorProcessor",
        serde_json::json!({"sample_rate": 192000, "channels": 1, "buffer_size": 1920}),
    );
    rt.start().unwrap();
    let writer = add(
        &mut rt,
        "Mp4WriterProcessor",
        serde_json::json!({"path": path}),
    );
    rt.connect_with(
        out(&pattern, "video"),
        inp(&writer, "video"),
        backpressure(),
    )
    .unwrap();
    rt.connect_with(out(&chord, "audio"), inp(&writer, "audio"), backpressure())
        .unwrap();
    assert_eventually("a second recorded", || {
        metric(&rt, &writer, "video_frames") >= 30
    });
    rt.stop().unwrap();
    let streams = probe(&path);
    let kinds: Vec<&str> = streams
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["video", "audio"], "{streams:?}");
    let audio = &streams[1];
    assert_eq!(field(audio, "sample_rate") as u64, 96_000);
    assert_eq!(audio["channels"].as_u64(), Some(1));
    assert!(field(audio, "duration") > 0.5);
}

#[test]
fn removing_the_writer_while_recording_finalises_the_file() {
    let path = tmp("removed.mp4");
    let mut rt = StreamRuntime::new().unwrap();
    let pattern = add(
        &mut rt,
        "TestPatternProcessor",
        serde_json::json!({"width": 320, "height": 240, "fps": 30}),
    );
    let writer = add(
        &mut rt,
        "Mp4WriterProcessor",
        serde_json::json!({"path": path}),
    );
    rt.connect_with(
        out(&pattern, "video"),
        inp(&writer, "video"),
        backpressure(),
    )
    .unwrap();
    rt.start().unwrap();
    assert_eventually("frames recorded", || {
        metric(&rt, &writer, "video_frames") >= 10
    });
    let encoded_before = metric(&rt, &writer, "video_frames");
    rt.remove_processor(&writer).unwrap();
    // The graph goes on without it; the file is complete.
    assert_eq!(rt.state().processors.len(), 1);
    let streams = probe(&path);
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["codec_name"], "h264");
    assert!(field(&streams[0], "nb_read_frames") as u64 >= encoded_before);
    rt.stop().unwrap();
}
