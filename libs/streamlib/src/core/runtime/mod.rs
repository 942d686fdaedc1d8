//! The runtime: owns the graph on its thread, runs each processor on a thread of its own,
//! executes commands from the service layer, and reports events.
//!
//! - `stream_runtime`: [`StreamRuntime`], its public API and lifecycle ordering.
//! - `commands`: the one dispatcher for service-layer commands (`run()` and `poll_commands()`).
//! - `worker`: the worker protocol, both ends (spawn, setup handshake, stop, join) and the
//!   processor thread's loop.
//! - `wake`: how a processor thread is woken (input, pacing clock, stop request).
//! - `lifecycle`: [`RuntimeStatus`] and [`ProcessorStatus`].
//! - `events`, `main_thread`, `os_signals` (SIGINT/SIGTERM), `shared` (per-processor state),
//!   `thread_role` (the deadlock guard).

mod apply;
mod commands;
mod events;
mod lifecycle;
mod main_thread;
mod os_signals;
mod shared;
mod stream_runtime;
pub(crate) mod thread_role;
mod wake;
mod worker;

pub use events::{RuntimeEvent, RuntimeEventKind};
pub use lifecycle::{ProcessorStatus, RuntimeStatus};
pub use main_thread::{MAIN_THREAD_TIMEOUT, MainThreadHandle, ShutdownHandle};
pub use stream_runtime::{DRAIN_TIMEOUT, StreamRuntime};
pub use wake::StopSignal;
pub use worker::{SETUP_TIMEOUT, STOP_TIMEOUT};

pub(crate) use events::EventBus;
pub(crate) use shared::ProcessorShared;
pub(crate) use wake::{ProcessorSignal, current_processor_stopping};
pub(crate) use worker::Slot;
