//! The runtime: owns the graph on its thread, runs each processor on a thread of its own,
//! executes commands from the service layer, and reports events.
//!
//! - `stream_runtime`: [`StreamRuntime`], its public API and lifecycle ordering.
//! - `commands`: the one dispatcher for service-layer commands (`run()` and `poll_commands()`).
//! - `pending`: requests parked on processor threads (a create or start in `setup`, a removal
//!   in teardown, a stop behind a start), answered when they report while the runtime thread
//!   serves other commands.
//! - `live`: config changes, checked on the runtime thread and applied on the processor's
//!   thread between two `process()` calls; `restart`: tearing one processor down and setting
//!   it up again with its links kept.
//! - `worker`: the worker protocol, both ends (spawn, setup handshake, stop, join) and the
//!   processor thread's loop.
//! - `wake`: how a processor thread is woken (input, pacing clock, stop request).
//! - `lifecycle`: [`RuntimeStatus`] and [`ProcessorStatus`].
//! - `limits`: [`RuntimeLimits`], what a graph may spend (processors, queued frame memory).
//! - `events`, `main_thread`, `os_signals` (SIGINT/SIGTERM), `shared` (per-processor state),
//!   `thread_role` (the deadlock guard).

mod apply;
mod commands;
mod events;
mod graph_apply;
mod lifecycle;
mod limits;
mod live;
mod main_thread;
mod os_signals;
mod pending;
mod restart;
mod shared;
mod stream_runtime;
pub(crate) mod thread_role;
mod wake;
mod worker;

pub use events::{RuntimeEvent, RuntimeEventKind};
pub use lifecycle::{ProcessorStatus, RuntimeStatus};
pub use limits::{
    DEFAULT_MAX_LINK_MIB, DEFAULT_MAX_PROCESSORS, DEFAULT_MAX_QUEUED_MIB, RuntimeLimits,
};
pub use live::{ConfigApplied, ConfigChange, ConfigUpdate};
pub use main_thread::{MAIN_THREAD_TIMEOUT, MainThreadHandle, ShutdownHandle};
pub use stream_runtime::{DRAIN_TIMEOUT, StreamRuntime};
pub use wake::StopSignal;
pub use worker::{GRAPH_STOP_TIMEOUT, SETUP_TIMEOUT, STOP_TIMEOUT};

pub(crate) use events::EventBus;
pub(crate) use live::changed_fields;
pub(crate) use shared::ProcessorShared;
pub(crate) use wake::{ProcessorSignal, current_processor_stopping};
pub(crate) use worker::Slot;
