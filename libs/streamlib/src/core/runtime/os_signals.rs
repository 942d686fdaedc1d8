//! SIGINT/SIGTERM while `run()` is active: the first one asks for a clean shutdown, a second one
//! (the user insisting) exits at once.

use std::thread::JoinHandle;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::main_thread::ShutdownHandle;
use crate::core::error::{Result, StreamError};

/// Exit status used when a second signal forces the process down (128 + SIGINT).
const FORCED_EXIT_CODE: i32 = 130;

pub(crate) struct SignalWatcher {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalWatcher {
    pub(crate) fn install(shutdown: ShutdownHandle) -> Result<Self> {
        let mut signals = Signals::new([SIGINT, SIGTERM])
            .map_err(|e| StreamError::io("cannot install SIGINT/SIGTERM handlers", e))?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("sl-signals".to_string())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen == 1 {
                        tracing::info!(signal, "signal received, stopping all processors (send it again to exit at once)");
                        shutdown.request();
                    } else {
                        tracing::warn!(signal, "second signal received, exiting without cleanup");
                        std::process::exit(FORCED_EXIT_CODE);
                    }
                }
            })
            .map_err(|e| StreamError::io("cannot start the signal thread", e))?;
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for SignalWatcher {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            // The thread only loops over signals; a panic there has nothing to clean up.
            let _ = thread.join();
        }
    }
}
