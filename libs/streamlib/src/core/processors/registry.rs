//! `PROCESSOR_REGISTRY`: every processor type linked into the program, by name.
//!
//! Each `#[streamlib::processor]` struct submits a [`ProcessorRegistration`] (via `inventory`), so
//! a type is registered by being compiled in; nothing has to be listed by hand.

use std::collections::BTreeMap;
use std::sync::{LazyLock, OnceLock};

use super::config::ProcessorConfig;
use super::descriptor::{ProcessorDescriptor, ProcessorMeta};
use super::processor::Processor;
use super::spec::ProcessorSpec;
use crate::core::error::{Result, StreamError};

/// One registered processor type: how to describe it and how to create it from JSON config.
#[doc(hidden)]
pub struct ProcessorRegistration {
    /// The type name (the struct name).
    pub type_name: &'static str,
    /// Whether it is a control-plane processor (known without building the descriptor).
    pub control_plane: bool,
    /// Builds the type's descriptor (ports, schema...).
    pub describe: fn() -> ProcessorDescriptor,
    /// Builds a spec from a JSON config (`null` or `{}` = defaults).
    pub create: fn(serde_json::Value) -> Result<ProcessorSpec>,
    /// Checks a JSON config as `create` would and returns it effective (defaults filled in).
    pub check: fn(serde_json::Value) -> Result<serde_json::Value>,
}

impl ProcessorRegistration {
    /// The registration of processor type `P`.
    pub const fn of<P: Processor + ProcessorMeta>() -> Self {
        Self {
            type_name: P::TYPE_NAME,
            control_plane: P::CONTROL_PLANE,
            describe: P::descriptor,
            create: create_from_json::<P>,
            check: check_json::<P>,
        }
    }
}

inventory::collect!(ProcessorRegistration);

/// The processor types known to this program.
pub struct ProcessorRegistry {
    by_name: BTreeMap<&'static str, &'static ProcessorRegistration>,
    /// Descriptors built once: generating the JSON Schemas is the costly part.
    descriptors: OnceLock<Vec<ProcessorDescriptor>>,
}

/// The global registry, built on first use from every compiled-in processor type.
pub static PROCESSOR_REGISTRY: LazyLock<ProcessorRegistry> = LazyLock::new(|| {
    let mut by_name = BTreeMap::new();
    for reg in inventory::iter::<ProcessorRegistration> {
        if by_name.insert(reg.type_name, reg).is_some() {
            tracing::warn!(
                type_name = reg.type_name,
                "processor type registered twice; keeping the last one"
            );
        }
    }
    ProcessorRegistry {
        by_name,
        descriptors: OnceLock::new(),
    }
});

impl ProcessorRegistry {
    /// Creates a processor of `type_name` from its JSON config (`null` or `{}` = all defaults).
    ///
    /// Unknown types list the known ones; bad configs name the field and what was expected.
    pub fn create(&self, type_name: &str, config: serde_json::Value) -> Result<ProcessorSpec> {
        let reg = self
            .by_name
            .get(type_name)
            .ok_or_else(|| self.unknown(type_name))?;
        (reg.create)(config)
    }

    /// Checks a config for `type_name` as [`ProcessorRegistry::create`] would, and returns it
    /// effective: every field present, defaults filled in, in the type's own field order.
    pub fn check_config(
        &self,
        type_name: &str,
        config: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let reg = self
            .by_name
            .get(type_name)
            .ok_or_else(|| self.unknown(type_name))?;
        (reg.check)(config)
    }

    /// The config fields of `type_name` a running processor can take without a restart
    /// (marked `"x-streamlib-live"` in its schema).
    pub fn live_fields(&self, type_name: &str) -> Result<&[String]> {
        self.descriptors()
            .iter()
            .find(|d| d.type_name == type_name)
            .map(|d| d.live_fields.as_slice())
            .ok_or_else(|| self.unknown(type_name))
    }

    /// The descriptor of one type.
    pub fn descriptor(&self, type_name: &str) -> Result<ProcessorDescriptor> {
        self.by_name
            .get(type_name)
            .map(|reg| (reg.describe)())
            .ok_or_else(|| self.unknown(type_name))
    }

    /// Descriptors of every type, sorted by name.
    pub fn descriptors(&self) -> &[ProcessorDescriptor] {
        self.descriptors
            .get_or_init(|| self.by_name.values().map(|reg| (reg.describe)()).collect())
    }

    /// Every type name, sorted.
    pub fn type_names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }

    /// Whether `type_name` is a registered control-plane processor type (cheap: no descriptor
    /// or schema is built).
    pub fn is_control_plane(&self, type_name: &str) -> bool {
        self.by_name
            .get(type_name)
            .is_some_and(|reg| reg.control_plane)
    }

    /// Whether `type_name` is registered.
    pub fn contains(&self, type_name: &str) -> bool {
        self.by_name.contains_key(type_name)
    }

    fn unknown(&self, type_name: &str) -> StreamError {
        StreamError::UnknownProcessorType {
            name: type_name.to_string(),
            known: self.type_names().iter().map(|s| s.to_string()).collect(),
        }
    }
}

fn create_from_json<P: Processor + ProcessorMeta>(
    config: serde_json::Value,
) -> Result<ProcessorSpec> {
    let config: P::Config = parse_config(P::TYPE_NAME, config)?;
    config.validate().map_err(|e| e.for_type(P::TYPE_NAME))?;
    Ok(ProcessorSpec::new(P::from_config(config)))
}

fn check_json<P: Processor + ProcessorMeta>(
    config: serde_json::Value,
) -> Result<serde_json::Value> {
    let config: P::Config = parse_config(P::TYPE_NAME, config)?;
    config.validate().map_err(|e| e.for_type(P::TYPE_NAME))?;
    serde_json::to_value(&config).map_err(|e| StreamError::InvalidConfig {
        processor_type: P::TYPE_NAME.to_string(),
        field: None,
        message: format!("cannot be written back as JSON: {e}"),
    })
}

/// Deserializes a config, turning serde's message into one that names the field.
pub(crate) fn parse_config<C: ProcessorConfig>(
    type_name: &str,
    value: serde_json::Value,
) -> Result<C> {
    let invalid = |field: Option<String>, message: String| StreamError::InvalidConfig {
        processor_type: type_name.to_string(),
        field,
        message,
    };
    let value = match value {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        v @ serde_json::Value::Object(_) => v,
        other => {
            return Err(invalid(
                None,
                format!(
                    "config must be a JSON object (or null for defaults), got {}",
                    json_kind(&other)
                ),
            ));
        }
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path != "." {
            return invalid(Some(path), message);
        }
        // No path: the error came from inside a flattened struct, or it is an unknown key left
        // over after one took its fields; serde's flatten hides the path and the field list.
        match split_flattened_field_error(&message) {
            Some((field, message)) => invalid(Some(field.to_string()), message.to_string()),
            None => invalid(None, with_expected_fields::<C>(message)),
        }
    })
}

/// The message a flattened part of a config reports a bad field with (see
/// `ApiServerConfig`), read back by [`parse_config`] into a field and a message.
#[cfg(feature = "api-server")]
pub(crate) fn flattened_field_error(field: &str, message: &str) -> String {
    format!("field '{field}': {message}")
}

fn split_flattened_field_error(message: &str) -> Option<(&str, &str)> {
    message.strip_prefix("field '")?.split_once("': ")
}

/// serde's "unknown field `x`" without the list of accepted ones (a config with a flattened
/// part) gets the list from the config's JSON Schema.
fn with_expected_fields<C: ProcessorConfig>(message: String) -> String {
    if !message.starts_with("unknown field") || message.contains("expected") {
        return message;
    }
    let schema = schemars::schema_for!(C);
    let fields: Vec<String> = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().map(|k| format!("`{k}`")).collect())
        .unwrap_or_default();
    if fields.is_empty() {
        return message;
    }
    format!("{message}, expected one of {}", fields.join(", "))
}

/// "a string", "an array"...: what kind of JSON value `v` is, for messages.
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
