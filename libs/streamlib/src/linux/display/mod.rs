//! `DisplayProcessor`: a window that shows video, driven from the runtime's main thread.

mod picture;
mod preflight;
mod processor;
mod window_host;

pub use picture::fit_to_window;
pub use processor::{DisplayConfig, DisplayProcessor};
