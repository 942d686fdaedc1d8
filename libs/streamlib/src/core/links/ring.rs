//! One link: a preallocated ring plus the counters and wake-ups around it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use super::options::{LinkCounters, OverflowPolicy, ReadMode, ResolvedLinkOptions};
use crate::core::graph::LinkUniqueId;
use crate::core::runtime::{ProcessorSignal, current_processor_stopping};

/// How long a backpressured writer sleeps before re-checking on its own. Wake-ups normally come
/// from the reader; this only bounds the cost of a missed one.
const SPACE_WAIT_SLICE: Duration = Duration::from_millis(20);

/// Busy re-tries before a backpressured writer sleeps: the reader usually frees a slot within
/// microseconds, and a futex sleep/wake pair costs more than that.
const SPACE_SPINS: u32 = 64;

pub(crate) struct LinkInner<T> {
    pub(crate) id: LinkUniqueId,
    queue: ArrayQueue<T>,
    pub(crate) options: ResolvedLinkOptions,
    // Each counter on its own cache line: the producer bumps `written`, the consumer `read`,
    // and sharing a line would make every frame bounce it between cores.
    written: CachePadded<AtomicU64>,
    read: CachePadded<AtomicU64>,
    dropped: CachePadded<AtomicU64>,
    /// The consuming processor's wake-up.
    reader: Arc<ProcessorSignal>,
    /// Backpressured writers wait only while the reader runs; otherwise nobody would make room.
    reader_running: AtomicBool,
    /// Set once the link is removed, so a writer still holding it stops waiting.
    closed: AtomicBool,
    space: SpaceGate,
}

/// Where backpressured writers sleep until the reader frees a slot. Only used on the slow path
/// (ring full), so a std Mutex + Condvar is fine; the fast path only reads `waiters`.
#[derive(Default)]
struct SpaceGate {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl<T> LinkInner<T> {
    pub(crate) fn new(
        id: LinkUniqueId,
        options: ResolvedLinkOptions,
        reader: Arc<ProcessorSignal>,
        reader_running: bool,
    ) -> Self {
        Self {
            id,
            queue: ArrayQueue::new(options.capacity.max(1)),
            options,
            written: CachePadded::new(AtomicU64::new(0)),
            read: CachePadded::new(AtomicU64::new(0)),
            dropped: CachePadded::new(AtomicU64::new(0)),
            reader,
            reader_running: AtomicBool::new(reader_running),
            closed: AtomicBool::new(false),
            space: SpaceGate::default(),
        }
    }

    /// Writes one frame per the link's overflow policy and wakes the reader.
    #[inline]
    pub(crate) fn push(&self, frame: T) {
        self.written.fetch_add(1, Ordering::Relaxed);
        match self.options.overflow {
            OverflowPolicy::DropOldest => self.push_dropping_oldest(frame),
            OverflowPolicy::Backpressure => self.push_waiting(frame),
        }
        self.reader.notify();
    }

    #[inline]
    fn push_dropping_oldest(&self, frame: T) {
        if self.queue.force_push(frame).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn push_waiting(&self, mut frame: T) {
        let mut spins = 0;
        loop {
            match self.queue.push(frame) {
                Ok(()) => return,
                Err(back) => frame = back,
            }
            // Nobody will make room (reader gone), or our own processor is being stopped:
            // behave like a real-time link rather than block forever.
            if !self.may_wait() || current_processor_stopping() {
                self.push_dropping_oldest(frame);
                return;
            }
            // The reader may be asleep with a full ring if it missed nothing but we never woke it.
            self.reader.notify();
            if spins < SPACE_SPINS {
                spins += 1;
                std::thread::yield_now();
                continue;
            }
            self.wait_for_space();
        }
    }

    fn may_wait(&self) -> bool {
        self.reader_running.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire)
    }

    fn wait_for_space(&self) {
        // A poisoned lock only means another writer panicked while waiting; the guarded data is
        // `()`, so carry on.
        let guard = self.space.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.space.waiters.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `after_pop`: either the reader sees our waiter count, or we see
        // the slot it freed.
        fence(Ordering::SeqCst);
        // Sleep only while more than half full: the reader wakes us when it gets to half, and
        // would not if it had already passed that point before we registered.
        if self.queue.len() > self.options.capacity / 2 && self.may_wait() {
            // Spurious wake-ups and the timeout are both fine: the caller re-tries the push.
            let _ = self.space.cond.wait_timeout(guard, SPACE_WAIT_SLICE);
        }
        self.space.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    fn wake_writers(&self) {
        let _guard = self.space.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.space.cond.notify_all();
    }

    #[inline]
    fn after_pop(&self, taken: u64) {
        self.read.fetch_add(1, Ordering::Relaxed);
        if taken > 1 {
            self.dropped.fetch_add(taken - 1, Ordering::Relaxed);
        }
        if self.options.overflow == OverflowPolicy::Backpressure {
            fence(Ordering::SeqCst);
            // Hysteresis: wake a waiting writer once half the ring is free, so it resumes with
            // room for a batch instead of being woken (a syscall) for every single slot.
            if self.space.waiters.load(Ordering::SeqCst) > 0
                && self.queue.len() <= self.options.capacity / 2
            {
                self.wake_writers();
            }
        }
    }

    /// Reads per the link's read mode.
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        match self.options.read_mode {
            ReadMode::Latest => self.pop_latest(),
            ReadMode::InOrder => self.pop_next(),
        }
    }

    /// The oldest queued frame.
    #[inline]
    pub(crate) fn pop_next(&self) -> Option<T> {
        let frame = self.queue.pop()?;
        self.after_pop(1);
        Some(frame)
    }

    /// The newest queued frame; the older ones are dropped and counted.
    #[inline]
    pub(crate) fn pop_latest(&self) -> Option<T> {
        let mut frame = self.queue.pop()?;
        let mut taken = 1;
        while let Some(newer) = self.queue.pop() {
            frame = newer;
            taken += 1;
        }
        self.after_pop(taken);
        Some(frame)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn read_count(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub(crate) fn set_reader_running(&self, running: bool) {
        self.reader_running.store(running, Ordering::Release);
        if !running {
            self.wake_writers();
        }
    }

    /// Ends the link: writers stop waiting, the reader re-checks its inputs.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_writers();
        self.reader.notify();
    }

    pub(crate) fn counters(&self) -> LinkCounters {
        LinkCounters {
            written: self.written.load(Ordering::Relaxed),
            read: self.read.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.queue.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(capacity: usize, overflow: OverflowPolicy, read_mode: ReadMode) -> LinkInner<u32> {
        LinkInner::new(
            LinkUniqueId::new("link-test"),
            ResolvedLinkOptions {
                capacity,
                overflow,
                read_mode,
            },
            Arc::new(ProcessorSignal::default()),
            true,
        )
    }

    #[test]
    fn drop_oldest_counts_exactly() {
        let l = link(4, OverflowPolicy::DropOldest, ReadMode::InOrder);
        for i in 0..10 {
            l.push(i);
        }
        let c = l.counters();
        assert_eq!((c.written, c.dropped, c.queued, c.read), (10, 6, 4, 0));
        assert_eq!(l.pop(), Some(6));
        assert_eq!(l.counters().read, 1);
    }

    #[test]
    fn latest_skips_and_counts() {
        let l = link(8, OverflowPolicy::DropOldest, ReadMode::Latest);
        for i in 0..5 {
            l.push(i);
        }
        assert_eq!(l.pop(), Some(4));
        let c = l.counters();
        assert_eq!((c.written, c.read, c.dropped, c.queued), (5, 1, 4, 0));
        assert_eq!(l.pop(), None);
    }

    #[test]
    fn backpressure_without_running_reader_falls_back_to_dropping() {
        let l = link(2, OverflowPolicy::Backpressure, ReadMode::InOrder);
        l.set_reader_running(false);
        for i in 0..5 {
            l.push(i);
        }
        let c = l.counters();
        assert_eq!((c.written, c.dropped, c.queued), (5, 3, 2));
    }

    #[test]
    fn backpressure_loses_nothing_with_a_slow_reader() {
        let l = Arc::new(link(2, OverflowPolicy::Backpressure, ReadMode::InOrder));
        let reader = {
            let l = l.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while got.len() < 1000 {
                    match l.pop() {
                        Some(v) => got.push(v),
                        None => std::thread::yield_now(),
                    }
                }
                got
            })
        };
        for i in 0..1000 {
            l.push(i);
        }
        let got = reader.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        let c = l.counters();
        assert_eq!((c.written, c.read, c.dropped), (1000, 1000, 0));
    }
}
