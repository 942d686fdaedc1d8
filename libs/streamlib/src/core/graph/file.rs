//! The graph file: a whole pipeline as JSON, loaded by `streamlib run` and `serve --graph`.
//!
//! ```json
//! {"processors":[{"id":"src","type":"TestPatternProcessor","config":{"width":320}}],
//!  "connections":[{"from":"src.video","to":"sink.video"}]}
//! ```

use std::collections::BTreeMap;
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
    #[serde(default, deserialize_with = "objects")]
    pub processors: Vec<GraphProcessor>,
    /// Links from `processor.port` outputs to `processor.port` inputs.
    #[serde(default, deserialize_with = "objects")]
    pub connections: Vec<GraphConnection>,
    /// How the graph is drawn (the dashboard's node positions). Not part of what runs: a
    /// document without it leaves the positions as they are; with it (even empty), they become
    /// exactly its. An export has it when something is placed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_object"
    )]
    pub ui: Option<GraphUi>,
}

/// The `ui` section of a [`GraphFile`]: where each processor is drawn.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphUi {
    /// Position of each placed processor, by id (processors not named are laid out
    /// automatically).
    #[serde(default, deserialize_with = "object_values")]
    pub positions: BTreeMap<String, UiPosition>,
}

impl GraphUi {
    /// Whether it places nothing.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// Where a processor is drawn: its top-left corner, in the dashboard's graph coordinates.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// A `T` read only from an object: serde's derived structs would also take an array of the
/// values in order, which no document means. Paths of errors inside are kept.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Only<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(std::marker::PhantomData))
            .map(Object)
    }
}

/// A list of objects (see [`Object`]).
fn objects<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Vec::<Object<T>>::deserialize(d)?
        .into_iter()
        .map(|o| o.0)
        .collect())
}

/// An object, or null/absent (see [`Object`]).
fn optional_object<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
}

/// A map whose values are objects (see [`Object`]).
fn object_values<'de, D, T>(d: D) -> std::result::Result<BTreeMap<String, T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(BTreeMap::<String, Object<T>>::deserialize(d)?
        .into_iter()
        .map(|(k, o)| (k, o.0))
        .collect())
}

/// A map whose values are objects or null (see [`Object`]): `PATCH /api/graph/ui`'s
/// positions.
#[cfg(feature = "api-server")]
pub(crate) fn optional_object_values<'de, D, T>(
    d: D,
) -> std::result::Result<BTreeMap<String, Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(BTreeMap::<String, Option<Object<T>>>::deserialize(d)?
        .into_iter()
        .map(|(k, o)| (k, o.map(|o| o.0)))
        .collect())
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
