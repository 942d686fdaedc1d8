//! What every FFmpeg user here needs: one-time initialisation and a `Send` scaler.

use std::sync::Once;

use ffmpeg_next as ffmpeg;

/// Initialises FFmpeg once per process (its error messages are empty without it) and keeps
/// its own logging to errors, which streamlib reports itself.
pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(e) = ffmpeg::init() {
            tracing::warn!(error = %e, "FFmpeg initialisation reported an error");
        }
        ffmpeg::log::set_level(ffmpeg::log::Level::Error);
    });
}

/// A software scaler that can move to the processor's thread with the processor.
pub(crate) struct Scaler(pub(crate) ffmpeg::software::scaling::Context);

// SAFETY: an SwsContext has no thread affinity; it is only `!Send` because ffmpeg-next wraps
// a raw pointer. This wrapper owns it exclusively and is used from one thread at a time (the
// processor's), so moving it between threads is sound.
unsafe impl Send for Scaler {}
