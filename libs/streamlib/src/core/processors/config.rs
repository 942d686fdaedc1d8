use serde::{Serialize, de::DeserializeOwned};

/// What a processor config must be: JSON in and out, a JSON Schema (from its doc comments), a
/// default for every field, and an optional semantic check.
///
/// Configs should carry `#[serde(default, deny_unknown_fields)]` so that `{}` means "all
/// defaults" and a misspelt field is an error rather than silently ignored.
pub trait ProcessorConfig:
    Default + Serialize + DeserializeOwned + schemars::JsonSchema + Send + 'static
{
    /// Checks values serde cannot (ranges, consistency). Runs before a processor is created.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// A config value that deserialized but makes no sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field path, e.g. `width` or `frequencies[1]`.
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The error a processor type reports for this problem.
    pub fn for_type(self, processor_type: &str) -> crate::core::StreamError {
        crate::core::StreamError::InvalidConfig {
            processor_type: processor_type.to_string(),
            field: Some(self.field),
            message: self.message,
        }
    }

    /// Checks `lo <= value <= hi`, naming the field and the range when it is not.
    pub fn check_range<T: PartialOrd + std::fmt::Display>(
        field: &str,
        value: T,
        lo: T,
        hi: T,
    ) -> Result<(), ConfigError> {
        if value < lo || value > hi {
            Err(ConfigError::new(
                field,
                format!("must be between {lo} and {hi}, got {value}"),
            ))
        } else {
            Ok(())
        }
    }
}

/// The config of a processor that has nothing to configure: only `{}` (or nothing) is accepted.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

impl ProcessorConfig for NoConfig {}
