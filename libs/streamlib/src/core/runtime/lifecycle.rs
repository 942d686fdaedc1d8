//! Lifecycle states: of the runtime as a whole and of each processor. (Snapshots of the graph,
//! [`RuntimeState`](crate::core::RuntimeState) and friends, live in `core::graph`.)

use serde::{Deserialize, Serialize};

/// Lifecycle of the runtime as a whole.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeStatus {
    /// Created, never started. Processors added now wait for `start()`.
    Idle,
    /// Processors run; processors added now start at once.
    Running,
    /// Stopped after running; `start()` runs everything again.
    Stopped,
}

/// Lifecycle of one processor.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcessorStatus {
    /// In the graph, not started (runtime idle, or being set up).
    Pending,
    /// Set up and processing.
    Running,
    /// Torn down after a stop; starts again with the runtime.
    Stopped,
    /// Failed in setup, process or teardown; see `error`. The next start tries it again.
    Failed,
}
