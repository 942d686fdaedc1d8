//! What a processor gets from the runtime in `setup`.

mod counter;

use std::sync::Arc;
use std::time::Duration;

pub use counter::Counter;

use crate::core::files::FileAccess;
use crate::core::graph::ProcessorUniqueId;
use crate::core::runtime::{
    EventBus, MainThreadHandle, ProcessorShared, RuntimeEventKind, StopSignal,
};
use crate::core::service::RuntimeService;

/// A processor's handle on the runtime, passed to `setup`.
///
/// Clone what you need to keep: the service (to change the graph), counters (to publish
/// metrics), the stop signal (to pace yourself), the main-thread handle (for window work).
#[derive(Clone)]
pub struct RuntimeContext {
    pub(crate) processor_id: ProcessorUniqueId,
    pub(crate) runtime_service: RuntimeService,
    pub(crate) shared: Arc<ProcessorShared>,
    pub(crate) main_thread: MainThreadHandle,
    pub(crate) events: Arc<EventBus>,
    pub(crate) files: FileAccess,
}

impl RuntimeContext {
    /// Get a RuntimeService for cross-thread runtime control.
    ///
    /// Use this in processors that need to modify the graph dynamically
    /// (e.g., API servers, orchestration processors).
    pub fn runtime_service(&self) -> RuntimeService {
        self.runtime_service.clone()
    }

    /// This processor's id in the runtime.
    pub fn processor_id(&self) -> &ProcessorUniqueId {
        &self.processor_id
    }

    /// A named counter reported with this processor (`metrics` in the API and `streamlib run`).
    /// The same name returns the same counter, across restarts too.
    pub fn counter(&self, name: &str) -> Counter {
        self.shared.counter(name)
    }

    /// The values of this processor's named counters, by name.
    pub fn metrics(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.metrics()
    }

    /// The processor's stop request, for processors that wait inside `process()`.
    pub fn stop_signal(&self) -> StopSignal {
        StopSignal(self.shared.signal.clone())
    }

    /// Sets the period of a Continuous processor for this run (e.g. from a configured fps),
    /// overriding the `interval_ms` attribute. The schedule is drift-free.
    pub fn set_interval(&self, interval: Duration) {
        self.shared.set_interval(interval);
    }

    /// Runs work on the runtime's own (main) thread.
    pub fn main_thread(&self) -> MainThreadHandle {
        self.main_thread.clone()
    }

    /// Where this processor may open files: every file a processor reads or writes goes through
    /// it (paths beneath the media directory under `streamlib serve`; see [`FileAccess`]).
    pub fn files(&self) -> &FileAccess {
        &self.files
    }

    /// Publishes an event of this processor's own (`end_of_stream`, `window_closed`, ...).
    pub fn emit_event(&self, name: &str, data: serde_json::Value) {
        self.events.publish(RuntimeEventKind::ProcessorEvent {
            processor_id: self.processor_id.clone(),
            name: name.to_string(),
            data,
        });
    }
}
