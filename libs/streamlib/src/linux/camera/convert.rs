//! Camera pixel formats to RGBA: packed YUYV 4:2:2 and Motion-JPEG.

use std::borrow::Cow;

use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// Converts a YUYV (YUY2) picture — `Y0 U Y1 V` per pixel pair, BT.601 limited range as
/// webcams send it — to tightly packed RGBA. `stride` is the bytes per row in `data`.
pub fn yuyv_to_rgba(data: &[u8], width: u32, height: u32, stride: u32) -> Result<Vec<u8>, String> {
    let (w, h, stride) = (width as usize, height as usize, stride as usize);
    if w % 2 != 0 {
        return Err(format!("YUYV needs an even width, got {w}"));
    }
    if stride < w * 2 {
        return Err(format!(
            "YUYV row stride {stride} is less than 2 × width {w}"
        ));
    }
    let needed = stride * h.saturating_sub(1) + w * 2;
    if h > 0 && data.len() < needed {
        return Err(format!(
            "YUYV {w}x{h} needs {needed} bytes, the buffer has {}",
            data.len()
        ));
    }
    let mut out = vec![0u8; w * h * 4];
    for (y, out_row) in out.chunks_exact_mut(w * 4).enumerate() {
        let row = &data[y * stride..y * stride + w * 2];
        for (pair, px) in row.chunks_exact(4).zip(out_row.chunks_exact_mut(8)) {
            let (y0, u, y1, v) = (pair[0], pair[1], pair[2], pair[3]);
            px[..4].copy_from_slice(&ycbcr_to_rgba(y0, u, v));
            px[4..].copy_from_slice(&ycbcr_to_rgba(y1, u, v));
        }
    }
    Ok(out)
}

/// BT.601 limited-range Y'CbCr to RGBA, in 16.16 fixed point.
fn ycbcr_to_rgba(y: u8, cb: u8, cr: u8) -> [u8; 4] {
    let c = (i32::from(y) - 16) * 76_309; // 1.164 × 65536
    let d = i32::from(cb) - 128;
    let e = i32::from(cr) - 128;
    let clamp = |v: i32| ((v + 32_768) >> 16).clamp(0, 255) as u8;
    [
        clamp(c + 104_597 * e),             // 1.596
        clamp(c - 25_675 * d - 53_279 * e), // 0.392, 0.813
        clamp(c + 132_201 * d),             // 2.017
        255,
    ]
}

/// An APP0 "AVI1" segment: tells JPEG decoders to use the standard Huffman tables, which
/// Motion-JPEG frames from UVC cameras usually leave out.
const AVI1_APP0: [u8; 9] = [0xFF, 0xE0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00];

/// Decodes one Motion-JPEG frame to RGBA; returns `(width, height, pixels)`.
pub fn mjpeg_to_rgba(frame: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let data = with_huffman_tables(frame);
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGBA);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data.as_ref()), options);
    let pixels = decoder
        .decode()
        .map_err(|e| format!("cannot decode a Motion-JPEG frame: {e}"))?;
    let info = decoder
        .info()
        .ok_or_else(|| "a Motion-JPEG frame has no image header".to_string())?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if pixels.len() != w as usize * h as usize * 4 {
        return Err(format!(
            "a Motion-JPEG frame decoded to {} bytes, expected {w}x{h} RGBA",
            pixels.len()
        ));
    }
    Ok((w, h, pixels))
}

/// The frame with an AVI1 marker added when it carries no Huffman tables of its own.
fn with_huffman_tables(frame: &[u8]) -> Cow<'_, [u8]> {
    if frame.len() < 4 || frame[..2] != [0xFF, 0xD8] || has_huffman_tables(frame) {
        return Cow::Borrowed(frame);
    }
    let mut fixed = Vec::with_capacity(frame.len() + AVI1_APP0.len());
    fixed.extend_from_slice(&frame[..2]);
    fixed.extend_from_slice(&AVI1_APP0);
    fixed.extend_from_slice(&frame[2..]);
    Cow::Owned(fixed)
}

/// Whether a DHT segment comes before the first scan.
fn has_huffman_tables(frame: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= frame.len() {
        if frame[i] != 0xFF {
            return false; // Not a marker: malformed; let the decoder report it.
        }
        match frame[i + 1] {
            0xC4 => return true,
            0xDA => return false,
            0xFF => i += 1, // Fill byte.
            _ => i += 2 + usize::from(u16::from_be_bytes([frame[i + 2], frame[i + 3]])),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_reference_colours() {
        // Limited-range black, white and pure red (BT.601: Y 81, Cb 90, Cr 240).
        let data = [16, 128, 235, 128, 81, 90, 81, 240];
        let rgba = yuyv_to_rgba(&data, 4, 1, 8).unwrap();
        assert_eq!(&rgba[0..4], &[0, 0, 0, 255]);
        assert_eq!(&rgba[4..8], &[255, 255, 255, 255]);
        for px in rgba[8..].chunks(4) {
            assert!(
                px[0] >= 253 && px[1] <= 2 && px[2] <= 2,
                "red came out {px:?}"
            );
        }
    }

    #[test]
    fn yuyv_rejects_short_buffers_and_odd_widths() {
        assert!(
            yuyv_to_rgba(&[0; 7], 4, 1, 8)
                .unwrap_err()
                .contains("needs 8 bytes")
        );
        assert!(
            yuyv_to_rgba(&[0; 8], 3, 1, 8)
                .unwrap_err()
                .contains("even width")
        );
        assert!(
            yuyv_to_rgba(&[0; 8], 4, 1, 6)
                .unwrap_err()
                .contains("stride")
        );
    }

    #[test]
    fn huffman_table_detection() {
        let with = [0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x02, 0xFF, 0xDA, 0x00, 0x02];
        let without = [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x02, 0xFF, 0xDA, 0x00, 0x02];
        assert!(has_huffman_tables(&with));
        assert!(!has_huffman_tables(&without));
        assert_eq!(with_huffman_tables(&without)[2..11], AVI1_APP0);
        assert!(matches!(with_huffman_tables(&with), Cow::Borrowed(_)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(mjpeg_to_rgba(&[1, 2, 3]).is_err());
        assert!(mjpeg_to_rgba(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 9, 9]).is_err());
    }
}
