//! The process's one winit event loop and the windows on it.
//!
//! winit allows one event loop per process, bound to the thread that created it; here that is
//! the runtime's (main) thread, and every function in this module runs there, reached through
//! the runtime's main-thread queue. The loop is never `run`; it is *pumped*: a watcher thread
//! sleeps in `poll(2)` on the loop's file descriptor and, when X events arrive, posts a pump to
//! the main thread; each frame presentation pumps too. The main thread keeps serving runtime
//! commands in between and sleeps when nothing happens.

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{StartCause, WindowEvent};
use winit::event_loop::{ActiveEventLoop, EventLoop};
use winit::platform::pump_events::{EventLoopExtPumpEvents, PumpStatus};
use winit::platform::x11::EventLoopBuilderExtX11;
use winit::window::{Window, WindowId};

use super::picture::fit_to_window;
use super::preflight;
use crate::core::context::Counter;
use crate::core::frames::VideoFrame;
use crate::core::runtime::MainThreadHandle;

/// How long the event watcher sleeps between checks of its stop flag.
const WATCH_PERIOD: Duration = Duration::from_millis(200);

/// A picture ready for a window: `0x00RRGGBB` pixels, row after row, no padding, and the
/// frame it was made from (to fit it again when the window is resized).
pub(crate) struct Picture {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) pixels: Vec<u32>,
    pub(crate) source: VideoFrame,
}

impl Picture {
    /// `frame` fitted to a `width`×`height` window.
    pub(crate) fn fit(frame: VideoFrame, width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: fit_to_window(&frame, width, height),
            source: frame,
        }
    }
}

/// What a display processor's thread and the main thread share about one window.
#[derive(Default)]
pub(crate) struct WindowShared {
    /// The newest picture waiting to be shown; a newer frame replaces it.
    pending: Mutex<Option<Picture>>,
    /// The window's inner size as `width << 32 | height`, kept current by the main thread.
    size: AtomicU64,
    /// Set once the user closed the window.
    closed: AtomicBool,
    /// A presentation is queued on the main thread.
    present_queued: AtomicBool,
    /// The processor gave up on this window (its setup failed or timed out): close it.
    abandoned: AtomicBool,
}

impl WindowShared {
    /// The window's inner size in pixels.
    pub(crate) fn size(&self) -> (u32, u32) {
        let v = self.size.load(Ordering::Acquire);
        ((v >> 32) as u32, v as u32)
    }

    fn set_size(&self, size: PhysicalSize<u32>) {
        let v = (u64::from(size.width) << 32) | u64::from(size.height);
        self.size.store(v, Ordering::Release);
    }

    /// Whether the user closed the window.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Tells the main thread the window has no owner any more.
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Stores `picture` for the next presentation. Returns true when the caller must queue one
    /// (none is queued yet).
    pub(crate) fn offer(&self, picture: Picture) -> bool {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(picture);
        !self.present_queued.swap(true, Ordering::AcqRel)
    }

    fn take(&self) -> Option<Picture> {
        self.present_queued.store(false, Ordering::Release);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// What the main thread needs to open one window.
pub(crate) struct WindowRequest {
    pub(crate) title: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) shared: Arc<WindowShared>,
    /// Called on the main thread when the user closes the window.
    pub(crate) on_close: Box<dyn FnMut() + Send>,
    /// Counts pictures put on screen.
    pub(crate) shown: Counter,
}

/// One open window and the surface its pictures are drawn on.
struct OpenWindow {
    // Field order is drop order: the surface goes before the window it draws on.
    surface: softbuffer::Surface<Rc<Window>, Rc<Window>>,
    _context: softbuffer::Context<Rc<Window>>,
    window: Rc<Window>,
    shared: Arc<WindowShared>,
    on_close: Box<dyn FnMut() + Send>,
    shown_count: Counter,
    /// The picture on screen, redrawn when the window is exposed.
    shown: Option<Picture>,
}

impl OpenWindow {
    /// Draws the picture on screen again, fitted anew if the window's size changed.
    fn redraw(&mut self) {
        let Some(picture) = self.shown.take() else {
            return;
        };
        let (width, height) = self.shared.size();
        let picture = if (picture.width, picture.height) == (width, height) {
            picture
        } else {
            Picture::fit(picture.source, width, height)
        };
        if let Err(e) = draw(self, &picture) {
            tracing::warn!(error = %e, "redrawing a window failed");
        }
        self.shown = Some(picture);
    }

    /// Reports the window closed to its processor (once).
    fn report_closed(&mut self) {
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            (self.on_close)();
        }
    }
}

/// winit's callbacks: creates requested windows and handles window events.
#[derive(Default)]
struct App {
    windows: HashMap<WindowId, OpenWindow>,
    /// Windows to create at the next callback, each with where to put the outcome.
    requests: Vec<WindowRequest>,
    created: Vec<Result<WindowId, String>>,
}

impl App {
    fn create_requested(&mut self, event_loop: &ActiveEventLoop) {
        for request in std::mem::take(&mut self.requests) {
            if request.shared.is_abandoned() {
                self.created.push(Err(
                    "the display processor gave up waiting for its window".to_string()
                ));
                continue;
            }
            let outcome = open_window(event_loop, request).map(|open| {
                let id = open.window.id();
                self.windows.insert(id, open);
                id
            });
            self.created.push(outcome);
        }
    }
}

impl ApplicationHandler for App {
    fn new_events(&mut self, event_loop: &ActiveEventLoop, _cause: StartCause) {
        self.create_requested(event_loop);
    }

    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        self.create_requested(event_loop);
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        self.create_requested(event_loop);
    }

    fn window_event(&mut self, _event_loop: &ActiveEventLoop, id: WindowId, event: WindowEvent) {
        let Some(open) = self.windows.get_mut(&id) else {
            return;
        };
        match event {
            WindowEvent::CloseRequested | WindowEvent::Destroyed => {
                if let Some(mut open) = self.windows.remove(&id) {
                    open.report_closed();
                }
            }
            WindowEvent::Resized(size) => {
                open.shared.set_size(size);
                open.redraw();
            }
            WindowEvent::RedrawRequested => open.redraw(),
            _ => {}
        }
    }
}

/// Creates a window and its drawing surface.
fn open_window(event_loop: &ActiveEventLoop, request: WindowRequest) -> Result<OpenWindow, String> {
    let attributes = Window::default_attributes()
        .with_title(request.title.clone())
        .with_inner_size(PhysicalSize::new(request.width, request.height));
    let window = Rc::new(
        event_loop
            .create_window(attributes)
            .map_err(|e| format!("cannot create a window: {e}"))?,
    );
    let context = softbuffer::Context::new(window.clone())
        .map_err(|e| format!("cannot draw on the display: {e}"))?;
    let surface = softbuffer::Surface::new(&context, window.clone())
        .map_err(|e| format!("cannot create a drawing surface for the window: {e}"))?;
    request.shared.set_size(window.inner_size());
    Ok(OpenWindow {
        surface,
        _context: context,
        window,
        shared: request.shared,
        on_close: request.on_close,
        shown_count: request.shown,
        shown: None,
    })
}

/// Puts `picture` on the window.
fn draw(open: &mut OpenWindow, picture: &Picture) -> Result<(), String> {
    let (Some(width), Some(height)) = (
        NonZeroU32::new(picture.width),
        NonZeroU32::new(picture.height),
    ) else {
        return Ok(());
    };
    open.surface
        .resize(width, height)
        .map_err(|e| format!("cannot resize the drawing surface: {e}"))?;
    let mut buffer = open
        .surface
        .buffer_mut()
        .map_err(|e| format!("cannot get the drawing buffer: {e}"))?;
    if buffer.len() != picture.pixels.len() {
        return Err(format!(
            "drawing buffer holds {} pixels, the picture {}",
            buffer.len(),
            picture.pixels.len()
        ));
    }
    buffer.copy_from_slice(&picture.pixels);
    buffer
        .present()
        .map_err(|e| format!("cannot present the picture: {e}"))
}

/// The event loop, its windows, and the thread that watches for its events.
struct Host {
    event_loop: EventLoop<()>,
    app: App,
    watcher: Option<Watcher>,
}

thread_local! {
    static HOST: RefCell<Option<Host>> = const { RefCell::new(None) };
}

/// The thread that owns the event loop (winit allows one per process, on one thread).
static OWNER: OnceLock<ThreadId> = OnceLock::new();
/// Held while the event loop is being created, so two threads cannot race for winit's one
/// attempt.
static CREATING: Mutex<()> = Mutex::new(());
/// Why the event loop could not be created; winit refuses a second attempt, so it is final.
static INIT_FAILURE: OnceLock<String> = OnceLock::new();

/// Runs `f` with this thread's host, creating the event loop on first use.
fn with_host<R>(f: impl FnOnce(&mut Host) -> R) -> Result<R, String> {
    let me = std::thread::current().id();
    let not_owner = || {
        OWNER.get().is_some_and(|owner| *owner != me).then(|| {
            "windows are already managed by another runtime thread of this process (the window \
             system allows one event loop per process)"
                .to_string()
        })
    };
    if let Some(why) = not_owner() {
        return Err(why);
    }
    HOST.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let _creating = CREATING.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(why) = not_owner() {
                return Err(why);
            }
            if let Some(why) = INIT_FAILURE.get() {
                return Err(format!(
                    "{why} (the window system failed to start earlier in this process; restart \
                     it once the display works)"
                ));
            }
            // Checks that leave winit's one chance unused when they fail.
            preflight::check()?;
            let built =
                std::panic::catch_unwind(|| EventLoop::builder().with_any_thread(true).build());
            let event_loop = match built {
                Ok(Ok(event_loop)) => event_loop,
                Ok(Err(e)) => {
                    let why = format!("cannot start the window system: {e}");
                    let _ = INIT_FAILURE.set(why.clone());
                    return Err(why);
                }
                Err(_) => {
                    let why = "the window system panicked while starting (see the log)".to_string();
                    let _ = INIT_FAILURE.set(why.clone());
                    return Err(why);
                }
            };
            let _ = OWNER.set(me);
            *slot = Some(Host {
                event_loop,
                app: App::default(),
                watcher: None,
            });
        }
        match slot.as_mut() {
            Some(host) => Ok(f(host)),
            None => Err("the window system is not available".to_string()),
        }
    })
}

impl Host {
    /// Handles whatever events are pending, without waiting; closes windows whose processor
    /// gave up on them.
    fn pump(&mut self) {
        let status = self
            .event_loop
            .pump_app_events(Some(Duration::ZERO), &mut self.app);
        if let PumpStatus::Exit(code) = status {
            // The display connection is gone, and every window with it.
            tracing::warn!(
                code,
                "the window system exited; reporting every window closed"
            );
            for (_, mut open) in self.app.windows.drain() {
                open.report_closed();
            }
        }
        self.app
            .windows
            .retain(|_, open| !open.shared.is_abandoned());
        if self.app.windows.is_empty() {
            self.stop_watching();
        }
    }

    fn stop_watching(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.stop();
        }
    }
}

/// Opens a window. Runs on the main thread; `main` is the runtime's handle to it (for the
/// event watcher).
pub(crate) fn open(main: MainThreadHandle, request: WindowRequest) -> Result<WindowId, String> {
    with_host(|host| {
        host.app.requests.push(request);
        host.pump();
        let outcome = host
            .app
            .created
            .pop()
            .unwrap_or_else(|| Err("the window system did not create the window".to_string()));
        host.app.created.clear();
        let id = outcome?;
        if host.watcher.as_ref().is_none_or(Watcher::is_finished) {
            match Watcher::spawn(&host.event_loop, main) {
                Ok(watcher) => host.watcher = Some(watcher),
                Err(e) => {
                    host.app.windows.remove(&id);
                    return Err(e);
                }
            }
        }
        Ok(id)
    })?
}

/// Shows the window's pending picture, if any. Runs on the main thread.
pub(crate) fn present(id: WindowId) {
    let _ = with_host(|host| {
        host.pump();
        let Some(open) = host.app.windows.get_mut(&id) else {
            return;
        };
        let Some(picture) = open.shared.take() else {
            return;
        };
        match draw(open, &picture) {
            Ok(()) => {
                open.shown = Some(picture);
                open.shown_count.add(1);
            }
            Err(e) => tracing::warn!(error = %e, "showing a frame failed"),
        }
        // Flushes the drawing to the X server.
        host.pump();
    });
}

/// Gives the window a new title. Runs on the main thread.
pub(crate) fn set_title(id: WindowId, title: &str) {
    let _ = with_host(|host| {
        if let Some(open) = host.app.windows.get(&id) {
            open.window.set_title(title);
        }
        host.pump();
    });
}

/// Closes the window (the processor is being torn down). Runs on the main thread.
pub(crate) fn close(id: WindowId) {
    let _ = with_host(|host| {
        host.app.windows.remove(&id);
        // Lets the X server see the window go before the next pump.
        host.pump();
    });
}

/// Handles pending window events. Runs on the main thread.
fn pump() {
    let _ = with_host(Host::pump);
}

/// Wakes the main thread when the event loop has events to handle.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    fn spawn(event_loop: &EventLoop<()>, main: MainThreadHandle) -> Result<Self, String> {
        let fd: OwnedFd = event_loop
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("cannot watch the window system's events: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("streamlib-window-events".to_string())
            .spawn(move || watch(&fd, &main, &flag))
            .map_err(|e| format!("cannot start the window event thread: {e}"))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Whether the thread has ended (the runtime it posted to is gone, or polling failed).
    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Asks the thread to end; it does within [`WATCH_PERIOD`]. Not joined: this runs on the
    /// main thread, which the watcher may be waiting for.
    fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        drop(self.thread.take());
    }
}

/// The watcher's loop: sleep until the loop's descriptor is readable, then have the main
/// thread pump and wait until it has.
fn watch(fd: &OwnedFd, main: &MainThreadHandle, stop: &AtomicBool) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let period = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(WATCH_PERIOD.subsec_nanos()),
    };
    while !stop.load(Ordering::Acquire) {
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&period)) {
            Ok(0) => continue,
            Ok(_)
                if fds[0]
                    .revents()
                    .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) =>
            {
                // One last pump lets winit notice the connection is gone and report it.
                let _ = main.post(pump);
                tracing::warn!("the window system's connection closed; windows stop responding");
                return;
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching window events failed; windows stop responding");
                return;
            }
        }
        let (done_tx, done_rx) = flume::bounded(1);
        let posted = main.post(move || {
            pump();
            let _ = done_tx.send(());
        });
        if posted.is_err() {
            return; // The runtime is gone.
        }
        loop {
            match done_rx.recv_timeout(WATCH_PERIOD) {
                Ok(()) => break,
                Err(flume::RecvTimeoutError::Timeout) if !stop.load(Ordering::Acquire) => {}
                Err(_) => return,
            }
        }
    }
}
