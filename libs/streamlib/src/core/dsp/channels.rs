//! Changing the channel count of interleaved audio.

/// Converts interleaved `samples` from `from` channels to `to` channels:
/// - the same count: copied;
/// - mono to N: the mono signal on every channel;
/// - N to mono: the average of all channels (so a full-scale stereo signal stays in range);
/// - N to fewer (M > 1): output channel `c` is the average of inputs `c`, `c + M`, `c + 2M`…
///   (5.1 to stereo keeps left and right, centre and LFE fold into them);
/// - N to more: inputs keep their position, the extra outputs are silent.
///
/// A trailing partial frame is dropped. Zero channels on either side gives no samples.
pub fn convert_channels(samples: &[f32], from: u16, to: u16) -> Vec<f32> {
    let (from, to) = (usize::from(from), usize::from(to));
    if from == 0 || to == 0 {
        return Vec::new();
    }
    if from == to {
        return samples[..samples.len() / from * from].to_vec();
    }
    let frames = samples.len() / from;
    let mut out = vec![0.0f32; frames * to];
    for (input, output) in samples.chunks_exact(from).zip(out.chunks_exact_mut(to)) {
        if from == 1 {
            output.fill(input[0]);
        } else if from > to {
            for (c, slot) in output.iter_mut().enumerate() {
                let mut sum = 0.0;
                let mut n = 0u16;
                for sample in input.iter().skip(c).step_by(to) {
                    sum += sample;
                    n += 1;
                }
                *slot = sum / f32::from(n.max(1));
            }
        } else {
            output[..from].copy_from_slice(input);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule() {
        assert_eq!(convert_channels(&[0.1, 0.2, 0.3], 1, 1), [0.1, 0.2, 0.3]);
        assert_eq!(
            convert_channels(&[0.5, -0.25], 1, 2),
            [0.5, 0.5, -0.25, -0.25]
        );
        assert_eq!(convert_channels(&[1.0, 0.0, 0.5, 0.5], 2, 1), [0.5, 0.5]);
        assert_eq!(
            convert_channels(&[1.0, 0.0, 0.5, 0.5], 2, 3),
            [1.0, 0.0, 0.0, 0.5, 0.5, 0.0]
        );
        // 5.1 (L R C LFE Ls Rs) to stereo: L+C+Ls over 3, R+LFE+Rs over 3.
        let out = convert_channels(&[0.3, 0.6, 0.3, 0.0, 0.3, 0.6], 6, 2);
        assert!(
            (out[0] - 0.3).abs() < 1e-6 && (out[1] - 0.4).abs() < 1e-6,
            "{out:?}"
        );
        assert_eq!(convert_channels(&[1.0, 2.0, 3.0], 2, 2), [1.0, 2.0]);
        assert!(convert_channels(&[1.0], 0, 2).is_empty());
    }
}
