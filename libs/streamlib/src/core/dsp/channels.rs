//! Changing the channel count of interleaved audio.

use std::borrow::Cow;

/// Channel order assumed for multichannel audio: WAV/SMPTE (what FFmpeg decodes to).
/// 3: L R C · 4: L R BL BR · 5: L R C BL BR · 6: L R C LFE BL BR · 7: L R C LFE BC SL SR ·
/// 8: L R C LFE BL BR SL SR.
const STEREO_DOWNMIX: [&[(f32, f32)]; 6] = {
    const C: (f32, f32) = (0.707, 0.707);
    const LFE: (f32, f32) = (0.0, 0.0);
    const LEFT: (f32, f32) = (1.0, 0.0);
    const RIGHT: (f32, f32) = (0.0, 1.0);
    const SL: (f32, f32) = (0.707, 0.0);
    const SR: (f32, f32) = (0.0, 0.707);
    const BC: (f32, f32) = (0.5, 0.5);
    [
        &[LEFT, RIGHT, C],
        &[LEFT, RIGHT, SL, SR],
        &[LEFT, RIGHT, C, SL, SR],
        &[LEFT, RIGHT, C, LFE, SL, SR],
        &[LEFT, RIGHT, C, LFE, BC, SL, SR],
        &[LEFT, RIGHT, C, LFE, SL, SR, SL, SR],
    ]
};

/// Converts interleaved `samples` from `from` channels to `to` channels:
/// - the same count: copied;
/// - mono to N: the mono signal on every channel;
/// - N to mono: the average of all channels (a full-scale signal stays in range);
/// - 3 to 8 channels to stereo: the standard downmix for the WAV/SMPTE layouts (centre and
///   surrounds at −3 dB into both or their side, LFE left out), scaled so a full-scale input
///   cannot clip;
/// - other reductions: output channel `c` takes inputs `c`, `c + M`, `c + 2M`…, every output
///   scaled alike so that none is louder than another;
/// - N to more: inputs keep their position, the extra outputs are silent.
///
/// A trailing partial frame is dropped. Zero channels on either side gives no samples. The
/// same count borrows the input: nothing is copied.
pub fn convert_channels(samples: &[f32], from: u16, to: u16) -> Cow<'_, [f32]> {
    let (from, to) = (usize::from(from), usize::from(to));
    if from == 0 || to == 0 {
        return Cow::Borrowed(&[]);
    }
    if from == to {
        return Cow::Borrowed(&samples[..samples.len() / from * from]);
    }
    let frames = samples.len() / from;
    let mut out = vec![0.0f32; frames * to];
    let frames_in = samples.chunks_exact(from);
    let frames_out = out.chunks_exact_mut(to);
    if from == 1 {
        for (input, output) in frames_in.zip(frames_out) {
            output.fill(input[0]);
        }
    } else if to == 1 {
        let scale = 1.0 / from as f32;
        for (input, output) in frames_in.zip(frames_out) {
            output[0] = input.iter().sum::<f32>() * scale;
        }
    } else if to == 2 && (3..=8).contains(&from) {
        let matrix = STEREO_DOWNMIX[from - 3];
        let left_total: f32 = matrix.iter().map(|w| w.0).sum();
        let right_total: f32 = matrix.iter().map(|w| w.1).sum();
        let scale = 1.0 / left_total.max(right_total);
        for (input, output) in frames_in.zip(frames_out) {
            let (mut l, mut r) = (0.0, 0.0);
            for (sample, (wl, wr)) in input.iter().zip(matrix) {
                l += sample * wl;
                r += sample * wr;
            }
            output[0] = l * scale;
            output[1] = r * scale;
        }
    } else if from > to {
        let scale = 1.0 / from.div_ceil(to) as f32;
        for (input, output) in frames_in.zip(frames_out) {
            for (c, sample) in input.iter().enumerate() {
                output[c % to] += sample * scale;
            }
        }
    } else {
        for (input, output) in frames_in.zip(frames_out) {
            output[..from].copy_from_slice(input);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule() {
        assert_eq!(*convert_channels(&[0.1, 0.2, 0.3], 1, 1), [0.1, 0.2, 0.3]);
        assert_eq!(
            *convert_channels(&[0.5, -0.25], 1, 2),
            [0.5, 0.5, -0.25, -0.25]
        );
        assert_eq!(*convert_channels(&[1.0, 0.0, 0.5, 0.5], 2, 1), [0.5, 0.5]);
        assert_eq!(
            *convert_channels(&[1.0, 0.0, 0.5, 0.5], 2, 3),
            [1.0, 0.0, 0.0, 0.5, 0.5, 0.0]
        );
        assert_eq!(*convert_channels(&[1.0, 2.0, 3.0], 2, 2), [1.0, 2.0]);
        assert!(convert_channels(&[1.0], 0, 2).is_empty());
    }

    #[test]
    fn stereo_downmix_is_balanced_and_cannot_clip() {
        // 5.1 (L R C LFE BL BR): L + .707 C + .707 BL over 2.414; LFE left out.
        let out = convert_channels(&[1.0; 6], 6, 2);
        assert!(
            (out[0] - 1.0).abs() < 1e-6 && (out[1] - 1.0).abs() < 1e-6,
            "{out:?}"
        );
        assert_eq!(
            *convert_channels(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.0], 6, 2),
            [0.0, 0.0]
        );
        let centre = convert_channels(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0], 6, 2);
        assert!((centre[0] - 0.707 / 2.414).abs() < 1e-6 && centre[0] == centre[1]);
        let centre = convert_channels(&[0.0, 0.0, 1.0], 3, 2);
        assert_eq!(centre[0], centre[1]);
        for from in 3..=8u16 {
            let input = vec![1.0; usize::from(from)];
            let out = convert_channels(&input, from, 2);
            assert!(
                out.iter().all(|s| *s <= 1.0 + 1e-6),
                "{from} channels: {out:?}"
            );
        }
    }

    #[test]
    fn other_reductions_fold_with_equal_scale() {
        // 9 to 4: channel c gets inputs c, c + 4, c + 8, all scaled by 1/3.
        let nine: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let out = convert_channels(&nine, 9, 4);
        for (got, want) in out
            .iter()
            .zip([12.0 / 3.0, 6.0 / 3.0, 8.0 / 3.0, 10.0 / 3.0])
        {
            assert!((got - want).abs() < 1e-5, "{out:?}");
        }
    }
}
