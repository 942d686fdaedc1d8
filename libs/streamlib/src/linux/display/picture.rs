//! Turning a video frame into the pixels of a window: scaled to fit, aspect ratio kept.

use crate::core::frames::{PixelFormat, VideoFrame};

/// Scales `frame` to fit a `width`×`height` window (nearest neighbour, aspect ratio kept, the
/// rest black) and returns `0x00RRGGBB` pixels, row after row — the format windows take.
///
/// An empty window gives no pixels; an empty frame gives a black window.
pub fn fit_to_window(frame: &VideoFrame, width: u32, height: u32) -> Vec<u32> {
    let (out_w, out_h) = (width as usize, height as usize);
    let mut out = vec![0u32; out_w * out_h];
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    if fw == 0 || fh == 0 || out.is_empty() {
        return out;
    }
    // The largest size with the frame's aspect ratio that fits, centred.
    let (dst_w, dst_h) = if out_w * fh <= out_h * fw {
        (out_w, (out_w * fh / fw).clamp(1, out_h))
    } else {
        ((out_h * fw / fh).clamp(1, out_w), out_h)
    };
    let (x0, y0) = ((out_w - dst_w) / 2, (out_h - dst_h) / 2);
    let bpp = frame.format.bytes_per_pixel();
    let columns: Vec<usize> = (0..dst_w).map(|dx| dx * fw / dst_w * bpp).collect();
    let pack: fn(&[u8]) -> u32 = match frame.format {
        PixelFormat::Rgba8 => |p| u32::from_be_bytes([0, p[0], p[1], p[2]]),
        PixelFormat::Bgra8 => |p| u32::from_be_bytes([0, p[2], p[1], p[0]]),
        PixelFormat::Gray8 => |p| u32::from_be_bytes([0, p[0], p[0], p[0]]),
    };
    for dy in 0..dst_h {
        let Some(row) = frame.row((dy * fh / dst_h) as u32) else {
            continue;
        };
        let start = (y0 + dy) * out_w + x0;
        for (pixel, &column) in out[start..start + dst_w].iter_mut().zip(&columns) {
            if let Some(source) = row.get(column..column + bpp) {
                *pixel = pack(source);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: u32, height: u32, rgba: impl Fn(u32, u32) -> [u8; 4]) -> VideoFrame {
        let mut data = Vec::new();
        for y in 0..height {
            for x in 0..width {
                data.extend_from_slice(&rgba(x, y));
            }
        }
        VideoFrame::from_rgba(width, height, data, 0, 0).unwrap()
    }

    #[test]
    fn same_size_is_a_pixel_exact_conversion() {
        let f = frame(4, 2, |x, y| [x as u8 * 10, y as u8 * 20, 7, 255]);
        let out = fit_to_window(&f, 4, 2);
        assert_eq!(out[0], 0x00_00_00_07);
        assert_eq!(out[3], 0x00_1e_00_07);
        assert_eq!(out[4 + 2], 0x00_14_14_07);
    }

    #[test]
    fn wider_window_letterboxes_left_and_right() {
        // A 2x2 frame in an 8x4 window: a 4x4 picture centred, black columns either side.
        let f = frame(2, 2, |x, _| {
            if x == 0 {
                [255, 0, 0, 255]
            } else {
                [0, 0, 255, 255]
            }
        });
        let out = fit_to_window(&f, 8, 4);
        for y in 0..4 {
            let row = &out[y * 8..y * 8 + 8];
            assert_eq!(row, [0, 0, 0xff0000, 0xff0000, 0xff, 0xff, 0, 0], "row {y}");
        }
    }

    #[test]
    fn taller_window_letterboxes_top_and_bottom() {
        let f = frame(2, 1, |_, _| [0, 255, 0, 255]);
        let out = fit_to_window(&f, 2, 3);
        assert_eq!(out, [0, 0, 0xff00, 0xff00, 0, 0]);
    }

    #[test]
    fn downscale_samples_evenly_and_respects_stride_and_format() {
        // 4x2 BGRA with 4 bytes of padding per row, shown at 2x1.
        let mut data = Vec::new();
        for _ in 0..2 {
            for x in 0..4u8 {
                data.extend_from_slice(&[x, 0, 100, 255]); // b = x, r = 100
            }
            data.extend_from_slice(&[9, 9, 9, 9]);
        }
        let f = VideoFrame::new(4, 2, PixelFormat::Bgra8, 20, data, 0, 0).unwrap();
        let out = fit_to_window(&f, 2, 1);
        assert_eq!(out, [0x64_00_00, 0x64_00_02]);
    }

    #[test]
    fn empty_window_or_frame() {
        let f = frame(2, 2, |_, _| [255; 4]);
        assert!(fit_to_window(&f, 0, 5).is_empty());
        let gray = VideoFrame::new(3, 1, PixelFormat::Gray8, 3, vec![0, 128, 255], 0, 0).unwrap();
        assert_eq!(fit_to_window(&gray, 3, 1), [0, 0x808080, 0xffffff]);
    }
}
