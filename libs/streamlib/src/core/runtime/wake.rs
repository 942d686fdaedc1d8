//! How a processor's thread is woken: by new input, by its pacing clock, or by a stop request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

/// The wake-up and stop flags of one processor instance, shared by its thread, the links that
/// feed it, and the runtime.
///
/// It outlives any one run: links keep it while the processor is stopped and restarted, so the
/// thread handle is swapped in at each start (an `ArcSwapOption`, read lock-free on every notify).
#[derive(Default)]
pub(crate) struct ProcessorSignal {
    /// Set by writers when new input arrived since the processor last looked.
    pending: AtomicBool,
    /// Set by the runtime to end the current run.
    stop: AtomicBool,
    /// Set by the runtime when every processor of a start has finished `setup`.
    go: AtomicBool,
    /// The thread running the processor now, if any.
    thread: ArcSwapOption<Thread>,
    /// True from the start of a run until the thread stops reading its inputs.
    active: AtomicBool,
    /// Set when an input's stream ended or one of the processor's own outputs was ended: its
    /// thread then checks whether the processor has ended (`worker.rs`).
    end_check: AtomicBool,
    /// Set when a stop gives up on the frames still queued for the processor (a hurried stop,
    /// or past the stop's deadline): its reads then return nothing, so a long backlog does not
    /// hold the stop up. A normal stop drains first and does not set it.
    reads_cut: AtomicBool,
}

thread_local! {
    /// The signal of the processor running on this thread, so a writer blocked by
    /// backpressure can notice that its own processor is being stopped.
    static CURRENT: std::cell::RefCell<Option<Arc<ProcessorSignal>>> = const { std::cell::RefCell::new(None) };
}

/// Whether the processor running on the calling thread (if any) is being stopped.
pub(crate) fn current_processor_stopping() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|s| s.is_stopping()))
}

impl ProcessorSignal {
    /// Marks new input and wakes the processor thread if it sleeps.
    ///
    /// When the flag is already set the reader has not yet looked, and will see this frame too,
    /// so the writer skips the unpark: in a busy pipeline most writes cost one shared load.
    #[inline]
    pub(crate) fn notify(&self) {
        if self.pending.load(Ordering::Acquire) {
            return;
        }
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.unpark();
        }
    }

    #[inline]
    pub(crate) fn unpark(&self) {
        if let Some(thread) = &*self.thread.load() {
            thread.unpark();
        }
    }

    /// Consumes the "new input" flag.
    #[inline]
    pub(crate) fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// Whether input arrived since the flag was last taken (without consuming it).
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    pub(crate) fn set_pending(&self) {
        self.pending.store(true, Ordering::Release);
    }

    /// An input's stream ended: wake the processor so it checks whether all have.
    pub(crate) fn note_end(&self) {
        self.end_check.store(true, Ordering::SeqCst);
        self.notify();
        self.unpark();
    }

    /// Consumes the "check for the end of stream" flag (a plain load first: it is read after
    /// every `process()` call, and is next to the flag writers set on every frame).
    #[inline]
    pub(crate) fn take_end_check(&self) -> bool {
        self.end_check.load(Ordering::Acquire) && self.end_check.swap(false, Ordering::SeqCst)
    }

    /// Asks the processor to stop at once, without working through its queued frames.
    pub(crate) fn cut_reads(&self) {
        self.reads_cut.store(true, Ordering::Release);
        self.request_stop();
    }

    /// Whether reads return nothing (see `reads_cut`).
    #[inline]
    pub(crate) fn reads_cut(&self) -> bool {
        self.reads_cut.load(Ordering::Acquire)
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.unpark();
    }

    #[inline]
    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(crate) fn release(&self) {
        self.go.store(true, Ordering::Release);
        self.unpark();
    }

    /// Clears the stop and release flags for a new run. Called by the runtime before it spawns
    /// the thread, so a stop requested right after the spawn is not lost.
    pub(crate) fn prepare_run(&self) {
        self.stop.store(false, Ordering::Release);
        self.go.store(false, Ordering::Release);
        self.end_check.store(false, Ordering::Release);
        self.reads_cut.store(false, Ordering::Release);
    }

    /// Binds the new run to the calling thread.
    pub(crate) fn bind_current_thread(self: &Arc<Self>) {
        self.active.store(true, Ordering::SeqCst);
        self.thread.store(Some(Arc::new(std::thread::current())));
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
    }

    /// Marks the run over (before the thread tells its links), see `is_active`.
    pub(crate) fn deactivate(&self) {
        self.active.store(false, Ordering::SeqCst);
    }

    /// Whether a thread is running this processor (setting up or processing).
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    pub(crate) fn unbind_thread(&self) {
        self.thread.store(None);
        CURRENT.with(|c| *c.borrow_mut() = None);
    }

    /// Blocks until released by the runtime; false if stopped instead.
    pub(crate) fn wait_for_release(&self) -> bool {
        loop {
            if self.is_stopping() {
                return false;
            }
            if self.go.load(Ordering::Acquire) {
                return true;
            }
            std::thread::park();
        }
    }

    /// Sleeps the calling thread until `deadline`; false if a stop was requested first.
    /// Spurious wake-ups (new input) just sleep again.
    pub(crate) fn sleep_until(&self, deadline: Instant) -> bool {
        loop {
            if self.is_stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::park_timeout(deadline - now);
        }
    }
}

/// A processor's view of its stop request, for processors that wait or pace themselves inside
/// `process()` (device reads, real-time sources).
///
/// Obtained from [`RuntimeContext::stop_signal`](crate::core::RuntimeContext::stop_signal). Its
/// sleeps end early when the runtime stops the processor; use them on the processor's own
/// thread (the one that calls `process`).
#[derive(Clone)]
pub struct StopSignal(pub(crate) Arc<ProcessorSignal>);

impl StopSignal {
    /// True once the runtime asked the processor to stop.
    pub fn is_stopping(&self) -> bool {
        self.0.is_stopping()
    }

    /// Sleeps until `deadline`; returns false (early) if the processor is being stopped.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        self.0.sleep_until(deadline)
    }

    /// Sleeps for `duration`; returns false (early) if the processor is being stopped.
    pub fn sleep(&self, duration: Duration) -> bool {
        self.0.sleep_until(Instant::now() + duration)
    }
}
