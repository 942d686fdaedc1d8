//! One link: a preallocated ring plus the counters, memory accounting and wake-ups around it.
//!
//! A frame is queued only if its bytes fit the link's budget (a link always takes one frame)
//! and the runtime's ([`MemoryBudget`]), and only while the reader runs: frames for a reader
//! that is stopped or failed are dropped and counted, not kept. When a frame does not fit, a
//! `drop_oldest` link drops its own oldest frames to make room (and the new one if that is not
//! enough); a `backpressure` link waits for its reader, and takes its one frame even over the
//! runtime budget when it is empty (so that every pipeline can make progress).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use super::budget::{MemoryBudget, QueuedBytes};
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
    /// Bytes of the frames in the ring (added by the writer, taken off by whoever pops).
    queued_bytes: CachePadded<AtomicU64>,
    /// The runtime's budget, shared by all its links.
    budget: Arc<MemoryBudget>,
    /// Set once a frame was dropped for want of memory (logged once per link).
    over_budget: AtomicBool,
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

impl<T: QueuedBytes> LinkInner<T> {
    pub(crate) fn new(
        id: LinkUniqueId,
        options: ResolvedLinkOptions,
        budget: Arc<MemoryBudget>,
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
            queued_bytes: CachePadded::new(AtomicU64::new(0)),
            budget,
            over_budget: AtomicBool::new(false),
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
        // Nobody would read it: do not keep it (it would pin its memory until a restart).
        if !self.reader_running.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let bytes = frame.queued_bytes();
        match self.options.overflow {
            OverflowPolicy::DropOldest => self.push_dropping_oldest(frame, bytes),
            OverflowPolicy::Backpressure => self.push_waiting(frame, bytes),
        }
        // The reader stopped while we queued: empty the ring it will not read.
        if !self.reader_running.load(Ordering::Acquire) {
            self.clear();
        }
        self.reader.notify();
    }

    /// Whether `bytes` more fit the link's own budget (an empty link takes any one frame).
    #[inline]
    fn fits_link(&self, bytes: u64) -> bool {
        self.queued_bytes.load(Ordering::Relaxed) + bytes <= self.options.max_bytes
            || self.queue.is_empty()
    }

    /// Reserves `bytes` in both budgets, dropping this link's oldest frames to make room; false
    /// (the frame is to be dropped) if even an empty link has no room in the runtime budget.
    #[inline]
    fn make_room(&self, bytes: u64) -> bool {
        loop {
            if self.fits_link(bytes) && self.budget.reserve(bytes, false) {
                return true;
            }
            match self.queue.pop() {
                Some(old) => {
                    self.release(&old);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.note_over_budget(bytes);
                    return false;
                }
            }
        }
    }

    #[inline]
    fn push_dropping_oldest(&self, frame: T, bytes: u64) {
        if !self.make_room(bytes) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(old) = self.queue.force_push(frame) {
            self.release(&old);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gives back the bytes of a frame taken out of the ring.
    #[inline]
    fn release(&self, frame: &T) {
        let bytes = frame.queued_bytes();
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.budget.release(bytes);
    }

    fn note_over_budget(&self, bytes: u64) {
        if !self.over_budget.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                link = %self.id,
                frame_bytes = bytes,
                queued_bytes = self.budget.queued(),
                max_queued_bytes = self.budget.max(),
                "frames dropped: the runtime's budget for queued frames is used up (raise it with --max-queued-mib, or speed up the readers); counted in the link's `dropped`"
            );
        }
    }

    fn push_waiting(&self, mut frame: T, bytes: u64) {
        let mut spins = 0;
        loop {
            // Within the link's budget, and the runtime's unless the link is empty.
            if self.fits_link(bytes) && self.budget.reserve(bytes, self.queue.is_empty()) {
                self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
                match self.queue.push(frame) {
                    Ok(()) => return,
                    Err(back) => {
                        frame = back;
                        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                        self.budget.release(bytes);
                    }
                }
            }
            // Nobody will make room (reader gone), or our own processor is being stopped:
            // behave like a real-time link rather than block forever.
            if !self.may_wait() || current_processor_stopping() {
                self.push_dropping_oldest(frame, bytes);
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
        if self.over_half() && self.may_wait() {
            // Spurious wake-ups and the timeout are both fine: the caller re-tries the push.
            let _ = self.space.cond.wait_timeout(guard, SPACE_WAIT_SLICE);
        }
        self.space.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// More than half full, by frames or by bytes.
    #[inline]
    fn over_half(&self) -> bool {
        self.queue.len() > self.options.capacity / 2
            || self.queued_bytes.load(Ordering::Relaxed) > self.options.max_bytes / 2
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
            if self.space.waiters.load(Ordering::SeqCst) > 0 && !self.over_half() {
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
        self.release(&frame);
        self.after_pop(1);
        Some(frame)
    }

    /// The newest queued frame; the older ones are dropped and counted.
    #[inline]
    pub(crate) fn pop_latest(&self) -> Option<T> {
        let mut frame = self.queue.pop()?;
        self.release(&frame);
        let mut taken = 1;
        while let Some(newer) = self.queue.pop() {
            self.release(&newer);
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
            self.clear();
            self.wake_writers();
        }
    }

    /// Drops every queued frame (counted), giving its memory back.
    fn clear(&self) {
        while let Some(frame) = self.queue.pop() {
            self.release(&frame);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends the link: writers stop waiting, the reader re-checks its inputs, and what was still
    /// queued is dropped (its memory returned to the runtime).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.clear();
        self.wake_writers();
        self.reader.notify();
    }

    pub(crate) fn counters(&self) -> LinkCounters {
        LinkCounters {
            written: self.written.load(Ordering::Relaxed),
            read: self.read.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.queue.len() as u64,
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link of `u32` frames, each `n` bytes (see `QueuedBytes for u32`), under a runtime
    /// budget of `budget` bytes and a link budget of `link_bytes`.
    fn link_with(
        capacity: usize,
        overflow: OverflowPolicy,
        read_mode: ReadMode,
        link_bytes: u64,
        budget: &Arc<MemoryBudget>,
    ) -> LinkInner<u32> {
        LinkInner::new(
            LinkUniqueId::new("link-test"),
            ResolvedLinkOptions {
                capacity,
                overflow,
                read_mode,
                max_bytes: link_bytes,
            },
            budget.clone(),
            Arc::new(ProcessorSignal::default()),
            true,
        )
    }

    fn link(capacity: usize, overflow: OverflowPolicy, read_mode: ReadMode) -> LinkInner<u32> {
        link_with(
            capacity,
            overflow,
            read_mode,
            u64::MAX,
            &Arc::new(MemoryBudget::new(u64::MAX)),
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
        assert_eq!(c.queued_bytes, 6 + 7 + 8 + 9);
        assert_eq!(l.pop(), Some(6));
        assert_eq!(l.counters().read, 1);
        assert_eq!(l.counters().queued_bytes, 7 + 8 + 9);
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
        assert_eq!(c.queued_bytes, 0);
        assert_eq!(l.pop(), None);
    }

    #[test]
    fn nothing_is_queued_for_a_reader_that_is_not_running() {
        let budget = Arc::new(MemoryBudget::new(u64::MAX));
        let l = link_with(
            4,
            OverflowPolicy::Backpressure,
            ReadMode::InOrder,
            u64::MAX,
            &budget,
        );
        l.push(1);
        l.push(2);
        // The reader stops: what was queued is dropped and its memory returned.
        l.set_reader_running(false);
        assert_eq!((l.counters().queued, budget.queued()), (0, 0));
        for i in 0..5 {
            l.push(i);
        }
        let c = l.counters();
        assert_eq!(
            (c.written, c.dropped, c.queued, c.queued_bytes),
            (7, 7, 0, 0)
        );
    }

    #[test]
    fn the_link_budget_drops_oldest_frames_by_bytes() {
        let budget = Arc::new(MemoryBudget::new(u64::MAX));
        let l = link_with(
            64,
            OverflowPolicy::DropOldest,
            ReadMode::InOrder,
            100,
            &budget,
        );
        for _ in 0..10 {
            l.push(30);
        }
        // Three 30-byte frames fit in 100 bytes; the older ones were dropped.
        let c = l.counters();
        assert_eq!((c.queued, c.queued_bytes, c.dropped), (3, 90, 7));
        // An empty link takes one frame of any size.
        while l.pop().is_some() {}
        l.push(500);
        assert_eq!((l.counters().queued, l.counters().queued_bytes), (1, 500));
        assert_eq!(budget.queued(), 500);
    }

    #[test]
    fn the_runtime_budget_is_shared_and_never_exceeded_by_drop_oldest_links() {
        let budget = Arc::new(MemoryBudget::new(1000));
        let a = link_with(
            64,
            OverflowPolicy::DropOldest,
            ReadMode::InOrder,
            u64::MAX,
            &budget,
        );
        let b = link_with(
            64,
            OverflowPolicy::DropOldest,
            ReadMode::InOrder,
            u64::MAX,
            &budget,
        );
        for _ in 0..20 {
            a.push(100);
            assert!(budget.queued() <= 1000);
        }
        assert_eq!(a.counters().queued_bytes, 1000);
        // `b` finds the budget used up by `a`: its frames are dropped, not queued.
        b.push(100);
        let c = b.counters();
        assert_eq!((c.queued, c.dropped), (0, 1));
        assert!(budget.queued() <= 1000);
        // Reading `a` gives the memory back to everyone.
        a.pop();
        b.push(100);
        assert_eq!(b.counters().queued, 1);
        assert_eq!(budget.queued(), 1000);
        // Removing a link returns what it held.
        a.close();
        b.close();
        assert_eq!(budget.queued(), 0);
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

    #[test]
    fn backpressure_waits_on_bytes_and_loses_nothing() {
        let budget = Arc::new(MemoryBudget::new(50));
        let l = Arc::new(link_with(
            64,
            OverflowPolicy::Backpressure,
            ReadMode::InOrder,
            40,
            &budget,
        ));
        let reader = {
            let l = l.clone();
            std::thread::spawn(move || {
                let mut got = 0u64;
                while got < 200 {
                    match l.pop() {
                        Some(_) => got += 1,
                        None => std::thread::yield_now(),
                    }
                }
            })
        };
        let mut peak = 0;
        for _ in 0..200 {
            l.push(20);
            peak = peak.max(budget.queued());
        }
        reader.join().unwrap();
        let c = l.counters();
        assert_eq!((c.written, c.read, c.dropped), (200, 200, 0));
        assert!(peak <= 50, "{peak}");
    }
}
