//! `streamlib run` with media files: stopped by signals while recording, the MP4 is complete and
//! playable; a transcode graph ends by itself at the end of its input.
#![cfg(feature = "ffmpeg")]

use crate::common;

use std::process::{Command, Stdio};

use common::{streamlib, terminate};

#[test]
fn sigterm_while_recording_leaves_a_playable_mp4() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mp4 = dir.join("sigterm.mp4");
    let _ = std::fs::remove_file(&mp4);
    let graph = dir.join("sigterm.json");
    std::fs::write(
        &graph,
        serde_json::json!({
            "processors": [
                {"id": "pattern", "type": "TestPatternProcessor", "config": {"width": 320, "height": 240, "fps": 30}},
                {"id": "chord", "type": "ChordGeneratorProcessor"},
                {"id": "mp4", "type": "Mp4WriterProcessor", "config": {"path": mp4}}
            ],
            "connections": [
                {"from": "pattern.video", "to": "mp4.video", "overflow": "backpressure"},
                {"from": "chord.audio", "to": "mp4.audio", "overflow": "backpressure"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let mut child = streamlib()
        .args(["run", graph.to_str().unwrap(), "--log", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = common::Lines::new(child.stderr.take().unwrap());
    // Recording has begun once the file is open; let a few more frames come.
    lines.wait_for("MP4 file opened", std::time::Duration::from_secs(60));
    std::thread::sleep(std::time::Duration::from_millis(500));
    terminate(&child);
    let log = std::thread::spawn(move || lines.all());
    let out = child.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert!(out.status.success(), "exit {:?}\n{log}", out.status);
    assert!(log.contains("MP4 file finalised"), "{log}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let writer = report["processors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "mp4")
        .unwrap()
        .clone();
    let encoded = writer["metrics"]["video_frames"].as_u64().unwrap();
    assert!(encoded > 0);

    // ffprobe finds both streams and every encoded frame; ffmpeg decodes it all without error.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&mp4)
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(
        String::from_utf8(probe.stdout).unwrap().trim(),
        format!("h264,{encoded}")
    );
    // The audio stream too: AAC, with as many samples as the writer encoded.
    let samples = writer["metrics"]["audio_samples"].as_u64().unwrap();
    assert!(samples > 0);
    let audio = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0"])
        .args(["-show_entries", "stream=codec_name,sample_rate,duration_ts"])
        .args(["-of", "csv=p=0"])
        .arg(&mp4)
        .output()
        .unwrap();
    let audio = String::from_utf8(audio.stdout).unwrap();
    let fields: Vec<&str> = audio.trim().split(',').collect();
    assert_eq!(fields[0], "aac", "{audio}");
    let duration_ts: u64 = fields[2].parse().unwrap();
    // AAC frames are 1024 samples: the stream holds every sample, padded to a whole frame.
    assert!(
        duration_ts >= samples && duration_ts < samples + 2048,
        "{duration_ts} in the file, {samples} encoded"
    );
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&mp4)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decode.status.success());
    assert_eq!(
        String::from_utf8_lossy(&decode.stderr),
        "",
        "decoding reported errors"
    );
}

/// `ffprobe`'s frame count of each stream (`codec_type` → frames, in stream order).
fn frame_counts(file: &std::path::Path) -> Vec<(String, u64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames"])
        .args(["-show_entries", "stream=codec_type,nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (kind, n) = l.split_once(',')?;
            Some((kind.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn run_of_a_transcode_graph_exits_by_itself_with_every_frame() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("transcode");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let clip = dir.join("clip.mp4");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
        ])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success());
    let source_frames = frame_counts(&clip);
    assert_eq!(source_frames[0], ("video".to_string(), 50));
    let out = dir.join("out.mp4");
    let graph = dir.join("transcode.json");
    std::fs::write(
        &graph,
        serde_json::json!({
            "processors": [
                {"id": "src", "type": "FileSourceProcessor", "config": {"path": clip, "realtime": false}},
                {"id": "scale", "type": "VideoScaleProcessor", "config": {"width": 160, "height": 120}},
                {"id": "out", "type": "Mp4WriterProcessor", "config": {"path": out}}
            ],
            "connections": [
                {"from": "src.video", "to": "scale.video", "overflow": "backpressure"},
                {"from": "scale.video", "to": "out.video", "overflow": "backpressure"},
                {"from": "src.audio", "to": "out.audio", "overflow": "backpressure"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    // No --duration: the run ends when the file has been transcoded.
    let mut child = streamlib()
        .args(["run", graph.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            terminate(&child);
            panic!("streamlib run did not exit by itself within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let mut report = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut report).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    for p in report["processors"].as_array().unwrap() {
        assert_eq!(p["ended"], true, "{p}");
    }
    let written = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "file_written")
        .unwrap_or_else(|| panic!("no file_written event in {report}"));
    assert_eq!(written["data"]["video_frames"], 50, "{written}");
    assert_eq!(written["data"]["complete"], true);
    // Every frame of the source is in the output, and the file is complete (ffprobe reads it).
    assert_eq!(frame_counts(&out), source_frames);
}

#[test]
fn a_second_ctrl_c_hurries_but_still_leaves_a_playable_mp4() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mp4 = dir.join("double-sigint.mp4");
    let _ = std::fs::remove_file(&mp4);
    let graph = dir.join("double-sigint.json");
    // A slow stage (an upscale, slower than the source's rate in this debug build) with long
    // backpressure queues: a clean stop would drain for a while, so the second signal lands
    // in it.
    std::fs::write(
        &graph,
        serde_json::json!({
            "processors": [
                {"id": "pattern", "type": "TestPatternProcessor", "config": {"width": 320, "height": 180, "fps": 60}},
                {"id": "chord", "type": "ChordGeneratorProcessor"},
                {"id": "scale", "type": "VideoScaleProcessor", "config": {"width": 1280, "height": 720, "algorithm": "bilinear"}},
                {"id": "mp4", "type": "Mp4WriterProcessor", "config": {"path": mp4, "preset": "ultrafast"}}
            ],
            "connections": [
                {"from": "pattern.video", "to": "scale.video", "overflow": "backpressure", "capacity": 256},
                {"from": "scale.video", "to": "mp4.video", "overflow": "backpressure", "capacity": 256},
                {"from": "chord.audio", "to": "mp4.audio", "overflow": "backpressure"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let mut child = streamlib()
        .args(["run", graph.to_str().unwrap(), "--log", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = common::Lines::new(child.stderr.take().unwrap());
    let opened = lines.wait_for("MP4 file opened", std::time::Duration::from_secs(60));
    assert!(opened.contains("video=true audio=true"), "{opened}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let interrupt = || {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "the process was still there");
    };
    interrupt();
    std::thread::sleep(std::time::Duration::from_millis(200));
    interrupt();
    let asked = std::time::Instant::now();
    let log = std::thread::spawn(move || lines.all());
    let out = child.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(12),
        "the hurried shutdown took {:?}",
        asked.elapsed()
    );
    assert!(log.contains("second signal"), "{log}");
    assert!(log.contains("MP4 file finalised"), "{log}");
    assert!(out.status.success(), "exit {:?}\n{log}", out.status);
    let streams = frame_counts(&mp4);
    assert_eq!(streams.len(), 2, "both streams: {streams:?}");
    assert!(streams.iter().all(|(_, n)| *n > 0), "{streams:?}");
}
