//! Names in the graph: processor and link ids, port references, and the graph file format.

mod file;
mod ids;
mod port_ref;

pub use file::{GraphConnection, GraphFile, GraphProcessor};
pub use ids::{LinkUniqueId, ProcessorUniqueId};
pub use port_ref::{InputLinkPortRef, OutputLinkPortRef};

pub(crate) use ids::{id_prefix_for_type, random_suffix, validate_user_id};
