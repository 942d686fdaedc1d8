//! The runtime: owns the graph on its thread, runs each processor on a thread of its own,
//! executes commands from the service layer, and reports events.

mod events;
mod main_thread;
mod shared;
mod signal;
mod signals;
mod state;
mod stream_runtime;
pub(crate) mod thread_role;
mod worker;

pub use events::{RuntimeEvent, RuntimeEventKind};
pub use main_thread::{MAIN_THREAD_TIMEOUT, MainThreadHandle, ShutdownHandle};
pub use signal::StopSignal;
pub use state::{
    Link, LinkInfo, PortInfo, ProcessorCounters, ProcessorInfo, ProcessorState, RuntimeState,
    RuntimeStatus,
};
pub use stream_runtime::{DRAIN_TIMEOUT, SETUP_TIMEOUT, STOP_TIMEOUT, StreamRuntime};

pub(crate) use events::EventBus;
pub(crate) use shared::ProcessorShared;
pub(crate) use signal::{ProcessorSignal, current_processor_stopping};
