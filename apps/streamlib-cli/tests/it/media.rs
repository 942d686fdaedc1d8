//! `streamlib run` stopped by SIGTERM while recording leaves a complete, playable MP4.
#![cfg(feature = "ffmpeg")]

use crate::common;

use std::io::{BufRead, BufReader};
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
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Recording has begun once the file is open; let a few more frames come.
    for line in lines.by_ref() {
        if line.unwrap().contains("MP4 file opened") {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    terminate(&child);
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let out = child.wait_with_output().unwrap();
    let log = log.join().unwrap().join("\n");
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
