//! The graph file: a whole pipeline as JSON, loaded by `streamlib run` and `serve --graph`.
//!
//! ```json
//! {"processors":[{"id":"src","type":"TestPatternProcessor","config":{"width":320}}],
//!  "connections":[{"from":"src.video","to":"sink.video"}]}
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::error::{Result, StreamError};
use crate::core::links::{OverflowPolicy, ReadMode};

/// A pipeline description: processors by type and config, and the links between their ports.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphFile {
    /// The graph's revision when it was exported (`GET /api/graph`). On `PUT /api/graph` it is
    /// a precondition, like `If-Match`: the apply is refused (412) if the graph has changed
    /// since. `streamlib run` ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The processors, each with an id unique in the file.
    #[serde(default)]
    pub processors: Vec<GraphProcessor>,
    /// Links from `processor.port` outputs to `processor.port` inputs.
    #[serde(default)]
    pub connections: Vec<GraphConnection>,
    /// How the graph is drawn (the dashboard's node positions). Not part of what runs: a
    /// document without it leaves the positions as they are; with it (even empty), they become
    /// exactly its. An export has it when something is placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<GraphUi>,
}

/// The `ui` section of a [`GraphFile`]: where each processor is drawn.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphUi {
    /// Position of each placed processor, by id (processors not named are laid out
    /// automatically).
    #[serde(default)]
    pub positions: std::collections::BTreeMap<String, UiPosition>,
}

impl GraphUi {
    /// Whether it places nothing.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// Where a processor is drawn: its top-left corner, in the dashboard's graph coordinates.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UiPosition {
    /// Horizontal, growing to the right.
    #[cfg_attr(feature = "api-server", schema(minimum = -1.0e7, maximum = 1.0e7))]
    #[schemars(range(min = -1.0e7, max = 1.0e7))]
    pub x: f64,
    /// Vertical, growing downwards.
    #[cfg_attr(feature = "api-server", schema(minimum = -1.0e7, maximum = 1.0e7))]
    #[schemars(range(min = -1.0e7, max = 1.0e7))]
    pub y: f64,
}

/// An object's fields, refusing anything but an object (serde's derived structs would also
/// take an array of the values in order, which no document means).
fn object_of<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    what: &str,
) -> std::result::Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(serde::de::Error::custom(format!(
            "{what} must be an object, not {}",
            json_kind(&other)
        ))),
    }
}

/// `an array`, `a number`... for errors.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl<'de> Deserialize<'de> for GraphUi {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            positions: serde_json::Map<String, serde_json::Value>,
        }
        let fields: Fields =
            serde_json::from_value(object_of(d, "ui")?.into()).map_err(serde::de::Error::custom)?;
        let mut positions = std::collections::BTreeMap::new();
        for (id, at) in fields.positions {
            let at = UiPosition::deserialize(at)
                .map_err(|e| serde::de::Error::custom(format!("positions.{id}: {e}")))?;
            positions.insert(id, at);
        }
        Ok(GraphUi { positions })
    }
}

impl<'de> Deserialize<'de> for UiPosition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            x: f64,
            y: f64,
        }
        let Fields { x, y } = serde_json::from_value(object_of(d, "a position")?.into())
            .map_err(serde::de::Error::custom)?;
        Ok(UiPosition { x, y })
    }
}

impl UiPosition {
    /// The largest coordinate accepted either way: far beyond any drawing, small enough that
    /// every client can handle it.
    pub const MAX_ABS: f64 = 1.0e7;

    /// Why this position is refused, if it is (not finite, or beyond [`UiPosition::MAX_ABS`]).
    pub fn problem(&self) -> Option<String> {
        let ok = |v: f64| v.is_finite() && v.abs() <= Self::MAX_ABS;
        (!ok(self.x) || !ok(self.y)).then(|| {
            format!(
                "a position's x and y must be finite numbers between -{max} and {max}",
                max = Self::MAX_ABS
            )
        })
    }
}

/// One processor of a [`GraphFile`].
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphProcessor {
    /// Id used by `connections` and by the API (`src`, `camera`, ...).
    pub id: String,
    /// Registered type name, e.g. `TestPatternProcessor`.
    #[serde(rename = "type")]
    pub processor_type: String,
    /// The type's config; missing or `{}` means all defaults.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// One link of a [`GraphFile`].
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphConnection {
    /// Output port, `processor.port`.
    pub from: String,
    /// Input port, `processor.port`.
    pub to: String,
    /// Ring capacity in frames; the frame type's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
    /// What the producer does when the ring is full; `drop_oldest` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<OverflowPolicy>,
    /// How the consumer reads; the frame type's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_mode: Option<ReadMode>,
}

impl GraphFile {
    /// Parses a graph from JSON text, naming the offending field on error.
    pub fn from_json(text: &str) -> Result<Self> {
        // serde would also build one from an array (`[]`, an empty graph): refused.
        if !text.trim_start().starts_with('{') {
            return Err(StreamError::InvalidGraph(
                "a graph is a JSON object: {\"processors\": [...], \"connections\": [...]}"
                    .to_string(),
            ));
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            StreamError::InvalidGraph(if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            })
        })
    }

    /// Reads and parses a graph file: TOML if its name ends in `.toml`, JSON otherwise.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            StreamError::io(format!("cannot read graph file {}", path.display()), e)
        })?;
        Self::parse(&text, super::GraphFormat::of(path)).map_err(|e| match e {
            StreamError::InvalidGraph(m) => {
                StreamError::InvalidGraph(format!("{}: {m}", path.display()))
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let g = GraphFile::from_json(
            r#"{"processors":[{"id":"src","type":"TestPatternProcessor","config":{"width":320}}],
                "connections":[{"from":"src.video","to":"sink.video"}]}"#,
        )
        .unwrap();
        assert_eq!(g.processors[0].processor_type, "TestPatternProcessor");
        assert_eq!(g.connections[0].to, "sink.video");
    }

    #[test]
    fn names_the_bad_field() {
        let err = GraphFile::from_json(r#"{"processors":[{"id":"a","typ":"X"}]}"#).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("processors[0]"), "{msg}");
        assert!(msg.contains("typ"), "{msg}");
    }
}
