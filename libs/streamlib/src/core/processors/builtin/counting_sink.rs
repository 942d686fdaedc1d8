use serde::{Deserialize, Serialize};

use crate::core::context::{Counter, RuntimeContext};
use crate::core::error::Result;
use crate::core::frames::{AudioFrame, DataFrame, VideoFrame};
use crate::core::links::LinkInput;
use crate::core::processors::ProcessorConfig;

/// Config of [`CountingSinkProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CountingSinkConfig {
    /// Compute a CRC-32 over everything received (pixels row by row, samples as little-endian
    /// f32, data as JSON text). Turn off to measure transport alone.
    pub checksum: bool,
}

impl Default for CountingSinkConfig {
    fn default() -> Self {
        Self { checksum: true }
    }
}

impl ProcessorConfig for CountingSinkConfig {}

/// The metrics this sink publishes.
struct SinkCounters {
    video_frames: Counter,
    audio_frames: Counter,
    data_frames: Counter,
    bytes: Counter,
    checksum: Counter,
    last_frame_number: Counter,
}

/// A sink that counts and checksums what it receives, for tests, benchmarks and demos. Its
/// counts and CRC appear as `metrics` in reports.
#[streamlib::processor(
    execution = Reactive,
    description = "Counts and checksums the video, audio and data frames it receives"
)]
pub struct CountingSinkProcessor {
    #[streamlib::input(description = "Video frames to count")]
    video: LinkInput<VideoFrame>,
    #[streamlib::input(description = "Audio frames to count")]
    audio: LinkInput<AudioFrame>,
    #[streamlib::input(description = "Data frames to count")]
    data: LinkInput<DataFrame>,
    #[streamlib::config]
    config: CountingSinkConfig,
    counters: Option<SinkCounters>,
    hasher: crc32fast::Hasher,
}

impl crate::core::Processor for CountingSinkProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        // Counters accumulate across restarts (same names, same counters); the CRC continues too.
        self.counters = Some(SinkCounters {
            video_frames: ctx.counter("video_frames"),
            audio_frames: ctx.counter("audio_frames"),
            data_frames: ctx.counter("data_frames"),
            bytes: ctx.counter("bytes"),
            checksum: ctx.counter("checksum"),
            last_frame_number: ctx.counter("last_frame_number"),
        });
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        let Some(c) = &self.counters else {
            return Ok(());
        };
        let checksum = self.config.checksum;
        let hasher = &mut self.hasher;
        while let Some(frame) = self.video.read() {
            c.video_frames.add(1);
            c.bytes.add(frame.data.len() as u64);
            c.last_frame_number.set(frame.frame_number);
            if checksum {
                for y in 0..frame.height {
                    if let Some(row) = frame.row(y) {
                        hasher.update(row);
                    }
                }
            }
        }
        while let Some(frame) = self.audio.read() {
            c.audio_frames.add(1);
            let bytes: &[u8] = bytemuck::cast_slice(&frame.samples);
            c.bytes.add(bytes.len() as u64);
            if checksum {
                hasher.update(bytes);
            }
        }
        while let Some(frame) = self.data.read() {
            c.data_frames.add(1);
            let text = frame.payload.to_string();
            c.bytes.add(text.len() as u64);
            if checksum {
                hasher.update(frame.name.as_bytes());
                hasher.update(text.as_bytes());
            }
        }
        if checksum {
            c.checksum.set(u64::from(hasher.clone().finalize()));
        }
        Ok(())
    }
}
