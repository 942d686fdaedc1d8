//! Throughput of FileSourceProcessor → Mp4WriterProcessor on a 10 s 720p30 clip (H.264 + AAC),
//! beside the `ffmpeg` command line doing the same transcode with the same settings, in the
//! same run.
//!
//! `cargo bench -p streamlib --features ffmpeg --bench transcode` (needs `ffmpeg` on PATH).
//! Settings on both sides: libx264 preset veryfast, 4 Mb/s, GOP 60, yuv420p; AAC 128 kb/s;
//! FFmpeg's default thread counts.
//!
//! `-- --quick`: one run on a 2 s clip (CI runs it so this command keeps working).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use streamlib::core::*;

const RUNS: usize = 3;

/// A 720p30 test clip of `seconds` with a 440 Hz tone, made once.
fn clip(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join(format!("clip_720p_{seconds}s.mp4"));
    if !path.exists() {
        let status = Command::new("ffmpeg")
            .args(["-y", "-v", "error"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-t",
                &seconds.to_string(),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-c:a", "aac", "-ac", "2"])
            .arg(&path)
            .status()
            .expect("ffmpeg must be installed to make the test clip");
        assert!(status.success(), "ffmpeg could not make the clip");
    }
    path
}

/// Transcodes `input` to `output` through a streamlib graph; returns the wall time and the
/// frames written.
fn streamlib_transcode(input: &Path, output: &Path) -> (Duration, u64) {
    let mut rt = StreamRuntime::new().unwrap();
    let file = rt
        .add_processor(
            PROCESSOR_REGISTRY
                .create(
                    "FileSourceProcessor",
                    serde_json::json!({"path": input, "realtime": false}),
                )
                .unwrap(),
        )
        .unwrap();
    let writer = rt
        .add_processor(
            PROCESSOR_REGISTRY
                .create(
                    "Mp4WriterProcessor",
                    serde_json::json!({"path": output, "preset": "veryfast", "video_bitrate": 4_000_000, "audio_bitrate": 128_000, "fps": 30}),
                )
                .unwrap(),
        )
        .unwrap();
    let backpressure = LinkOptions::default().with_overflow(OverflowPolicy::Backpressure);
    for port in ["video", "audio"] {
        rt.connect_with(
            OutputLinkPortRef::new(file.clone(), port),
            InputLinkPortRef::new(writer.clone(), port),
            backpressure,
        )
        .unwrap();
    }
    let mut events = rt.subscribe_events();
    let started = Instant::now();
    rt.start().unwrap();
    // The end of the stream flows from the source to the writer, which completes the file;
    // then the graph has finished (the runtime thread, driven here by `poll_commands`, sees
    // it). No stop in the measured time.
    loop {
        rt.poll_commands();
        match events.try_recv() {
            Ok(e) => match &e.kind {
                RuntimeEventKind::GraphFinished => break,
                RuntimeEventKind::ProcessorFailed { error, .. } => {
                    panic!("transcode failed: {error}")
                }
                _ => {}
            },
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(e) => panic!("events: {e}"),
        }
    }
    let elapsed = started.elapsed();
    rt.stop().unwrap();
    let frames = rt.processor_info(&writer).unwrap().metrics["video_frames"];
    (elapsed, frames)
}

fn ffmpeg_transcode(input: &Path, output: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-i"])
        .arg(input)
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-g", "60", "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "128k"])
        .arg(output)
        .status()
        .unwrap();
    assert!(status.success());
    started.elapsed()
}

fn frames_in(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `--quick` is ours.
    let quick = std::env::args().any(|a| a == "--quick");
    let (runs, seconds) = if quick { (1, 2) } else { (RUNS, 10) };
    let dir = std::env::temp_dir().join("streamlib-transcode-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let input = clip(&dir, seconds);
    let source_frames = frames_in(&input);
    println!(
        "clip: {} ({} frames, 1280x720 30 fps, AAC stereo 48 kHz)",
        input.display(),
        source_frames
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        // Alternate who goes first, so neither always gets the warm cache.
        let out_ffmpeg = dir.join("ffmpeg.mp4");
        let out_streamlib = dir.join("streamlib.mp4");
        let (a, b) = if run % 2 == 1 {
            let t = ffmpeg_transcode(&input, &out_ffmpeg);
            (t, streamlib_transcode(&input, &out_streamlib))
        } else {
            let s = streamlib_transcode(&input, &out_streamlib);
            (ffmpeg_transcode(&input, &out_ffmpeg), s)
        };
        let (s_time, s_frames) = b;
        assert_eq!(s_frames, source_frames, "streamlib wrote every frame");
        assert_eq!(
            frames_in(&out_streamlib),
            source_frames,
            "and the file holds them all"
        );
        println!(
            "run {run}: ffmpeg {:.2} s ({:.1} fps) | streamlib {:.2} s ({:.1} fps)",
            a.as_secs_f64(),
            source_frames as f64 / a.as_secs_f64(),
            s_time.as_secs_f64(),
            source_frames as f64 / s_time.as_secs_f64()
        );
        theirs.push(a.as_secs_f64());
        ours.push(s_time.as_secs_f64());
    }
    let (o, t) = (median(ours), median(theirs));
    println!(
        "median: ffmpeg {t:.2} s ({:.1} fps), streamlib {o:.2} s ({:.1} fps): streamlib takes {:.2}x ffmpeg's time",
        source_frames as f64 / t,
        source_frames as f64 / o,
        o / t
    );
}
