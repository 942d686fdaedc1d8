//! Processors: the trait, how they run, what describes them, and the registry that creates them
//! by type name.

#[cfg(feature = "api-server")]
mod api_server;
pub mod audio;
mod builtin;
mod config;
mod descriptor;
mod dynamic;
mod processor;
mod registry;
mod spec;
pub mod video;
pub mod wav;

#[cfg(feature = "api-server")]
pub use api_server::{ApiServerConfig, ApiServerHandle, ApiServerProcessor};
pub use builtin::*;
pub use config::{ConfigError, NoConfig, ProcessorConfig};
pub use descriptor::{LIVE_KEYWORD, PortDescriptor, ProcessorDescriptor};
pub use processor::{Execution, Processor};
pub use registry::{PROCESSOR_REGISTRY, ProcessorRegistration, ProcessorRegistry};
pub use spec::ProcessorSpec;

#[doc(hidden)]
pub use descriptor::ProcessorMeta;
pub(crate) use dynamic::DynProcessor;
pub(crate) use registry::json_kind;
