//! `BufferRechunkerProcessor`: fixed-size audio frames from frames of any size.

use serde::{Deserialize, Serialize};

use super::sample_clock::{InputContinuity, SampleClock};
use crate::core::error::Result;
use crate::core::frames::AudioFrame;
use crate::core::links::{LinkInput, LinkOutput};
use crate::core::processors::{ConfigError, ProcessorConfig};

/// Config of [`BufferRechunkerProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BufferRechunkerConfig {
    /// Samples per channel in every output frame (1 to 1,048,576); 1024 suits AAC.
    pub frame_size: u32,
    /// At stop, and when the input's rate or channel count changes, pad the last partial frame
    /// with silence to `frame_size` (true) or drop it (false).
    pub pad_final: bool,
}

impl Default for BufferRechunkerConfig {
    fn default() -> Self {
        Self {
            frame_size: 1024,
            pad_final: true,
        }
    }
}

impl ProcessorConfig for BufferRechunkerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("frame_size", self.frame_size, 1, 1 << 20)
    }
}

/// Re-cuts audio into frames of exactly `frame_size` samples per channel, whatever sizes
/// arrive. Timestamps follow the samples (the first sample's time plus samples since); a
/// change of rate or channel count ends the current run (its partial frame padded or
/// dropped) and starts a new one.
#[streamlib::processor(
    execution = Reactive,
    description = "Re-cuts audio into frames of exactly `frame_size` samples per channel"
)]
pub struct BufferRechunkerProcessor {
    #[streamlib::input(description = "Audio in frames of any size")]
    audio: LinkInput<AudioFrame>,
    #[streamlib::output(
        name = "audio",
        description = "Audio in frames of `frame_size` samples"
    )]
    audio_out: LinkOutput<AudioFrame>,
    #[streamlib::config]
    config: BufferRechunkerConfig,
    pending: Vec<f32>,
    format: Option<(u32, u16)>,
    clock: SampleClock,
    continuity: InputContinuity,
    frame_number: u64,
}

impl BufferRechunkerProcessor::Processor {
    /// Sends every whole frame pending.
    fn emit_whole(&mut self) -> Result<()> {
        let Some((rate, channels)) = self.format else {
            return Ok(());
        };
        let per_frame = self.config.frame_size as usize * usize::from(channels);
        let mut sent = 0;
        while self.pending.len() - sent >= per_frame {
            let frame = AudioFrame::new(
                rate,
                channels,
                &self.pending[sent..sent + per_frame],
                self.clock.now_ns(),
                self.frame_number,
            )?;
            self.audio_out.write(frame);
            self.clock.advance(u64::from(self.config.frame_size));
            self.frame_number += 1;
            sent += per_frame;
        }
        self.pending.drain(..sent);
        Ok(())
    }

    /// Ends the current run: pads (or drops) the partial frame.
    fn finish_run(&mut self) -> Result<()> {
        if let Some((_, channels)) = self.format {
            if self.config.pad_final && !self.pending.is_empty() {
                let per_frame = self.config.frame_size as usize * usize::from(channels);
                self.pending.resize(per_frame, 0.0);
                self.emit_whole()?;
            }
        }
        self.pending.clear();
        self.clock.reset();
        Ok(())
    }
}

impl crate::core::Processor for BufferRechunkerProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.audio.read_next() {
            let format = (frame.sample_rate, frame.channels);
            let jumped = self.continuity.jumped(&frame);
            if self.format != Some(format) || jumped {
                // A new format, or a gap in the input: end the run and start a new one at
                // this frame's time.
                self.finish_run()?;
                self.format = Some(format);
            }
            if self.pending.is_empty() {
                self.clock
                    .start_if_idle(frame.timestamp_ns, frame.sample_rate);
            }
            self.pending.extend_from_slice(&frame.samples);
            self.emit_whole()?;
        }
        Ok(())
    }

    fn on_end_of_stream(&mut self) -> Result<()> {
        // The last partial frame (padded, if configured) goes out before the end.
        self.finish_run()
    }

    fn teardown(&mut self) -> Result<()> {
        self.finish_run()?;
        self.format = None;
        self.continuity.reset();
        Ok(())
    }
}
