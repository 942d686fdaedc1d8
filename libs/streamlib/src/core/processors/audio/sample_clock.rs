//! Timestamps for audio a processor re-frames: the time of the first sample plus the samples
//! emitted since, so output timestamps stay exact however the input was cut.

/// A media-clock position that advances by whole samples.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SampleClock {
    start_ns: Option<u64>,
    rate: u32,
    samples: u64,
}

impl SampleClock {
    /// Starts counting at `timestamp_ns` (the first sample's time), at `rate` Hz, unless
    /// already started at that rate.
    pub(crate) fn start_if_idle(&mut self, timestamp_ns: u64, rate: u32) {
        if self.start_ns.is_none() || self.rate != rate {
            *self = Self {
                start_ns: Some(timestamp_ns),
                rate,
                samples: 0,
            };
        }
    }

    /// The time of the next sample to emit.
    pub(crate) fn now_ns(&self) -> u64 {
        let offset = u128::from(self.samples) * 1_000_000_000 / u128::from(self.rate.max(1));
        self.start_ns
            .unwrap_or(0)
            .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    /// Counts `samples` (per channel) as emitted.
    pub(crate) fn advance(&mut self, samples: u64) {
        self.samples += samples;
    }

    /// Forgets the position (the next input starts a new one).
    pub(crate) fn reset(&mut self) {
        self.start_ns = None;
    }
}

/// Notices gaps and jumps in an input's timestamps (dropped frames, a restarted source), so a
/// re-framing processor can start a new run instead of letting its clock drift.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InputContinuity {
    next_ns: Option<u64>,
}

impl InputContinuity {
    /// Records `frame` and says whether it does *not* follow the previous one (more than
    /// 20 ms or one frame's duration off).
    pub(crate) fn jumped(&mut self, frame: &crate::core::frames::AudioFrame) -> bool {
        let duration = u64::try_from(
            frame.samples_per_channel() as u128 * 1_000_000_000
                / u128::from(frame.sample_rate.max(1)),
        )
        .unwrap_or(u64::MAX);
        let jumped = self
            .next_ns
            .is_some_and(|next| frame.timestamp_ns.abs_diff(next) > duration.max(20_000_000));
        self.next_ns = Some(frame.timestamp_ns.saturating_add(duration));
        jumped
    }

    /// Forgets the last frame.
    pub(crate) fn reset(&mut self) {
        self.next_ns = None;
    }
}
