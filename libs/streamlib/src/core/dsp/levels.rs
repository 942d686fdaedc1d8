//! Audio levels: the peak and RMS of each channel of a frame, in dBFS (what a snapshot of an
//! audio port answers, and what a level meter shows).

use serde::{Deserialize, Serialize};

use crate::core::frames::AudioFrame;

/// The level reported for silence (and anything quieter): a finite floor, since JSON has no
/// infinity.
pub const SILENCE_DBFS: f64 = -120.0;

/// One channel's levels.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChannelLevel {
    /// The largest absolute sample, in dBFS (0 = full scale; [`SILENCE_DBFS`] at most quiet).
    pub peak_dbfs: f64,
    /// The root mean square, in dBFS (a full-scale sine reads -3.01).
    pub rms_dbfs: f64,
}

fn dbfs(amplitude: f64) -> f64 {
    if amplitude > 0.0 {
        (20.0 * amplitude.log10()).max(SILENCE_DBFS)
    } else {
        SILENCE_DBFS
    }
}

/// Each channel's peak and RMS over `frame`.
pub fn channel_levels(frame: &AudioFrame) -> Vec<ChannelLevel> {
    let mut meter = LevelMeter::default();
    meter.add(frame);
    meter.take()
}

/// Peak and RMS per channel over any number of frames: a level meter's window (a live preview
/// of an audio port reports one every 50 ms, over every frame that passed meanwhile).
#[derive(Debug, Clone, Default)]
pub struct LevelMeter {
    peak: Vec<f64>,
    sum_sq: Vec<f64>,
    /// Samples per channel added since the last [`take`](Self::take).
    samples: u64,
}

impl LevelMeter {
    /// Adds a frame's samples (a frame with another channel count starts the window over).
    pub fn add(&mut self, frame: &AudioFrame) {
        let channels = usize::from(frame.channels.max(1));
        if self.peak.len() != channels {
            self.peak = vec![0.0; channels];
            self.sum_sq = vec![0.0; channels];
            self.samples = 0;
        }
        for interleaved in frame.samples.chunks_exact(channels) {
            for (c, &s) in interleaved.iter().enumerate() {
                let s = f64::from(s);
                self.peak[c] = self.peak[c].max(s.abs());
                self.sum_sq[c] += s * s;
            }
        }
        self.samples += (frame.samples.len() / channels) as u64;
    }

    /// Whether nothing was added since the last [`take`](Self::take).
    pub fn is_empty(&self) -> bool {
        self.peak.is_empty()
    }

    /// The levels of everything added since the last call, and a new window.
    pub fn take(&mut self) -> Vec<ChannelLevel> {
        let n = self.samples.max(1) as f64;
        let levels = self
            .peak
            .iter()
            .zip(&self.sum_sq)
            .map(|(&p, &sq)| ChannelLevel {
                peak_dbfs: dbfs(p),
                rms_dbfs: dbfs((sq / n).sqrt()),
            })
            .collect();
        *self = Self::default();
        levels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_scale_sine_and_silence() {
        let rate = 48_000;
        let samples: Vec<f32> = (0..4800)
            .flat_map(|i| {
                let s = 0.5 * (std::f64::consts::TAU * 1000.0 * f64::from(i) / 48_000.0).sin();
                [s as f32, 0.0]
            })
            .collect();
        let frame = AudioFrame::new(rate, 2, samples, 0, 0).unwrap();
        let levels = channel_levels(&frame);
        assert_eq!(levels.len(), 2);
        assert!((levels[0].peak_dbfs + 6.02).abs() < 0.05, "{levels:?}");
        assert!((levels[0].rms_dbfs + 9.03).abs() < 0.05, "{levels:?}");
        assert_eq!(levels[1].peak_dbfs, SILENCE_DBFS);
        assert_eq!(levels[1].rms_dbfs, SILENCE_DBFS);
    }

    #[test]
    fn a_meter_spans_frames_and_starts_over_when_taken() {
        let loud = AudioFrame::new(48_000, 1, vec![0.5, -0.5], 0, 0).unwrap();
        let quiet = AudioFrame::new(48_000, 1, vec![0.0, 0.0], 0, 1).unwrap();
        let mut meter = LevelMeter::default();
        assert!(meter.is_empty());
        meter.add(&loud);
        meter.add(&quiet);
        let levels = meter.take();
        assert!((levels[0].peak_dbfs + 6.02).abs() < 0.01, "{levels:?}");
        // RMS over four samples, two of them silent: 0.5 / sqrt(2).
        assert!((levels[0].rms_dbfs + 9.03).abs() < 0.01, "{levels:?}");
        assert!(meter.is_empty());
        meter.add(&quiet);
        assert_eq!(meter.take()[0].peak_dbfs, SILENCE_DBFS);
    }
}
