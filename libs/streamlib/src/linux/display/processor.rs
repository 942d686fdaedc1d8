//! The `DisplayProcessor`: shows the frames on its `video` input in a window.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use winit::window::WindowId;

use super::window_host::{self, Picture, WindowRequest, WindowShared};
use crate::core::context::{Counter, RuntimeContext};
use crate::core::error::{Result, StreamError};
use crate::core::frames::VideoFrame;
use crate::core::links::LinkInput;
use crate::core::processors::{ConfigError, ProcessorConfig};
use crate::core::runtime::MainThreadHandle;

/// Config of [`DisplayProcessor`]. `title` is live: the open window takes a new one at once.
#[streamlib::config]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DisplayConfig {
    /// Window title (at most 256 characters).
    #[streamlib(live)]
    pub title: String,
    /// Initial inner width of the window in pixels (16 to 7680); the user may resize it.
    pub width: u32,
    /// Initial inner height of the window in pixels (16 to 4320).
    pub height: u32,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        Self {
            title: "streamlib".to_string(),
            width: 640,
            height: 480,
        }
    }
}

impl ProcessorConfig for DisplayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.title.chars().count() > 256 {
            return Err(ConfigError::new("title", "must be at most 256 characters"));
        }
        if self.title.contains('\0') {
            return Err(ConfigError::new("title", "must not contain NUL characters"));
        }
        ConfigError::check_range("width", self.width, 16, 7680)?;
        ConfigError::check_range("height", self.height, 16, 4320)
    }
}

/// The window a running display owns.
struct DisplayWindow {
    id: WindowId,
    shared: Arc<WindowShared>,
    main: MainThreadHandle,
}

/// Shows the video arriving on its input in a window (X11), scaled to fit with the aspect
/// ratio kept. The window lives on the runtime's main thread: this processor's thread only
/// converts frames, and the main thread puts them on screen. When frames come faster than the
/// screen takes them, the newest wins. Closing the window emits a `window_closed` event and sets
/// the `window_open` metric to 0; the processor then discards frames until it is stopped (a
/// restart opens a new window). Without a display server, `setup` fails saying so.
#[streamlib::processor(
    execution = Reactive,
    description = "Shows the video on its input in a window (X11), scaled to fit; closing the window emits `window_closed`"
)]
pub struct DisplayProcessor {
    #[streamlib::input(description = "Frames to show (RGBA, BGRA or gray); the newest wins")]
    video: LinkInput<VideoFrame>,
    #[streamlib::config]
    config: DisplayConfig,
    window: Option<DisplayWindow>,
    window_open: Option<Counter>,
}

impl crate::core::Processor for DisplayProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let shared = Arc::new(WindowShared::default());
        let events = ctx.clone();
        let title = self.config.title.clone();
        let window_open = ctx.counter("window_open");
        let closed_gauge = window_open.clone();
        let request = WindowRequest {
            title: self.config.title.clone(),
            width: self.config.width,
            height: self.config.height,
            shared: shared.clone(),
            on_close: Box::new(move || {
                closed_gauge.set(0);
                events.emit_event("window_closed", serde_json::json!({ "title": title }));
            }),
            shown: ctx.counter("frames_shown"),
        };
        let main = ctx.main_thread();
        let for_host = main.clone();
        let opened = main
            .run(move || window_host::open(for_host, request))
            .and_then(|r| {
                r.map_err(|e| StreamError::Unavailable(format!("DisplayProcessor: {e}")))
            });
        let id = match opened {
            Ok(id) => id,
            Err(e) => {
                // The main thread may still open it later (after a timeout here); it then
                // closes it again at once.
                shared.abandon();
                return Err(e);
            }
        };
        window_open.set(1);
        self.window = Some(DisplayWindow { id, shared, main });
        self.window_open = Some(window_open);
        Ok(())
    }

    fn reconfigure(&mut self, new: &DisplayConfig, _ctx: &RuntimeContext) -> Result<()> {
        if let Some(window) = &self.window {
            let (id, title) = (window.id, new.title.clone());
            // Posted, not waited for: the window takes it on the main thread's next turn.
            window
                .main
                .post(move || window_host::set_title(id, &title))?;
        }
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        let Some(frame) = self.video.read_latest() else {
            return Ok(());
        };
        let Some(window) = &self.window else {
            return Ok(());
        };
        if window.shared.is_closed() {
            return Ok(());
        }
        let (width, height) = window.shared.size();
        if window.shared.offer(Picture::fit(frame, width, height)) {
            let id = window.id;
            window.main.post(move || window_host::present(id))?;
        }
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        if let Some(window) = self.window.take() {
            let id = window.id;
            // If the main thread cannot be reached now, its next pump closes the window.
            window.shared.abandon();
            window.main.run(move || window_host::close(id))?;
            if let Some(counter) = &self.window_open {
                counter.set(0);
            }
        }
        Ok(())
    }
}
