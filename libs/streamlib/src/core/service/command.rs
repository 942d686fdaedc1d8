//! The messages between [`RuntimeService`](super::RuntimeService) and the runtime thread.

use crate::core::error::StreamError;
use crate::core::graph::{GraphApplied, GraphFile, PortTarget, ProcessorInfo, RuntimeState};
use crate::core::graph::{InputLinkPortRef, LinkUniqueId, OutputLinkPortRef, ProcessorUniqueId};
use crate::core::links::LinkOptions;
use crate::core::processors::ProcessorSpec;
use crate::core::runtime::{ConfigChange, ConfigUpdate};

/// One request to the runtime thread (crate-internal: callers use `RuntimeService`'s methods,
/// which send these and await the matching [`CommandResult`]).
pub(crate) enum RuntimeCommand {
    AddProcessor {
        spec: ProcessorSpec,
    },
    RemoveProcessor {
        id: ProcessorUniqueId,
    },
    Connect {
        from: OutputLinkPortRef,
        to: InputLinkPortRef,
        options: LinkOptions,
    },
    Disconnect {
        link_id: LinkUniqueId,
    },
    Start,
    Stop,
    GetState,
    GetProcessor {
        id: ProcessorUniqueId,
    },
    PortTargets {
        id: ProcessorUniqueId,
        port: String,
    },
    UpdateConfig {
        id: ProcessorUniqueId,
        change: ConfigChange,
        restart: bool,
    },
    Restart {
        id: ProcessorUniqueId,
        downstream: bool,
    },
    GetGraph {
        minimal: bool,
    },
    /// Both forms at once (one revision): what a graph file is written from.
    GetGraphForFile,
    ApplyGraph {
        doc: Box<GraphFile>,
        dry_run: bool,
        if_match: Option<u64>,
    },
    /// Where processors are drawn (`None`: unplaced), see `StreamRuntime::set_positions`.
    SetPositions {
        changes: std::collections::BTreeMap<String, Option<crate::core::graph::UiPosition>>,
    },
    /// The state with rates and the histograms behind them (a Prometheus scrape).
    GetMetrics,
    /// Opens a watch on the frames passing a port (a snapshot; answered at once, the waiting
    /// for a frame is the caller's).
    WatchPort {
        id: ProcessorUniqueId,
        port: String,
    },
}

impl RuntimeCommand {
    /// Short name for logs and errors.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            RuntimeCommand::AddProcessor { .. } => "add_processor",
            RuntimeCommand::RemoveProcessor { .. } => "remove_processor",
            RuntimeCommand::Connect { .. } => "connect",
            RuntimeCommand::Disconnect { .. } => "disconnect",
            RuntimeCommand::Start => "start",
            RuntimeCommand::Stop => "stop",
            RuntimeCommand::GetState => "get_state",
            RuntimeCommand::GetProcessor { .. } => "get_processor",
            RuntimeCommand::PortTargets { .. } => "port_targets",
            RuntimeCommand::UpdateConfig { .. } => "update_config",
            RuntimeCommand::Restart { .. } => "restart_processor",
            RuntimeCommand::GetGraph { .. } => "get_graph",
            RuntimeCommand::GetGraphForFile => "get_graph_for_file",
            RuntimeCommand::ApplyGraph { .. } => "apply_graph",
            RuntimeCommand::SetPositions { .. } => "set_positions",
            RuntimeCommand::GetMetrics => "get_metrics",
            RuntimeCommand::WatchPort { .. } => "watch_port",
        }
    }
}

/// The runtime thread's reply to one [`RuntimeCommand`].
pub(crate) enum CommandResult {
    ProcessorAdded(ProcessorUniqueId),
    ProcessorRemoved,
    Connected(LinkUniqueId),
    Disconnected,
    Started,
    Stopped,
    /// Shared: every `GetState` queued together gets the same snapshot (see `run`).
    State(std::sync::Arc<RuntimeState>),
    Processor(Box<ProcessorInfo>),
    Targets(Vec<PortTarget>),
    ConfigUpdated(Box<ConfigUpdate>),
    Graph(Box<GraphFile>),
    /// The full document and the minimal one, of the same revision.
    GraphForFile(Box<(GraphFile, GraphFile)>),
    Applied(Box<GraphApplied>),
    /// Positions set: the graph's revision now.
    Placed(u64),
    Metrics(Box<crate::core::metrics::MetricsReport>),
    Watch(crate::core::links::PortWatch),
    Error(StreamError),
}
