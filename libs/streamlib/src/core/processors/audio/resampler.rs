//! `AudioResamplerProcessor`: changes the sample rate of audio.

use serde::{Deserialize, Serialize};

use super::sample_clock::{InputContinuity, SampleClock};
use crate::core::dsp::StreamResampler;
use crate::core::error::{Result, StreamError};
use crate::core::frames::AudioFrame;
use crate::core::links::{LinkInput, LinkOutput};
use crate::core::processors::{ConfigError, ProcessorConfig};

/// Config of [`AudioResamplerProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudioResamplerConfig {
    /// Sample rate of the output, in Hz (1000 to 768000).
    pub sample_rate: u32,
}

impl Default for AudioResamplerConfig {
    fn default() -> Self {
        Self {
            sample_rate: 48_000,
        }
    }
}

impl ProcessorConfig for AudioResamplerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("sample_rate", self.sample_rate, 1_000, 768_000)
    }
}

/// Converts audio to the configured sample rate (rubato's FFT resampler: band-limited, the
/// output aligned with the input). Frames already at that rate pass through untouched. The
/// resampler works in chunks of 1024 input samples, so output frames lag the input by up to
/// one chunk and vary in size; at stop, or when the input format changes, the tail is
/// flushed so that N input samples become exactly ⌈N × out / in⌉ output samples.
#[streamlib::processor(
    execution = Reactive,
    description = "Converts audio to the configured sample rate (band-limited FFT resampler)"
)]
pub struct AudioResamplerProcessor {
    #[streamlib::input(description = "Audio at any rate")]
    audio: LinkInput<AudioFrame>,
    #[streamlib::output(name = "audio", description = "Audio at `sample_rate`")]
    audio_out: LinkOutput<AudioFrame>,
    #[streamlib::config]
    config: AudioResamplerConfig,
    resampler: Option<StreamResampler>,
    clock: SampleClock,
    continuity: InputContinuity,
    frame_number: u64,
}

impl AudioResamplerProcessor::Processor {
    fn send(&mut self, channels: u16, samples: Vec<f32>) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let count = (samples.len() / usize::from(channels.max(1))) as u64;
        let frame = AudioFrame::new(
            self.config.sample_rate,
            channels,
            samples,
            self.clock.now_ns(),
            self.frame_number,
        )?;
        self.audio_out.write(frame);
        self.clock.advance(count);
        self.frame_number += 1;
        Ok(())
    }

    /// Sends the current resampler's tail and forgets it.
    fn flush(&mut self) -> Result<()> {
        if let Some(mut resampler) = self.resampler.take() {
            let tail = resampler.flush().map_err(resample_error)?;
            self.send(resampler.channels(), tail)?;
        }
        self.clock.reset();
        Ok(())
    }
}

fn resample_error(e: String) -> StreamError {
    StreamError::processor(format!("AudioResamplerProcessor: {e}"))
}

impl crate::core::Processor for AudioResamplerProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.audio.read_next() {
            if frame.sample_rate == self.config.sample_rate {
                self.flush()?;
                self.audio_out.write(frame);
                continue;
            }
            // A gap in the input ends the run: its tail goes out, the next starts at this time.
            let jumped = self.continuity.jumped(&frame);
            let same = !jumped
                && self.resampler.as_ref().is_some_and(|r| {
                    r.from_rate() == frame.sample_rate && r.channels() == frame.channels
                });
            if !same {
                self.flush()?;
                self.resampler = Some(
                    StreamResampler::new(
                        frame.sample_rate,
                        self.config.sample_rate,
                        frame.channels,
                    )
                    .map_err(resample_error)?,
                );
                self.clock
                    .start_if_idle(frame.timestamp_ns, self.config.sample_rate);
            }
            let out = match &mut self.resampler {
                Some(r) => r.process(&frame.samples).map_err(resample_error)?,
                None => Vec::new(),
            };
            self.send(frame.channels, out)?;
        }
        Ok(())
    }

    fn on_end_of_stream(&mut self) -> Result<()> {
        // The resampler's tail goes out before the end of the stream.
        self.flush()
    }

    fn teardown(&mut self) -> Result<()> {
        self.continuity.reset();
        self.flush()
    }
}
