//! Work other threads hand to the runtime's own thread, and the request to shut it down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::thread_role::{self, Role};
use crate::core::error::{Result, StreamError};

/// A closure to run on the runtime's thread.
pub(crate) type MainTask = Box<dyn FnOnce() + Send>;

/// Runs a posted task on the runtime thread. A panic in it is logged and goes no further: the
/// runtime thread must survive whatever a processor's main-thread work does.
pub(crate) fn execute(task: MainTask) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)) {
        tracing::error!(
            panic = %super::worker::panic_message(&*panic),
            "main-thread work panicked; the runtime goes on"
        );
    }
}

/// How long [`MainThreadHandle::run`] waits for the runtime thread before giving up.
pub const MAIN_THREAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs closures on the thread that owns the [`StreamRuntime`](super::StreamRuntime) (normally
/// the process's main thread), where platform window and device APIs want to be called.
///
/// The runtime executes them in [`StreamRuntime::run`](super::StreamRuntime::run) and whenever
/// it waits for processors (setup, stop), so a processor's `setup` may use it safely.
#[derive(Clone)]
pub struct MainThreadHandle {
    pub(crate) tx: flume::Sender<MainTask>,
    pub(crate) runtime_id: u64,
}

impl MainThreadHandle {
    /// Queues `task` without waiting for it.
    pub fn post(&self, task: impl FnOnce() + Send + 'static) -> Result<()> {
        self.tx
            .send(Box::new(task))
            .map_err(|_| StreamError::RuntimeUnavailable("the runtime has shut down".to_string()))
    }

    /// Runs `task` on the runtime thread and returns its result. Runs it inline when called on
    /// that thread. Fails after [`MAIN_THREAD_TIMEOUT`] if the runtime thread never gets to it
    /// (it is blocked, or nobody calls `run()`).
    pub fn run<R: Send + 'static>(&self, task: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        let guarded = move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(task))
                .map_err(|panic| super::worker::panic_message(&*panic))
        };
        if thread_role::current(self.runtime_id) == Some(Role::Main) {
            return guarded().map_err(|panic| {
                StreamError::processor(format!("main-thread work panicked: {panic}"))
            });
        }
        let (tx, rx) = flume::bounded(1);
        self.post(move || {
            let outcome = guarded();
            // The caller may have timed out and gone; then nobody wants the result.
            let _ = tx.send(outcome);
        })?;
        let outcome = rx.recv_timeout(MAIN_THREAD_TIMEOUT).map_err(|e| match e {
            flume::RecvTimeoutError::Timeout => StreamError::Timeout(format!(
                "the runtime thread did not finish main-thread work within {}s (it is busy or blocked, or StreamRuntime::run() is not being called)",
                MAIN_THREAD_TIMEOUT.as_secs()
            )),
            flume::RecvTimeoutError::Disconnected => StreamError::RuntimeUnavailable(
                "the runtime shut down before running the main-thread work".to_string(),
            ),
        })?;
        outcome
            .map_err(|panic| StreamError::processor(format!("main-thread work panicked: {panic}")))
    }
}

/// Asks [`StreamRuntime::run`](super::StreamRuntime::run) to stop everything and return. Cheap
/// to clone and usable from any thread (timers, signal handlers, tests).
#[derive(Clone)]
pub struct ShutdownHandle {
    pub(crate) requested: Arc<AtomicBool>,
    /// Set by a second request (a second Ctrl-C): stop without waiting for queued frames.
    pub(crate) hurried: Arc<AtomicBool>,
    pub(crate) tx: flume::Sender<()>,
}

impl ShutdownHandle {
    /// Requests shutdown; `run()` returns after stopping every processor.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
        // A full or closed channel means a wake-up is already queued or nobody is running.
        let _ = self.tx.try_send(());
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Requests a hurried shutdown: queued frames are not waited for, and every processor
    /// still running is asked to stop at once (writers still finalise their files). What a
    /// second Ctrl-C does.
    pub fn hurry(&self) {
        self.hurried.store(true, Ordering::Release);
        self.request();
    }

    /// Whether a hurried shutdown was requested.
    pub fn is_hurried(&self) -> bool {
        self.hurried.load(Ordering::Acquire)
    }
}
