use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::context::RuntimeContext;
use crate::core::error::Result;
use crate::core::frames::{AudioFrame, media_clock_ns};
use crate::core::links::LinkOutput;
use crate::core::processors::{ConfigError, ProcessorConfig};

const DEFAULT_SAMPLE_RATE: u32 = 48_000;
const DEFAULT_CHANNELS: u16 = 2;
/// C major: C4, E4, G4.
const DEFAULT_FREQUENCIES: [f64; 3] = [261.63, 329.63, 392.00];
const DEFAULT_AMPLITUDE: f32 = 0.25;
/// 10 ms at 48 kHz.
const DEFAULT_BUFFER_SIZE: u32 = 480;

/// Config of [`ChordGeneratorProcessor`]. `frequencies` and `amplitude` are live: a running
/// processor takes them without a restart (tones it keeps go on without a phase jump).
#[streamlib::config]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChordGeneratorConfig {
    /// Samples per second per channel (8000 to 192000).
    pub sample_rate: u32,
    /// Output channels (1 to 8); each carries the same chord.
    pub channels: u16,
    /// Frequencies of the sine tones summed into the chord, in Hz (1 to 16 tones, each above
    /// 0 and below half the sample rate).
    #[streamlib(live)]
    pub frequencies: Vec<f64>,
    /// Peak amplitude of the sum (0 to 1).
    #[streamlib(live)]
    pub amplitude: f32,
    /// Samples per channel in each output frame (16 to 16384).
    pub buffer_size: u32,
}

impl Default for ChordGeneratorConfig {
    fn default() -> Self {
        Self {
            sample_rate: DEFAULT_SAMPLE_RATE,
            channels: DEFAULT_CHANNELS,
            frequencies: DEFAULT_FREQUENCIES.to_vec(),
            amplitude: DEFAULT_AMPLITUDE,
            buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

impl ProcessorConfig for ChordGeneratorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("sample_rate", self.sample_rate, 8_000, 192_000)?;
        ConfigError::check_range("channels", self.channels, 1, 8)?;
        ConfigError::check_range("frequencies", self.frequencies.len(), 1, 16)
            .map_err(|_| ConfigError::new("frequencies", "must list 1 to 16 frequencies"))?;
        let nyquist = f64::from(self.sample_rate) / 2.0;
        for (i, f) in self.frequencies.iter().enumerate() {
            if !(f.is_finite() && *f > 0.0 && *f < nyquist) {
                return Err(ConfigError::new(
                    format!("frequencies[{i}]"),
                    format!(
                        "must be above 0 and below {nyquist} Hz (half the sample rate), got {f}"
                    ),
                ));
            }
        }
        if !(self.amplitude.is_finite() && (0.0..=1.0).contains(&self.amplitude)) {
            return Err(ConfigError::new(
                "amplitude",
                format!("must be between 0 and 1, got {}", self.amplitude),
            ));
        }
        ConfigError::check_range("buffer_size", self.buffer_size, 16, 16_384)
    }
}

/// An audio source for tests and demos: a chord of sine tones, paced to real time.
#[streamlib::processor(
    execution = Continuous,
    description = "Generates a chord of sine tones as interleaved f32 audio, paced to real time"
)]
pub struct ChordGeneratorProcessor {
    #[streamlib::output(description = "Interleaved f32 audio")]
    audio: LinkOutput<AudioFrame>,
    #[streamlib::config]
    config: ChordGeneratorConfig,
    /// Phase of each tone, in radians, carried across buffers so the wave is continuous.
    phases: Vec<f64>,
    samples_emitted: u64,
    frame_number: u64,
    start_ns: u64,
}

impl crate::core::Processor for ChordGeneratorProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let c = &self.config;
        ctx.set_interval(Duration::from_secs_f64(
            f64::from(c.buffer_size) / f64::from(c.sample_rate),
        ));
        self.phases = vec![0.0; c.frequencies.len()];
        self.samples_emitted = 0;
        self.frame_number = 0;
        self.start_ns = media_clock_ns();
        Ok(())
    }

    fn reconfigure(&mut self, new: &ChordGeneratorConfig, _ctx: &RuntimeContext) -> Result<()> {
        // Each tone keeps its phase; a tone added starts at 0.
        self.phases.resize(new.frequencies.len(), 0.0);
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        let c = &self.config;
        let channels = usize::from(c.channels);
        let n = c.buffer_size as usize;
        let rate = f64::from(c.sample_rate);
        let gain = f64::from(c.amplitude) / c.frequencies.len() as f64;
        let steps: Vec<f64> = c.frequencies.iter().map(|f| TAU * f / rate).collect();
        let mut samples = Vec::with_capacity(n * channels);
        for _ in 0..n {
            let mut v = 0.0;
            for (phase, step) in self.phases.iter_mut().zip(&steps) {
                v += phase.sin();
                *phase = (*phase + step) % TAU;
            }
            let v = (v * gain) as f32;
            samples.extend(std::iter::repeat_n(v, channels));
        }
        let elapsed_ns =
            u128::from(self.samples_emitted) * 1_000_000_000 / u128::from(c.sample_rate);
        let timestamp = self
            .start_ns
            .saturating_add(u64::try_from(elapsed_ns).unwrap_or(u64::MAX));
        let samples: Arc<[f32]> = samples.into();
        let frame = AudioFrame::new(
            c.sample_rate,
            c.channels,
            samples,
            timestamp,
            self.frame_number,
        )?;
        self.audio.write(frame);
        self.samples_emitted += n as u64;
        self.frame_number += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_frequencies_are_named() {
        assert!(ChordGeneratorConfig::default().validate().is_ok());
        let bad = ChordGeneratorConfig {
            frequencies: vec![440.0, 30_000.0],
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "frequencies[1]");
    }
}
