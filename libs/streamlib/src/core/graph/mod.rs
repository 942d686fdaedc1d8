//! The graph: processor and link ids, port references, the graph file format, the graph the
//! runtime holds ([`Graph`](store::Graph), crate-internal) and the snapshots it gives out.

mod document;
mod file;
mod ids;
mod persist;
mod port_ref;
mod snapshot;
mod store;
mod targets;
mod toml_graph;

pub(crate) use document::Plan;
pub use document::{GraphApplied, GraphProblem, PlanAction, PlanActionKind};
#[cfg(feature = "api-server")]
pub(crate) use file::optional_object_values;
pub use file::{GraphConnection, GraphFile, GraphProcessor, GraphUi, UiPosition};
pub use ids::{LinkUniqueId, ProcessorUniqueId};
pub use persist::{FileProblem, GraphFileWriter, GraphFormat, check_graph_file, write_atomically};
pub use port_ref::{InputLinkPortRef, OutputLinkPortRef};
pub(crate) use snapshot::RatesBasis;
pub use snapshot::{Link, LinkInfo, PortInfo, ProcessorCounters, ProcessorInfo, RuntimeState};
pub use targets::PortTarget;

pub(crate) use store::{Graph, ProcessorEntry, check_unique_port_names};
