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
