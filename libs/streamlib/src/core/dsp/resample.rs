//! Streaming sample-rate conversion of interleaved audio (rubato's FFT resampler).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Input frames per resampler call (21 ms of audio at 48 kHz); output comes in these steps.
const CHUNK_FRAMES: usize = 1024;
/// The highest sample rate taken.
const MAX_RATE: u32 = 1_536_000;
/// The largest FFT the rate pair may need (rate / gcd).
const MAX_FFT: u32 = 200_000;

/// Converts a stream of interleaved f32 audio from one sample rate to another, in pieces of
/// any size. The output is aligned with the input (the resampler's delay is removed), and
/// after [`flush`](Self::flush) it holds exactly `ceil(frames_in × to / from)` frames.
pub struct StreamResampler {
    inner: Fft<f32>,
    channels: usize,
    from_rate: u32,
    to_rate: u32,
    /// Input not yet resampled (less than one chunk).
    pending: Vec<f32>,
    scratch: Vec<f32>,
    /// Leading output frames still to drop (the resampler's delay).
    to_skip: usize,
    frames_in: u64,
    frames_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from_rate", &self.from_rate)
            .field("to_rate", &self.to_rate)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// A resampler from `from_rate` to `to_rate` Hz for `channels` interleaved channels.
    pub fn new(from_rate: u32, to_rate: u32, channels: u16) -> Result<Self, String> {
        if from_rate == 0 || to_rate == 0 || channels == 0 {
            return Err(format!(
                "cannot resample {from_rate} Hz to {to_rate} Hz with {channels} channels"
            ));
        }
        // The FFT sizes are the rates divided by their greatest common divisor: refuse rates
        // that would need huge transforms (a corrupt header can claim any rate).
        let gcd = {
            let (mut a, mut b) = (from_rate, to_rate);
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        if from_rate > MAX_RATE
            || to_rate > MAX_RATE
            || from_rate / gcd > MAX_FFT
            || to_rate / gcd > MAX_FFT
        {
            return Err(format!(
                "cannot resample {from_rate} Hz to {to_rate} Hz: rates above {MAX_RATE} Hz, or with no common divisor large enough, are not supported"
            ));
        }
        let inner = Fft::<f32>::new(
            from_rate as usize,
            to_rate as usize,
            CHUNK_FRAMES,
            usize::from(channels),
            FixedSync::Input,
        )
        .map_err(|e| format!("cannot resample {from_rate} Hz to {to_rate} Hz: {e}"))?;
        let to_skip = inner.output_delay();
        Ok(Self {
            inner,
            channels: usize::from(channels),
            from_rate,
            to_rate,
            pending: Vec::new(),
            scratch: Vec::new(),
            to_skip,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Input rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from_rate
    }

    /// Output rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to_rate
    }

    /// Channels per frame.
    pub fn channels(&self) -> u16 {
        self.channels as u16
    }

    /// Takes more input and returns the output ready so far (possibly none). A trailing
    /// partial frame of `input` is dropped.
    pub fn process(&mut self, input: &[f32]) -> Result<Vec<f32>, String> {
        let whole = input.len() / self.channels * self.channels;
        self.pending.extend_from_slice(&input[..whole]);
        self.frames_in += (whole / self.channels) as u64;
        let mut out = Vec::new();
        let chunk = self.inner.input_frames_next() * self.channels;
        let mut start = 0;
        while self.pending.len() - start >= chunk {
            let piece = std::mem::take(&mut self.pending);
            let result = self.run(&piece[start..start + chunk], &mut out);
            self.pending = piece;
            result?;
            start += chunk;
        }
        self.pending.drain(..start);
        Ok(out)
    }

    /// Ends the stream: returns the rest of the output, so that the total is exactly
    /// `ceil(frames_in × to / from)` frames. The resampler can then start a new stream.
    pub fn flush(&mut self) -> Result<Vec<f32>, String> {
        let expected = (u128::from(self.frames_in) * u128::from(self.to_rate))
            .div_ceil(u128::from(self.from_rate)) as u64;
        let chunk = self.inner.input_frames_next() * self.channels;
        let mut out = Vec::new();
        let mut input = std::mem::take(&mut self.pending);
        // The last partial chunk, then silence until the delayed tail has come out. Every
        // chunk yields at least one frame, so this ends; the bound only guards against a bug.
        let per_chunk = self.inner.output_frames_next().max(1) as u64;
        let missing = expected.saturating_sub(self.frames_out) + self.to_skip as u64;
        for _ in 0..missing.div_ceil(per_chunk) + 2 {
            if self.frames_out >= expected {
                break;
            }
            input.resize(chunk, 0.0);
            self.run(&input, &mut out)?;
            input.clear();
        }
        let excess = (self.frames_out.saturating_sub(expected)) as usize * self.channels;
        out.truncate(out.len().saturating_sub(excess));
        self.inner.reset();
        self.to_skip = self.inner.output_delay();
        self.frames_in = 0;
        self.frames_out = 0;
        Ok(out)
    }

    /// Resamples one whole chunk, appending the output (minus the delay still to skip).
    fn run(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), String> {
        let ch = self.channels;
        let frames = input.len() / ch;
        let adapter_in = InterleavedSlice::new(input, ch, frames)
            .map_err(|e| format!("resampler input: {e}"))?;
        let max_out = self.inner.output_frames_max();
        self.scratch.resize(max_out * ch, 0.0);
        let mut adapter_out = InterleavedSlice::new_mut(&mut self.scratch[..], ch, max_out)
            .map_err(|e| format!("resampler output: {e}"))?;
        let (_, produced) = self
            .inner
            .process_into_buffer(&adapter_in, &mut adapter_out, None)
            .map_err(|e| format!("resampling failed: {e}"))?;
        let skip = self.to_skip.min(produced);
        self.to_skip -= skip;
        out.extend_from_slice(&self.scratch[skip * ch..produced * ch]);
        self.frames_out += (produced - skip) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn length_is_exact_after_flush_in_any_piece_sizes() {
        for (from, to) in [(44_100, 48_000), (48_000, 16_000), (22_050, 22_050)] {
            let input = sine(440.0, from, 10_007);
            let mut rs = StreamResampler::new(from, to, 1).unwrap();
            let mut out = Vec::new();
            for piece in input.chunks(333) {
                out.extend(rs.process(piece).unwrap());
            }
            out.extend(rs.flush().unwrap());
            let expected = (10_007u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
            assert_eq!(out.len(), expected, "{from} -> {to}");
        }
    }

    #[test]
    fn output_is_aligned_with_input() {
        // An impulse at frame 4800 of 48 kHz lands at frame 4410 of 44.1 kHz.
        let mut input = vec![0.0f32; 9600];
        input[4800] = 1.0;
        let mut rs = StreamResampler::new(48_000, 44_100, 1).unwrap();
        let mut out = rs.process(&input).unwrap();
        out.extend(rs.flush().unwrap());
        let peak = out
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap()
            .0;
        assert!((4408..=4412).contains(&peak), "peak at {peak}");
    }

    #[test]
    fn rejects_zero_and_absurd_rates() {
        assert!(StreamResampler::new(0, 48_000, 2).is_err());
        assert!(StreamResampler::new(48_000, 48_000, 0).is_err());
        // A corrupt header's prime rate would need a multi-gigabyte FFT.
        let e = StreamResampler::new(4_294_967_291, 48_000, 2).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = StreamResampler::new(999_983, 48_000, 2).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        assert!(StreamResampler::new(44_100, 48_000, 2).is_ok());
    }
}
