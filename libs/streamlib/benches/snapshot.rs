//! Snapshot image benchmark: encoding one 640x360 frame of the test pattern (what
//! `GET /api/processors/{id}/ports/{port}/snapshot` does with a frame of the demo's pattern),
//! as JPEG (quality 85) and PNG, at full size and scaled to 320 wide.
//!
//! Run: `cargo bench -p streamlib --bench snapshot` (`-- --quick`: a few frames, CI runs it so
//! the command keeps working).
//!
//! The peer, in the same run when `ffmpeg` is installed: FFmpeg's MJPEG encoder on the same
//! frames (raw RGBA piped in, JPEG out; its start-up, measured with one frame, subtracted).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streamlib::core::service::http::{ImageFormat, encode_image};
use streamlib::core::{TestPatternConfig, TestPatternRenderer, VideoFrame};

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn frames(n: usize) -> Vec<VideoFrame> {
    let config = TestPatternConfig {
        width: 640,
        height: 360,
        ..Default::default()
    };
    let renderer = TestPatternRenderer::new(&config).expect("the demo's pattern config is valid");
    (0..n as u64)
        .map(|i| renderer.render(i, i * 33_333_333).expect("render"))
        .collect()
}

fn measure(label: &str, frames: &[VideoFrame], width: Option<u32>, format: ImageFormat) {
    let mut times = Vec::with_capacity(frames.len());
    let mut bytes = 0;
    for frame in frames {
        let started = Instant::now();
        let image = encode_image(frame, width, None, format).expect("encode");
        times.push(started.elapsed());
        bytes = image.len();
    }
    times.sort();
    println!(
        "{label:<34} n={:<4} p50 {:>8.2} ms  p99 {:>8.2} ms  ({bytes} bytes)",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
    );
}

/// Seconds FFmpeg takes to encode `frames` to MJPEG (quality about 85), or why it could not.
fn ffmpeg_seconds(frames: &[VideoFrame]) -> Result<f64, String> {
    let mut child = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgba",
            "-s",
            "640x360",
            "-i",
            "-",
            "-c:v",
            "mjpeg",
            "-q:v",
            "3",
            "-f",
            "image2pipe",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("ffmpeg not found ({e}); apt install ffmpeg"))?;
    let started = Instant::now();
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    for f in frames {
        stdin.write_all(&f.data).map_err(|e| e.to_string())?;
    }
    drop(stdin);
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("ffmpeg failed: {status}"));
    }
    Ok(started.elapsed().as_secs_f64())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 5 } else { 300 };
    let frames = frames(n);
    println!("# snapshot image encoding: 640x360 test pattern frames, one at a time");
    measure("JPEG, 640x360", &frames, None, ImageFormat::Jpeg);
    measure(
        "JPEG, scaled to 320x180",
        &frames,
        Some(320),
        ImageFormat::Jpeg,
    );
    measure("PNG, 640x360", &frames, None, ImageFormat::Png);
    measure(
        "PNG, scaled to 320x180",
        &frames,
        Some(320),
        ImageFormat::Png,
    );
    match (ffmpeg_seconds(&frames[..1]), ffmpeg_seconds(&frames)) {
        (Ok(one), Ok(all)) if n > 1 => println!(
            "peer: ffmpeg MJPEG (-q:v 3), 640x360: {:.2} ms per frame ({n} frames in {:.3} s, start-up {:.3} s subtracted)",
            (all - one) / (n - 1) as f64 * 1e3,
            all,
            one
        ),
        (Err(e), _) | (_, Err(e)) => println!("peer: skipped: {e}"),
        _ => println!("peer: skipped (one frame only)"),
    }
}
