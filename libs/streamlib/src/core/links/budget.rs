//! The memory of frames queued in links, counted against two budgets: each link's own and the
//! runtime's (every link of a runtime shares one [`MemoryBudget`]). A frame that would go over
//! either is not queued (see `ring.rs` for what each overflow policy does instead).

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::core::frames::Frame;

/// Bytes of frames queued in all links of one runtime, and the most there may be.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    queued: CachePadded<AtomicU64>,
    max: u64,
}

impl MemoryBudget {
    /// A budget of `max` bytes.
    pub(crate) fn new(max: u64) -> Self {
        Self {
            queued: CachePadded::new(AtomicU64::new(0)),
            max,
        }
    }

    /// Takes `bytes` from the budget if they fit; `force` takes them even if they do not (a
    /// backpressure link's one frame, which must make progress).
    #[inline]
    pub(crate) fn reserve(&self, bytes: u64, force: bool) -> bool {
        if force {
            self.queued.fetch_add(bytes, Ordering::Relaxed);
            return true;
        }
        // Never added and taken back: a moment over the budget would fail others' reserves.
        let mut now = self.queued.load(Ordering::Relaxed);
        loop {
            if now.saturating_add(bytes) > self.max {
                return false;
            }
            match self.queued.compare_exchange_weak(
                now,
                now + bytes,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => now = actual,
            }
        }
    }

    /// Gives `bytes` back.
    #[inline]
    pub(crate) fn release(&self, bytes: u64) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes queued now.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The budget.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }
}

/// How many bytes a queued value holds: a frame's payload ([`Frame::payload_bytes`]).
pub(crate) trait QueuedBytes {
    /// The payload's size in bytes.
    fn queued_bytes(&self) -> u64;
}

impl<T: Frame> QueuedBytes for T {
    #[inline]
    fn queued_bytes(&self) -> u64 {
        self.payload_bytes()
    }
}

#[cfg(test)]
impl QueuedBytes for u32 {
    fn queued_bytes(&self) -> u64 {
        u64::from(*self)
    }
}
