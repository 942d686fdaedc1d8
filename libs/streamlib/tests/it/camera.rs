//! CameraProcessor: format conversion against FFmpeg's reference decoding of real YUYV and
//! Motion-JPEG buffers, and the exact errors when there is no camera.
#![cfg(all(target_os = "linux", feature = "camera"))]

use crate::common;

use common::setup_error;
use streamlib::core::PROCESSOR_REGISTRY;
use streamlib::linux::camera::{mjpeg_to_rgba, yuyv_to_rgba};

const W: u32 = 96;
const H: u32 = 64;

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// BT.601 luma of each pixel, as an opaque gray RGBA picture.
fn luma(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks(4)
        .flat_map(|p| {
            let y = (0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
                .round() as u8;
            [y, y, y, 255]
        })
        .collect()
}

/// Mean and max absolute difference per channel (RGB only).
fn difference(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len());
    let mut sum = 0u64;
    let mut max = 0u8;
    let mut n = 0u64;
    for (pa, pb) in a.chunks(4).zip(b.chunks(4)) {
        for c in 0..3 {
            let d = pa[c].abs_diff(pb[c]);
            sum += u64::from(d);
            max = max.max(d);
            n += 1;
        }
        assert_eq!(pa[3], 255, "alpha must be opaque");
    }
    (sum as f64 / n as f64, max)
}

#[test]
fn yuyv_matches_ffmpeg() {
    let rgba = yuyv_to_rgba(&data("camera_96x64.yuyv"), W, H, W * 2).unwrap();
    let (mean, max) = difference(&rgba, &data("camera_96x64_yuyv_ffmpeg.rgba"));
    println!("YUYV vs FFmpeg: mean {mean:.3}, max {max}");
    assert!(mean < 1.0 && max <= 3, "mean {mean}, max {max}");
}

#[test]
fn yuyv_with_row_padding() {
    let packed = data("camera_96x64.yuyv");
    let stride = W * 2 + 32;
    let mut padded = Vec::new();
    for row in packed.chunks(W as usize * 2) {
        padded.extend_from_slice(row);
        padded.extend_from_slice(&[0xAB; 32]);
    }
    assert_eq!(
        yuyv_to_rgba(&padded, W, H, stride).unwrap(),
        yuyv_to_rgba(&packed, W, H, W * 2).unwrap()
    );
}

#[test]
fn mjpeg_matches_ffmpeg() {
    let (w, h, rgba) = mjpeg_to_rgba(&data("camera_96x64.mjpeg")).unwrap();
    assert_eq!((w, h), (W, H));
    let reference = data("camera_96x64_mjpeg_ffmpeg.rgba");
    let (mean, max) = difference(&rgba, &reference);
    let (luma_mean, luma_max) = difference(&luma(&rgba), &luma(&reference));
    println!(
        "MJPEG vs FFmpeg: RGB mean {mean:.3}, max {max}; luma mean {luma_mean:.3}, max {luma_max}"
    );
    // Decoders upsample chroma differently (FFmpeg repeats samples, zune-jpeg interpolates),
    // which moves colours at the sharp edges this small pattern is full of; brightness does
    // not depend on it and must match closely. The colours must still be close on average.
    assert!(
        luma_mean < 1.0 && luma_max <= 24,
        "luma mean {luma_mean}, max {luma_max}"
    );
    assert!(mean < 6.0, "RGB mean {mean}, max {max}");
}

/// Removes every DHT segment, as UVC cameras send Motion-JPEG.
fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        let marker = jpeg[i + 1];
        if marker == 0xDA {
            out.extend_from_slice(&jpeg[i..]);
            break;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out
}

#[test]
fn mjpeg_without_huffman_tables_decodes_the_same() {
    let full = data("camera_96x64.mjpeg");
    let stripped = strip_huffman_tables(&full);
    assert!(
        stripped.len() < full.len() - 100,
        "the DHT segments were removed"
    );
    assert!(!stripped.windows(2).any(|w| w == [0xFF, 0xC4]));
    let with_tables = mjpeg_to_rgba(&full).unwrap();
    let without = mjpeg_to_rgba(&stripped).unwrap();
    assert_eq!((without.0, without.1), (with_tables.0, with_tables.1));
    let (mean, max) = difference(&without.2, &with_tables.2);
    assert!(
        mean == 0.0 && max == 0,
        "pictures differ: mean {mean}, max {max}"
    );
}

#[test]
fn truncated_mjpeg_is_an_error() {
    let full = data("camera_96x64.mjpeg");
    let e = mjpeg_to_rgba(&full[..40]).unwrap_err();
    assert!(e.starts_with("cannot decode a Motion-JPEG frame"), "{e}");
}

/// This machine has no camera (CI neither); these check what the user sees then.
fn no_cameras_here() -> bool {
    !std::fs::read_dir("/dev").unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("video")
    })
}

#[test]
fn no_camera_errors_name_what_is_missing() {
    if !no_cameras_here() {
        common::skipped("skipped: this machine has a /dev/video* device");
        return;
    }
    assert_eq!(
        setup_error("CameraProcessor", serde_json::json!({"device_id": null})),
        "CameraProcessor: no camera found: there is no /dev/video* device (connect a camera, or \
         check that its driver is loaded)"
    );
    assert_eq!(
        setup_error(
            "CameraProcessor",
            serde_json::json!({"device_id": "/dev/video7"})
        ),
        "CameraProcessor: camera '/dev/video7' not found: no such device"
    );
    assert_eq!(
        setup_error("CameraProcessor", serde_json::json!({"device_id": "3"})),
        "CameraProcessor: camera '/dev/video3' not found: no such device"
    );
    assert_eq!(
        setup_error(
            "CameraProcessor",
            serde_json::json!({"device_id": "Integrated Camera"})
        ),
        "CameraProcessor: camera 'Integrated Camera' not found: no video capture device has that \
         name (there is no /dev/video* device)"
    );
}

#[test]
fn a_path_that_is_not_a_video_node_is_refused() {
    // The camera opens video device nodes only: not files or other devices (which would also
    // tell an API client what exists).
    for path in [
        "/dev/null",
        "/etc/passwd",
        "/dev/video0/../../etc/passwd",
        "/dev/v4l/../null",
    ] {
        let e = PROCESSOR_REGISTRY
            .create("CameraProcessor", serde_json::json!({ "device_id": path }))
            .err()
            .unwrap_or_else(|| panic!("{path} accepted"));
        let e = e.to_string();
        assert!(
            e.contains("field 'device_id'") && e.contains("video device node"),
            "{path}: {e}"
        );
    }
}

#[test]
fn config_is_validated() {
    let e = PROCESSOR_REGISTRY
        .create("CameraProcessor", serde_json::json!({"fps": 0}))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid config for CameraProcessor: field 'fps': must be between 1 and 240, got 0"
    );
    let e = PROCESSOR_REGISTRY
        .create("CameraProcessor", serde_json::json!({"device_id": ""}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("field 'device_id'"), "{e}");
}
