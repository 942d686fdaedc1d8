use std::sync::Arc;

use super::{Frame, FrameType};
use crate::core::error::{Result, StreamError};
use crate::core::links::ReadMode;

/// A buffer of interleaved `f32` samples. Cloning shares the samples.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Interleaved samples: `[l0, r0, l1, r1, ...]` for stereo.
    pub samples: Arc<[f32]>,
    /// Presentation time of the first sample on the media clock, in nanoseconds.
    pub timestamp_ns: u64,
    /// Sequence number assigned by the producer.
    pub frame_number: u64,
}

impl AudioFrame {
    /// Wraps interleaved samples, checking that they split evenly into `channels`.
    pub fn new(
        sample_rate: u32,
        channels: u16,
        samples: impl Into<Arc<[f32]>>,
        timestamp_ns: u64,
        frame_number: u64,
    ) -> Result<Self> {
        let samples = samples.into();
        if channels == 0 || sample_rate == 0 {
            return Err(StreamError::processor(
                "audio frame needs at least one channel and a non-zero sample rate",
            ));
        }
        if samples.len() % channels as usize != 0 {
            return Err(StreamError::processor(format!(
                "audio frame has {} samples, not a multiple of {channels} channels",
                samples.len()
            )));
        }
        Ok(Self {
            sample_rate,
            channels,
            samples,
            timestamp_ns,
            frame_number,
        })
    }

    /// Samples per channel in this buffer.
    pub fn samples_per_channel(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// How long this buffer plays.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(
            self.samples_per_channel() as f64 / f64::from(self.sample_rate.max(1)),
        )
    }
}

impl Frame for AudioFrame {
    const FRAME_TYPE: FrameType = FrameType::Audio;
    const DEFAULT_CAPACITY: usize = 32;
    const DEFAULT_READ_MODE: ReadMode = ReadMode::InOrder;

    fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }
    fn frame_number(&self) -> u64 {
        self.frame_number
    }
    #[inline]
    fn payload_bytes(&self) -> u64 {
        std::mem::size_of_val::<[f32]>(&self.samples) as u64
    }
    fn into_any(self) -> super::AnyFrame {
        super::AnyFrame::Audio(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_and_channel_split() {
        let frame = AudioFrame::new(48_000, 2, vec![0.0f32; 960], 0, 0).unwrap();
        assert_eq!(frame.samples_per_channel(), 480);
        assert_eq!(frame.duration(), std::time::Duration::from_millis(10));
        assert!(AudioFrame::new(48_000, 2, vec![0.0f32; 3], 0, 0).is_err());
        assert!(AudioFrame::new(48_000, 0, vec![0.0f32; 2], 0, 0).is_err());
    }
}
