//! SIGINT/SIGTERM while `run()` is active: the first one asks for a clean shutdown (queued
//! frames drain, then every processor stops); a second one (the user insisting) hurries it:
//! nothing more is drained, every processor is asked to stop at once, writers still finalise
//! their files, and the process exits after [`HURRY_LIMIT`] at the latest; a third exits at
//! once (ffmpeg's manners).

use std::thread::JoinHandle;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::main_thread::ShutdownHandle;
use crate::core::error::{Result, StreamError};

/// Exit status used when signals force the process down (128 + SIGINT).
const FORCED_EXIT_CODE: i32 = 130;

/// After a second signal, the longest the hurried shutdown may take before the process exits
/// anyway.
pub const HURRY_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) struct SignalWatcher {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    /// Set when `run()` returns: a pending hurry deadline then does nothing.
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SignalWatcher {
    pub(crate) fn install(shutdown: ShutdownHandle) -> Result<Self> {
        let mut signals = Signals::new([SIGINT, SIGTERM])
            .map_err(|e| StreamError::io("cannot install SIGINT/SIGTERM handlers", e))?;
        let handle = signals.handle();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished = done.clone();
        let thread = std::thread::Builder::new()
            .name("sl-signals".to_string())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    // A shutdown already under way (the graph finished, --duration): the
                    // user's first signal asks it to hurry.
                    if seen == 1 && shutdown.is_requested() {
                        seen = 2;
                    }
                    match seen {
                        // Acted on before it is logged: a log that cannot be written must not
                        // lose the signal.
                        1 => {
                            shutdown.request();
                            tracing::info!(signal, "signal received, stopping all processors (again: hurry, finalising files; a third time: exit at once)");
                        }
                        2 => {
                            shutdown.hurry();
                            tracing::warn!(signal, "second signal: stopping every processor at once, finalising files (a third signal exits at once)");
                            // The hurried shutdown is bounded: exit anyway after HURRY_LIMIT.
                            let finished = finished.clone();
                            let _ = std::thread::Builder::new()
                                .name("sl-hurry".to_string())
                                .spawn(move || {
                                    std::thread::sleep(HURRY_LIMIT);
                                    if !finished.load(std::sync::atomic::Ordering::Acquire) {
                                        tracing::warn!("the hurried shutdown took too long; exiting");
                                        std::process::exit(FORCED_EXIT_CODE);
                                    }
                                });
                        }
                        _ => {
                            tracing::warn!(signal, "third signal received, exiting without cleanup");
                            std::process::exit(FORCED_EXIT_CODE);
                        }
                    }
                }
            })
            .map_err(|e| StreamError::io("cannot start the signal thread", e))?;
        Ok(Self {
            handle,
            thread: Some(thread),
            done,
        })
    }
}

impl Drop for SignalWatcher {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Release);
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            // The thread only loops over signals; a panic there has nothing to clean up.
            let _ = thread.join();
        }
    }
}
