//! `AudioChannelConverterProcessor`: changes the channel count of audio.

use serde::{Deserialize, Serialize};

use crate::core::dsp::convert_channels;
use crate::core::error::Result;
use crate::core::frames::AudioFrame;
use crate::core::links::{LinkInput, LinkOutput};
use crate::core::processors::{ConfigError, ProcessorConfig};

/// Config of [`AudioChannelConverterProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudioChannelConverterConfig {
    /// Channels of the output (1 to 32).
    pub channels: u16,
}

impl Default for AudioChannelConverterConfig {
    fn default() -> Self {
        Self { channels: 2 }
    }
}

impl ProcessorConfig for AudioChannelConverterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("channels", self.channels, 1, 32)
    }
}

/// Converts audio to the configured channel count: mono is copied to every channel, stereo
/// and 3–8 channel layouts (WAV order) are downmixed with the standard matrix, other counts
/// fold or pad (see `core::dsp::convert_channels`). Rate, timestamps and frame numbers pass
/// through.
#[streamlib::processor(
    execution = Reactive,
    description = "Converts audio to the configured channel count (upmix by copying, standard downmix)"
)]
pub struct AudioChannelConverterProcessor {
    #[streamlib::input(description = "Audio with any channel count")]
    audio: LinkInput<AudioFrame>,
    #[streamlib::output(name = "audio", description = "Audio with `channels` channels")]
    audio_out: LinkOutput<AudioFrame>,
    #[streamlib::config]
    config: AudioChannelConverterConfig,
}

impl crate::core::Processor for AudioChannelConverterProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.audio.read_next() {
            let out = if frame.channels == self.config.channels {
                frame
            } else {
                AudioFrame::new(
                    frame.sample_rate,
                    self.config.channels,
                    convert_channels(&frame.samples, frame.channels, self.config.channels),
                    frame.timestamp_ns,
                    frame.frame_number,
                )?
            };
            self.audio_out.write(out);
        }
        Ok(())
    }
}
