//! One link: a preallocated ring plus the counters, memory accounting and wake-ups around it.
//!
//! A frame is queued only if its bytes fit the link's budget (a link always takes one frame)
//! and the runtime's ([`MemoryBudget`]), and only while the reader runs: frames for a reader
//! that is stopped or failed are dropped and counted, not kept. When a frame does not fit, a
//! `drop_oldest` link drops its own oldest frames to make room (and the new one if that is not
//! enough); a `backpressure` link waits for its reader, and takes its one frame even over the
//! runtime budget when it is empty (so that every pipeline can make progress).
//!
//! The accounting stays off the shared cache lines: the writer counts bytes in on its own line,
//! the reader bytes out on its own (queued = in − out), and the link holds a reservation in the
//! runtime budget that the writer grows in [`RESERVE_CHUNK`] steps and gives back lazily, so a
//! stream of small frames touches the runtime's counter once per chunk, not per frame. Links
//! never reserve past the runtime's budget except for the one forced frame of an empty
//! backpressure link; a link's reservation covers what it queues, but for a frame racing a
//! trim (until the writer's next frame).
//!
//! Each link also measures how old its frames are when they are read (its latency): the writer
//! stamps a sample of the frames with the time (every frame of a slow link; on a fast one a
//! stride that keeps the stamps about [`STAMP_SPACING_NS`] apart, so the clock is read at most
//! ~20,000 times a second per link on each side), and the reader records the age of each
//! stamped frame it takes into a histogram of its own.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use crate::core::frames::media_clock_ns;
use crate::core::metrics::{DurationHistogram, HistogramSnapshot};

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

/// The step in which a link reserves memory from the runtime's budget. The writer keeps
/// headroom of about what is queued; a link holding more than four steps beyond what it queues
/// is trimmed by its reader every 64 reads, and to what it queues when its writer's thread ends.
pub(crate) const RESERVE_CHUNK: u64 = 64 * 1024;

/// How far apart in time the writer aims to stamp frames for the age histogram (see the module
/// docs): stamps closer than half of it double the stride, further than twice halve it.
pub(crate) const STAMP_SPACING_NS: u64 = 100_000;

/// The most frames between two stamps.
const MAX_STAMP_STRIDE: u64 = 4096;

/// A queued frame and, if it was sampled, when it was written (media clock, ns; 0 = not).
struct Slot<T> {
    frame: T,
    written_ns: u64,
}

/// What the writer changes on every frame (one cache line).
#[derive(Default)]
struct WriterSide {
    written: AtomicU64,
    /// Bytes of every frame queued so far.
    bytes_in: AtomicU64,
    /// The reader's `bytes_out` when the writer last looked (never ahead of it, so queued
    /// bytes computed from it are never too low); refreshed only when a check fails with it.
    out_seen: AtomicU64,
    /// The index of the next frame to stamp, how many frames apart stamps are, and when the
    /// last one was taken (see the module docs).
    next_stamp: AtomicU64,
    stamp_stride: AtomicU64,
    last_stamp_ns: AtomicU64,
}

/// What the reader changes on every frame (one cache line).
#[derive(Default)]
struct ReaderSide {
    read: AtomicU64,
    /// Bytes of every frame taken out (read, dropped or cleared) so far.
    bytes_out: AtomicU64,
}

pub(crate) struct LinkInner<T> {
    pub(crate) id: LinkUniqueId,
    queue: ArrayQueue<Slot<T>>,
    pub(crate) options: ResolvedLinkOptions,
    // Each side's counters on a cache line of their own: sharing one would make every frame
    // bounce it between the writer's and the reader's cores.
    writer: CachePadded<WriterSide>,
    reader_side: CachePadded<ReaderSide>,
    /// Bytes this link holds reserved in the runtime's budget: on a line of its own, read by
    /// both sides on every frame and written only when it grows or shrinks by chunks.
    reserved: CachePadded<AtomicU64>,
    dropped: CachePadded<AtomicU64>,
    /// Ages of the stamped frames when read, recorded by the reader.
    age: CachePadded<DurationHistogram>,
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
    /// Set when the writer's port ended its stream: after the frames queued before it are
    /// read, the link is ended for its reader.
    ended: AtomicBool,
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
            writer: CachePadded::new(WriterSide::default()),
            reader_side: CachePadded::new(ReaderSide::default()),
            reserved: CachePadded::new(AtomicU64::new(0)),
            dropped: CachePadded::new(AtomicU64::new(0)),
            age: CachePadded::new(DurationHistogram::default()),
            budget,
            over_budget: AtomicBool::new(false),
            reader,
            reader_running: AtomicBool::new(reader_running),
            closed: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            space: SpaceGate::default(),
        }
    }

    /// Writes one frame per the link's overflow policy and wakes the reader.
    #[inline]
    pub(crate) fn push(&self, frame: T) {
        let index = self.writer.written.fetch_add(1, Ordering::Relaxed);
        // Nobody would read it: do not keep it (it would pin its memory until a restart).
        if !self.reader_running.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let bytes = frame.queued_bytes();
        let slot = Slot {
            frame,
            written_ns: self.stamp(index),
        };
        match self.options.overflow {
            OverflowPolicy::DropOldest => self.push_dropping_oldest(slot, bytes),
            OverflowPolicy::Backpressure => self.push_waiting(slot, bytes),
        }
        // The reader stopped while we queued: empty the ring it will not read. (SeqCst with
        // `set_reader_running`: either it sees our frame when it clears, or we see it stopped.)
        if !self.reader_running.load(Ordering::SeqCst) {
            self.clear();
        }
        self.reader.notify();
    }

    /// The stamp for frame number `index`: the time now if it is one to sample, else 0.
    #[inline]
    fn stamp(&self, index: u64) -> u64 {
        if index < self.writer.next_stamp.load(Ordering::Relaxed) {
            return 0;
        }
        self.take_stamp(index)
    }

    /// Reads the clock for a stamp and sets when the next one is due: when the last two stamps
    /// were closer than half of [`STAMP_SPACING_NS`] or further than twice it, the stride is
    /// scaled to bring the next gap to it (so a link whose rate falls is sampled at once).
    /// Stamps settle 50–200 µs apart: the writer reads the clock at most ~20,000 times a
    /// second per link, the reader as often.
    fn take_stamp(&self, index: u64) -> u64 {
        let w = &self.writer;
        let now = media_clock_ns().max(1);
        let last = w.last_stamp_ns.swap(now, Ordering::Relaxed);
        let gap = now.saturating_sub(last);
        let mut stride = w.stamp_stride.load(Ordering::Relaxed).max(1);
        // The first stamp has no gap to judge by.
        if last != 0 && !(STAMP_SPACING_NS / 2..=STAMP_SPACING_NS * 2).contains(&gap) {
            stride =
                (stride.saturating_mul(STAMP_SPACING_NS) / gap.max(1)).clamp(1, MAX_STAMP_STRIDE);
        }
        w.stamp_stride.store(stride, Ordering::Relaxed);
        w.next_stamp.store(index + stride, Ordering::Relaxed);
        now
    }

    /// Records the age of a frame the reader takes, if it was stamped.
    #[inline]
    fn note_age(&self, written_ns: u64) {
        if written_ns != 0 {
            self.age
                .record_owned(media_clock_ns().saturating_sub(written_ns));
        }
    }

    /// Bytes queued, from the writer's own line: at least the true figure (it uses the last
    /// `bytes_out` the writer saw).
    #[inline]
    fn queued_at_most_stale(&self) -> u64 {
        self.queued_after(self.writer.out_seen.load(Ordering::Relaxed))
    }

    /// Bytes queued if `out` bytes have been taken out.
    #[inline]
    fn queued_after(&self, out: u64) -> u64 {
        self.writer
            .bytes_in
            .load(Ordering::Relaxed)
            .saturating_sub(out)
    }

    /// Bytes queued for a frame of `bytes` to be written: the writer's own estimate when it
    /// passes both checks, else the reader's current figure (one read of its cache line).
    #[inline]
    fn queued_for(&self, bytes: u64) -> u64 {
        let estimate = self.queued_at_most_stale();
        if estimate + bytes <= self.options.max_bytes
            && estimate + bytes <= self.reserved.load(Ordering::Relaxed)
        {
            return estimate;
        }
        let out = self.reader_side.bytes_out.load(Ordering::Relaxed);
        self.writer.out_seen.fetch_max(out, Ordering::Relaxed);
        self.queued_after(out)
    }

    /// Bytes queued now (in − out; a moment's race may read a little high).
    #[inline]
    fn queued_bytes(&self) -> u64 {
        self.queued_after(self.reader_side.bytes_out.load(Ordering::Relaxed))
    }

    /// Whether `bytes` more fit the link's own budget (an empty link takes any one frame).
    #[inline]
    fn fits_link(&self, queued: u64, bytes: u64) -> bool {
        queued + bytes <= self.options.max_bytes || self.queue.is_empty()
    }

    /// Makes this link's reservation in the runtime budget cover `need` bytes (growing it in
    /// chunks, by half of what it holds at least; `force` takes it even over the budget), and
    /// gives back what it holds beyond about twice `need`. False if the budget has no room.
    #[inline]
    fn reserve(&self, need: u64, force: bool) -> bool {
        let held = self.reserved.load(Ordering::Relaxed);
        if need <= held {
            // Headroom of about what is queued (so a queue that breathes does not reserve and
            // return on every frame); the reader trims the rest as it drains.
            if held > 4 * need + 2 * RESERVE_CHUNK {
                self.give_back(held, held - 2 * need - RESERVE_CHUNK);
            }
            return true;
        }
        let missing = need - held;
        // Growing by half of what is held at least: a queue of large frames that grows takes
        // a logarithmic number of steps from the shared budget, not one per frame.
        let step = missing.max(held / 2).next_multiple_of(RESERVE_CHUNK);
        let taken = if self.budget.reserve(step, false) {
            step
        } else if self.budget.reserve(missing, force) {
            missing
        } else {
            return false;
        };
        // SeqCst with `close`: either it sees our reservation, or we see it closed.
        self.reserved.fetch_add(taken, Ordering::SeqCst);
        // A concurrent close may have returned the reservation already; ours goes back too.
        if self.closed.load(Ordering::SeqCst) {
            self.return_reservation();
        }
        true
    }

    /// Returns `spare` of a reservation that was `held` (skipped if it changed meanwhile, so the
    /// writer and the reader never both take the same bytes off).
    #[inline]
    fn give_back(&self, held: u64, spare: u64) {
        if self
            .reserved
            .compare_exchange(held, held - spare, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.budget.release(spare);
        }
    }

    /// Gives back what the link holds beyond what it queues and one chunk of headroom, when that
    /// is more than four chunks.
    fn trim(&self) {
        let held = self.reserved.load(Ordering::Relaxed);
        if held > 4 * RESERVE_CHUNK {
            let queued = self.queued_bytes();
            if held > queued + 4 * RESERVE_CHUNK {
                self.give_back(held, held - queued - RESERVE_CHUNK);
            }
        }
    }

    /// The writer's thread ended (finished, failed, stopped): nothing more will be reserved,
    /// so the link keeps only what it queues.
    pub(crate) fn writer_done(&self) {
        let held = self.reserved.load(Ordering::Relaxed);
        let queued = self.queued_bytes();
        if held > queued {
            self.give_back(held, held - queued);
        }
    }

    /// Gives the whole reservation back to the runtime's budget.
    fn return_reservation(&self) {
        let held = self.reserved.swap(0, Ordering::SeqCst);
        self.budget.release(held);
    }

    /// Makes room for a frame of `bytes` in both budgets, dropping this link's oldest frames as
    /// needed; false (the frame is to be dropped) if even an empty link has no room in the
    /// runtime budget.
    #[inline]
    fn make_room(&self, bytes: u64) -> bool {
        let mut retried = false;
        loop {
            let queued = self.queued_for(bytes);
            if self.fits_link(queued, bytes) && self.reserve(queued + bytes, false) {
                return true;
            }
            match self.queue.pop() {
                Some(old) => {
                    self.release(&old.frame);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // The reader may have just emptied the ring: one more look with fresh figures.
                None if !retried => retried = true,
                None => {
                    self.note_over_budget(bytes);
                    return false;
                }
            }
        }
    }

    #[inline]
    fn push_dropping_oldest(&self, frame: Slot<T>, bytes: u64) {
        if !self.make_room(bytes) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.writer.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        if let Some(old) = self.queue.force_push(frame) {
            self.release(&old.frame);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts out the bytes of a frame taken out of the ring (the reservation is returned
    /// lazily, see `reserve`).
    #[inline]
    fn release(&self, frame: &T) {
        self.reader_side
            .bytes_out
            .fetch_add(frame.queued_bytes(), Ordering::Relaxed);
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

    fn push_waiting(&self, mut frame: Slot<T>, bytes: u64) {
        let mut spins = 0;
        loop {
            // Within the link's budget, and the runtime's unless the link is empty.
            let mut ring_full = false;
            let queued = self.queued_for(bytes);
            // An empty ring holds nothing, whatever the byte figures say in the moment between
            // a reader's pop and its count (`release`): its forced frame needs only its own
            // bytes (reserving the stale figure too would take the budget past its limit).
            let empty = self.queue.is_empty();
            let need = if empty { bytes } else { queued + bytes };
            if self.fits_link(queued, bytes) && self.reserve(need, empty) {
                // Counted in before it is visible to the reader, so queued bytes are never
                // under-counted (over-counted for a moment if the ring turns out full).
                self.writer.bytes_in.fetch_add(bytes, Ordering::Relaxed);
                match self.queue.push(frame) {
                    Ok(()) => return,
                    Err(back) => {
                        self.writer.bytes_in.fetch_sub(bytes, Ordering::Relaxed);
                        frame = back;
                        ring_full = true;
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
            self.wait_for_space(ring_full);
        }
    }

    fn may_wait(&self) -> bool {
        self.reader_running.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire)
    }

    /// Sleeps until the reader frees room: for a full ring, until it gets to half (it wakes us
    /// then); for bytes (this link's or the runtime's budget), one slice at most, since the
    /// memory may come back from another link's reader, which does not know of us.
    fn wait_for_space(&self, ring_full: bool) {
        // A poisoned lock only means another writer panicked while waiting; the guarded data is
        // `()`, so carry on.
        let guard = self.space.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.space.waiters.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `after_pop`: either the reader sees our waiter count, or we see
        // the slot it freed.
        fence(Ordering::SeqCst);
        // Sleep only while more than half full: the reader wakes us when it gets to half, and
        // would not if it had already passed that point before we registered.
        if (!ring_full || self.over_half()) && self.may_wait() {
            // Spurious wake-ups and the timeout are both fine: the caller re-tries the push.
            let _ = self.space.cond.wait_timeout(guard, SPACE_WAIT_SLICE);
        }
        self.space.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// More than half full, by frames or by bytes.
    #[inline]
    fn over_half(&self) -> bool {
        self.queue.len() > self.options.capacity / 2
            || self.queued_bytes() > self.options.max_bytes / 2
    }

    fn wake_writers(&self) {
        let _guard = self.space.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.space.cond.notify_all();
    }

    #[inline]
    fn after_pop(&self, taken: u64) {
        let reads = self.reader_side.read.fetch_add(1, Ordering::Relaxed);
        // Every 64 reads, a link holding much more than it queues gives the excess back, so a
        // slow writer's burst does not keep its peak reserved (not on every read: a stream of
        // large frames would give back and reserve again for each). A writer whose thread
        // ends gives its links' excess back at once (`writer_done`).
        if reads.is_multiple_of(64) {
            self.trim();
        }
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

    /// Reads per the link's read mode. A reader whose stop gave up on its queued frames (a
    /// hurried stop, or one past its deadline) reads nothing more: working through a long
    /// backlog would hold the stop up. (A normal stop drains the queue first.)
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
        if self.reader.reads_cut() {
            return None;
        }
        let slot = self.queue.pop()?;
        self.release(&slot.frame);
        self.after_pop(1);
        self.note_age(slot.written_ns);
        Some(slot.frame)
    }

    /// The newest queued frame; the older ones are dropped and counted.
    #[inline]
    pub(crate) fn pop_latest(&self) -> Option<T> {
        if self.reader.reads_cut() {
            return None;
        }
        let mut slot = self.queue.pop()?;
        self.release(&slot.frame);
        let mut taken = 1;
        while let Some(newer) = self.queue.pop() {
            self.release(&newer.frame);
            slot = newer;
            taken += 1;
        }
        self.after_pop(taken);
        self.note_age(slot.written_ns);
        Some(slot.frame)
    }

    /// Whether nothing can be read (also when reads are cut, so `has_data` agrees with `read`).
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty() || self.reader.reads_cut()
    }

    pub(crate) fn read_count(&self) -> u64 {
        self.reader_side.read.load(Ordering::Relaxed)
    }

    pub(crate) fn set_reader_running(&self, running: bool) {
        self.reader_running.store(running, Ordering::SeqCst);
        if !running {
            self.clear();
            self.wake_writers();
        }
    }

    /// Drops every queued frame (counted), giving its memory back.
    fn clear(&self) {
        while let Some(slot) = self.queue.pop() {
            self.release(&slot.frame);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.return_reservation();
    }

    /// Marks the end of the stream (after every frame written so far) and tells the reader.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.reader.note_end();
    }

    /// Clears the end mark: the writer starts a new run.
    pub(crate) fn reset_end(&self) {
        self.ended.store(false, Ordering::SeqCst);
    }

    /// Whether the writer has marked the end (frames before it may still be queued).
    pub(crate) fn end_marked(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Whether the stream has ended for the reader: the end is marked and every frame written
    /// before it has been taken. (The mark is read first: a frame queued before it is then
    /// visible to the emptiness check.)
    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst) && self.queue.is_empty()
    }

    /// Ends the link: writers stop waiting, the reader re-checks its inputs, and what was still
    /// queued is dropped (its memory returned to the runtime).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.clear();
        self.wake_writers();
        self.reader.notify();
    }

    pub(crate) fn counters(&self) -> LinkCounters {
        LinkCounters {
            written: self.writer.written.load(Ordering::Relaxed),
            read: self.reader_side.read.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.queue.len() as u64,
            queued_bytes: self.queued_bytes(),
        }
    }

    /// The ages of the stamped frames read so far.
    pub(crate) fn age(&self) -> HistogramSnapshot {
        self.age.snapshot()
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
        // The runtime budget holds the link's reservation: what it queues, in whole chunks.
        assert_eq!(budget.queued(), RESERVE_CHUNK);
    }

    #[test]
    fn the_runtime_budget_is_shared_and_never_exceeded_by_drop_oldest_links() {
        const C: u32 = RESERVE_CHUNK as u32;
        let budget = Arc::new(MemoryBudget::new(10 * RESERVE_CHUNK));
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
            a.push(C);
            assert!(budget.queued() <= 10 * RESERVE_CHUNK);
        }
        // `a` took the whole budget (dropping its own oldest frames beyond it).
        assert_eq!(a.counters().queued_bytes, 10 * RESERVE_CHUNK);
        assert_eq!(a.counters().dropped, 10);
        // `b` finds it used up: its frame is dropped, not queued.
        b.push(C);
        let c = b.counters();
        assert_eq!((c.queued, c.dropped), (0, 1));
        // Once `a` is read, the memory goes back to everyone (here at its writer's next frame;
        // a quiet writer's link is trimmed by its reader every 64 reads).
        while a.pop().is_some() {}
        a.push(C);
        b.push(C);
        assert_eq!(b.counters().queued, 1);
        assert!(budget.queued() <= 10 * RESERVE_CHUNK);
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

    #[test]
    fn every_frame_of_a_slow_link_is_aged_and_a_fast_one_is_sampled() {
        // Slow: 300 us between a write and its read; every frame stamped, each as old as that.
        let l = link(8, OverflowPolicy::DropOldest, ReadMode::InOrder);
        for i in 0..20 {
            l.push(i);
            std::thread::sleep(Duration::from_micros(300));
            assert_eq!(l.pop(), Some(i));
        }
        let age = l.age();
        assert_eq!(age.count(), 20);
        assert!(age.quantile_ns(0.5).unwrap() >= 250_000.0, "{age:?}");
        // Fast: back to back, the stride grows so the clock is read about every 100 us.
        let l = link(8, OverflowPolicy::DropOldest, ReadMode::InOrder);
        let started = std::time::Instant::now();
        let n = 200_000u32;
        for i in 0..n {
            l.push(i);
            assert_eq!(l.pop(), Some(i));
        }
        let took_ns = started.elapsed().as_nanos() as f64;
        let stamped = l.age().count();
        assert!(stamped > 0, "some frames are aged");
        // At most one stamp per 50 us of the run (the stride doubles below that), plus the
        // ramp-up from a stride of 1 (1 + 2 + 4 + ... up to the first gap over 50 us).
        let allowed = (took_ns / (STAMP_SPACING_NS / 2) as f64) as u64 + 64;
        assert!(
            stamped <= allowed,
            "{stamped} of {n} frames stamped in {took_ns} ns"
        );
        assert!(stamped < u64::from(n) / 10, "{stamped} of {n}");
    }
}
