//! `AudioLevelsProcessor`: measures audio as data — peak and RMS per channel over a window.

use serde::{Deserialize, Serialize};

use crate::core::dsp::LevelMeter;
use crate::core::error::Result;
use crate::core::frames::{AudioFrame, DataFrame};
use crate::core::links::{LinkInput, LinkOutput};
use crate::core::processors::{ConfigError, ProcessorConfig};

/// Config of [`AudioLevelsProcessor`].
#[streamlib::config]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudioLevelsConfig {
    /// Length of the window measured for each reading, in milliseconds of audio (1 to 10000).
    #[streamlib(live)]
    pub interval_ms: u32,
}

impl Default for AudioLevelsConfig {
    fn default() -> Self {
        Self { interval_ms: 100 }
    }
}

impl ProcessorConfig for AudioLevelsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("interval_ms", self.interval_ms, 1, 10_000)
    }
}

/// Reads audio and writes its levels as data frames named `levels`: one per `interval_ms` of
/// audio (counted in samples, so readings follow the audio's own clock; a reading covers whole
/// frames, so it spans at least the interval — `samples` says how much), with the peak and RMS
/// of each channel in dBFS — `{"sample_rate", "samples", "channels": [{"peak_dbfs",
/// "rms_dbfs"}]}`, stamped with the time of the window's first frame. A change of sample rate
/// or channel count ends the window; so does the end of the stream. What a meter, an alarm on
/// silence or clipping, or a log of loudness reads.
#[streamlib::processor(
    execution = Reactive,
    description = "Measures audio: peak and RMS per channel (dBFS) as data frames, one per interval"
)]
pub struct AudioLevelsProcessor {
    #[streamlib::input(description = "Audio to measure")]
    audio: LinkInput<AudioFrame>,
    #[streamlib::output(description = "One `levels` frame per interval of audio")]
    levels: LinkOutput<DataFrame>,
    #[streamlib::config]
    config: AudioLevelsConfig,
    meter: LevelMeter,
    /// Samples per channel in the window so far, at `window_rate`.
    window_samples: u64,
    window_rate: u32,
    window_channels: u16,
    window_start_ns: Option<u64>,
    frame_number: u64,
}

impl crate::core::Processor for AudioLevelsProcessor::Processor {
    fn setup(&mut self, _ctx: &crate::core::RuntimeContext) -> Result<()> {
        // A restart starts a new window (readings keep their numbers).
        self.meter = LevelMeter::default();
        self.window_samples = 0;
        self.window_start_ns = None;
        Ok(())
    }

    fn on_end_of_stream(&mut self) -> Result<()> {
        self.emit();
        Ok(())
    }

    fn reconfigure(
        &mut self,
        _new: &AudioLevelsConfig,
        _ctx: &crate::core::RuntimeContext,
    ) -> Result<()> {
        // The next reading ends at the new interval (the window so far is kept).
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.audio.read() {
            if (frame.sample_rate, frame.channels) != (self.window_rate, self.window_channels) {
                // Another format: what was measured so far is read out first.
                self.emit();
                self.window_rate = frame.sample_rate;
                self.window_channels = frame.channels;
            }
            self.window_start_ns.get_or_insert(frame.timestamp_ns);
            self.meter.add(&frame);
            self.window_samples += frame.samples_per_channel() as u64;
            let window = u64::from(self.window_rate) * u64::from(self.config.interval_ms) / 1000;
            if self.window_samples >= window.max(1) {
                self.emit();
            }
        }
        Ok(())
    }
}

impl AudioLevelsProcessor::Processor {
    /// Writes the reading of the window so far (if any) and starts a new one.
    fn emit(&mut self) {
        let Some(timestamp_ns) = self.window_start_ns.take() else {
            return;
        };
        let payload = serde_json::json!({
            "sample_rate": self.window_rate,
            "samples": self.window_samples,
            "channels": self.meter.take(),
        });
        self.levels.write(DataFrame::new(
            "levels",
            payload,
            timestamp_ns,
            self.frame_number,
        ));
        self.frame_number += 1;
        self.window_samples = 0;
    }
}
