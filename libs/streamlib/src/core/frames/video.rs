use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Frame, FrameType};
use crate::core::error::{Result, StreamError};
use crate::core::links::ReadMode;

/// Pixel layouts a [`VideoFrame`] can hold.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PixelFormat {
    /// 8-bit red, green, blue, alpha; 4 bytes per pixel. The common currency of streamlib.
    #[default]
    Rgba8,
    /// 8-bit blue, green, red, alpha; 4 bytes per pixel.
    Bgra8,
    /// 8-bit luminance; 1 byte per pixel.
    Gray8,
}

impl PixelFormat {
    /// Bytes one pixel takes.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
            PixelFormat::Gray8 => 1,
        }
    }
}

/// One picture. Cloning shares the pixels (`data` is reference counted).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Layout of each pixel.
    pub format: PixelFormat,
    /// Bytes from the start of one row to the start of the next (≥ width × bytes per pixel).
    pub stride: u32,
    /// The pixels, row after row.
    pub data: Bytes,
    /// Presentation time on the media clock, in nanoseconds.
    pub timestamp_ns: u64,
    /// Sequence number assigned by the producer.
    pub frame_number: u64,
}

impl VideoFrame {
    /// Wraps pixel data, checking that it holds `height` rows of `stride` bytes.
    pub fn new(
        width: u32,
        height: u32,
        format: PixelFormat,
        stride: u32,
        data: impl Into<Bytes>,
        timestamp_ns: u64,
        frame_number: u64,
    ) -> Result<Self> {
        let data = data.into();
        let row = width as usize * format.bytes_per_pixel();
        if (stride as usize) < row {
            return Err(StreamError::processor(format!(
                "video frame stride {stride} is smaller than a row of {width} {format:?} pixels ({row} bytes)"
            )));
        }
        let needed = stride as usize * height as usize;
        if data.len() < needed {
            return Err(StreamError::processor(format!(
                "video frame {width}x{height} stride {stride} needs {needed} bytes, got {}",
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            format,
            stride,
            data,
            timestamp_ns,
            frame_number,
        })
    }

    /// Wraps tightly packed RGBA pixels (stride = width × 4).
    pub fn from_rgba(
        width: u32,
        height: u32,
        data: impl Into<Bytes>,
        timestamp_ns: u64,
        frame_number: u64,
    ) -> Result<Self> {
        Self::new(
            width,
            height,
            PixelFormat::Rgba8,
            width.saturating_mul(4),
            data,
            timestamp_ns,
            frame_number,
        )
    }

    /// The bytes of row `y` (without stride padding), or `None` past the last row.
    pub fn row(&self, y: u32) -> Option<&[u8]> {
        if y >= self.height {
            return None;
        }
        let start = y as usize * self.stride as usize;
        let len = self.width as usize * self.format.bytes_per_pixel();
        self.data.get(start..start + len)
    }

    /// The bytes of the pixel at (`x`, `y`), or `None` outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<&[u8]> {
        if x >= self.width {
            return None;
        }
        let bpp = self.format.bytes_per_pixel();
        self.row(y)
            .and_then(|row| row.get(x as usize * bpp..(x as usize + 1) * bpp))
    }
}

impl Frame for VideoFrame {
    const FRAME_TYPE: FrameType = FrameType::Video;
    const DEFAULT_CAPACITY: usize = 4;
    const DEFAULT_READ_MODE: ReadMode = ReadMode::Latest;

    fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }
    fn frame_number(&self) -> u64 {
        self.frame_number
    }
    #[inline]
    fn payload_bytes(&self) -> u64 {
        self.data.len() as u64
    }
    fn into_any(self) -> super::AnyFrame {
        super::AnyFrame::Video(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_pixels() {
        let frame = VideoFrame::from_rgba(2, 2, vec![7u8; 16], 0, 0).unwrap();
        let copy = frame.clone();
        assert_eq!(frame.data.as_ptr(), copy.data.as_ptr());
    }

    #[test]
    fn rejects_short_buffers_and_small_strides() {
        assert!(VideoFrame::from_rgba(4, 4, vec![0u8; 63], 0, 0).is_err());
        assert!(VideoFrame::new(4, 1, PixelFormat::Rgba8, 15, vec![0u8; 64], 0, 0).is_err());
    }

    #[test]
    fn pixel_honours_stride() {
        // 2x2 RGBA with 4 bytes of padding per row.
        let mut data = vec![0u8; 24];
        data[12..16].copy_from_slice(&[1, 2, 3, 4]); // (0, 1)
        let frame = VideoFrame::new(2, 2, PixelFormat::Rgba8, 12, data, 0, 0).unwrap();
        assert_eq!(frame.pixel(0, 1), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(frame.pixel(2, 0), None);
        assert_eq!(frame.row(2), None);
    }
}
