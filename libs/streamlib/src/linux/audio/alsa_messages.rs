//! alsa-lib's own messages ("ALSA lib confmisc.c:855:(parse_card) cannot find card '0'", printed
//! while it looks for a default device that is not there) go to our log at debug level (target
//! `alsa`: `--log alsa=debug` shows them) instead of onto stderr, where they look like failures
//! of their own next to the one clear error the processor reports. alsa-lib's handler is per
//! thread: this covers the threads that open, list and close devices, not cpal's stream threads.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

thread_local! {
    /// How many [`quiet`] calls are under way on this thread (only the outermost installs and
    /// removes the handler).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` with alsa-lib's messages on this thread taken into the log instead of printed.
pub(crate) fn quiet<T>(f: impl FnOnce() -> T) -> T {
    let _capture = Capture::begin();
    f()
}

/// One [`quiet`] call: when the outermost ends (also by a panic), the handler is removed and
/// what it caught is logged.
struct Capture {
    depth: u32,
    buffer: Option<Rc<RefCell<alsa::Output>>>,
}

impl Capture {
    fn begin() -> Self {
        let depth = DEPTH.with(|d| d.replace(d.get() + 1));
        let buffer = if depth == 0 {
            alsa::Output::local_error_handler().ok()
        } else {
            None
        };
        Self { depth, buffer }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(self.depth));
        let Some(buffer) = self.buffer.take() else {
            return;
        };
        // SAFETY: `snd_lib_error_set_local` only stores a handler for this thread; `None`
        // removes ours (alsa-lib prints again), and no alsa-lib call is under way on this
        // thread while it runs.
        unsafe {
            alsa_sys::snd_lib_error_set_local(None);
        }
        let text = buffer.borrow().to_string();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!(target: "alsa", "{line}");
        }
    }
}
