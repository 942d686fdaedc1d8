use serde::{Deserialize, Serialize};

use super::config::ProcessorConfig;
use super::processor::Execution;
use crate::core::frames::FrameType;
use crate::core::links::PortSet;

/// What a processor type is: the registry's entry, `streamlib types --json`, `GET /api/registry`.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProcessorDescriptor {
    /// The type name used to create it, e.g. `TestPatternProcessor`.
    pub type_name: String,
    /// One sentence on what it does.
    pub description: String,
    /// When its `process` runs.
    pub execution: Execution,
    /// Control-plane processors (the API server) run whenever the runtime exists, not only
    /// between start and stop, so that the runtime can be stopped and started through them.
    pub control_plane: bool,
    /// Its input ports.
    pub inputs: Vec<PortDescriptor>,
    /// Its output ports.
    pub outputs: Vec<PortDescriptor>,
    /// JSON Schema of its config. A field a running processor can take without a restart
    /// carries `"x-streamlib-live": true` (declared with `#[streamlib(live)]`).
    pub config_schema: serde_json::Value,
    /// The config fields marked live in `config_schema`, for convenience.
    pub live_fields: Vec<String>,
}

/// The schema keyword that marks a config field live (see [`ProcessorDescriptor::config_schema`]).
pub const LIVE_KEYWORD: &str = "x-streamlib-live";

/// The top-level properties of a config schema marked [`LIVE_KEYWORD`].
pub(crate) fn live_fields_of(schema: &serde_json::Value) -> Vec<String> {
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|props| {
            props
                .iter()
                .filter(|(_, p)| p.get(LIVE_KEYWORD).and_then(|v| v.as_bool()) == Some(true))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// One port of a processor type.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PortDescriptor {
    /// The port name used in connections. For a port list declared from config, the base name:
    /// the ports are `name_0`, `name_1`, ...
    pub name: String,
    /// The frame type it carries.
    pub frame_type: FrameType,
    /// What flows through it.
    pub description: String,
    /// For a port list declared from config: the config expression that gives the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_from: Option<String>,
}

/// What `#[streamlib::processor]` derives for a processor struct. Not meant to be implemented by
/// hand.
#[doc(hidden)]
pub trait ProcessorMeta: Sized {
    /// The config type (`NoConfig` when the struct has no `#[streamlib::config]` field).
    type Config: ProcessorConfig;
    /// Registry name: the struct name.
    const TYPE_NAME: &'static str;
    /// From the `description` attribute.
    const DESCRIPTION: &'static str;
    /// From the `execution` (and `interval_ms`) attribute.
    const EXECUTION: Execution;
    /// From the `control_plane` attribute.
    const CONTROL_PLANE: bool;

    /// Input and output port descriptors.
    fn port_descriptors() -> (Vec<PortDescriptor>, Vec<PortDescriptor>);
    /// Builds the processor with unconnected ports.
    fn from_config(config: Self::Config) -> Self;
    /// The instance's config.
    fn config(&self) -> &Self::Config;
    /// The instance's config, to replace it (`None` for a type without one).
    fn config_mut(&mut self) -> Option<&mut Self::Config>;
    /// The instance's ports.
    fn ports(&self) -> PortSet;

    /// The full descriptor of this type.
    fn descriptor() -> ProcessorDescriptor {
        let (inputs, outputs) = Self::port_descriptors();
        let schema = schemars::schema_for!(Self::Config);
        let config_schema = serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null);
        ProcessorDescriptor {
            type_name: Self::TYPE_NAME.to_string(),
            description: Self::DESCRIPTION.to_string(),
            execution: Self::EXECUTION,
            control_plane: Self::CONTROL_PLANE,
            inputs,
            outputs,
            live_fields: live_fields_of(&config_schema),
            config_schema,
        }
    }
}
