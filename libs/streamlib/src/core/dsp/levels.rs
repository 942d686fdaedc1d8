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
    let channels = usize::from(frame.channels.max(1));
    let mut peak = vec![0.0f64; channels];
    let mut sum_sq = vec![0.0f64; channels];
    for interleaved in frame.samples.chunks_exact(channels) {
        for (c, &s) in interleaved.iter().enumerate() {
            let s = f64::from(s);
            peak[c] = peak[c].max(s.abs());
            sum_sq[c] += s * s;
        }
    }
    let n = (frame.samples.len() / channels).max(1) as f64;
    peak.iter()
        .zip(&sum_sq)
        .map(|(&p, &sq)| ChannelLevel {
            peak_dbfs: dbfs(p),
            rms_dbfs: dbfs((sq / n).sqrt()),
        })
        .collect()
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
}
