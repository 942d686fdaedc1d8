//! Which ports a port could be linked to, and why the others cannot: for clients that help a
//! person connect (`GET /api/processors/{id}/ports/{port}/targets`) and for refused connects,
//! whose messages name the valid alternatives. The rules are [`Graph::connect`]'s.

use serde::{Deserialize, Serialize};

use super::store::Graph;
use super::{InputLinkPortRef, OutputLinkPortRef, ProcessorUniqueId};
use crate::core::error::{Result, StreamError};
use crate::core::frames::FrameType;
use crate::core::links::{AnyInputPort, AnyOutputPort};

/// Most alternatives an error message names.
const MAX_NAMED: usize = 8;

/// One possible link from or to the port asked about.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PortTarget {
    /// The output end, `processor.port`.
    pub from: String,
    /// The input end, `processor.port`.
    pub to: String,
    /// Frame type of the other port.
    pub frame_type: FrameType,
    /// Whether `POST /api/connections` with these ends would succeed now.
    pub connectable: bool,
    /// Why not, when it would not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The entry for linking output `from` (the port `output`) to input `to` (the port `input`):
/// connectable, or why not. `frame_type` shows the type of the port on the other side.
fn target(
    graph: &Graph,
    (from, output): (&OutputLinkPortRef, &dyn AnyOutputPort),
    (to, input): (&InputLinkPortRef, &dyn AnyInputPort),
    frame_type: FrameType,
) -> PortTarget {
    let (from_type, to_type) = (output.frame_type(), input.frame_type());
    let reason = if from.processor == to.processor {
        Some("a processor cannot be linked to itself".to_string())
    } else if from_type != to_type {
        Some(format!("frame types differ: {from_type} to {to_type}"))
    } else {
        input.connected_link().map(|link| {
            let source = graph
                .link(&link)
                .map(|l| format!(" from {}", l.from))
                .unwrap_or_default();
            format!("the input is already connected by link '{link}'{source}")
        })
    };
    PortTarget {
        from: from.to_string(),
        to: to.to_string(),
        frame_type,
        connectable: reason.is_none(),
        reason,
    }
}

impl Graph {
    /// Every port in the graph that `processor.port` could be linked with (its output to their
    /// inputs, or their outputs to its input; both when it has an input and an output of that
    /// name), each with whether the link would be made now and, if not, why.
    pub(crate) fn port_targets(
        &self,
        processor: &ProcessorUniqueId,
        port: &str,
    ) -> Result<Vec<PortTarget>> {
        let entry = self.processor(processor)?;
        let output = entry.ports.output(port).cloned();
        let input = entry.ports.input(port).cloned();
        if output.is_none() && input.is_none() {
            return Err(StreamError::PortNotFound {
                processor: processor.to_string(),
                port: port.to_string(),
                direction: "input or output",
                available: {
                    // Inputs, then outputs, each name once (a port may be both).
                    let mut names: Vec<String> = Vec::new();
                    let all = entry.ports.inputs.iter().map(|p| p.name());
                    for name in all.chain(entry.ports.outputs.iter().map(|p| p.name())) {
                        if !names.iter().any(|n| n == name) {
                            names.push(name.to_string());
                        }
                    }
                    names
                },
            });
        }
        let mut targets = Vec::new();
        if let Some(output) = &output {
            let from = OutputLinkPortRef::new(processor.clone(), port);
            for (id, other) in self.processors() {
                for input in &other.ports.inputs {
                    let to = InputLinkPortRef::new(id.clone(), input.name());
                    let shown = input.frame_type();
                    targets.push(target(self, (&from, &**output), (&to, &**input), shown));
                }
            }
        }
        if let Some(input) = &input {
            let to = InputLinkPortRef::new(processor.clone(), port);
            for (id, other) in self.processors() {
                for theirs in &other.ports.outputs {
                    // Its own output of this name to this input is listed above already.
                    if output.is_some() && id == processor && theirs.name() == port {
                        continue;
                    }
                    let from = OutputLinkPortRef::new(id.clone(), theirs.name());
                    let shown = theirs.frame_type();
                    targets.push(target(self, (&from, &**theirs), (&to, &**input), shown));
                }
            }
        }
        Ok(targets)
    }

    /// For a refused connect from `from`: the inputs it could be linked to now, as
    /// "; it can be linked to: a.video, b.video", or "" when there are none.
    pub(crate) fn alternatives_for_output(&self, from: &OutputLinkPortRef) -> String {
        let named = self
            .port_targets(&from.processor, &from.port)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.connectable && t.from == from.to_string())
            .map(|t| t.to);
        name_alternatives(&format!("{from} can be linked to"), named)
    }

    /// For a refused connect to `to`: the outputs that could feed it now, or "".
    pub(crate) fn alternatives_for_input(&self, to: &InputLinkPortRef) -> String {
        let named = self
            .port_targets(&to.processor, &to.port)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.connectable && t.to == to.to_string())
            .map(|t| t.from);
        name_alternatives(&format!("{to} can take"), named)
    }
}

/// "; {what}: a, b, c (and 3 more)", or "" for none.
fn name_alternatives(what: &str, names: impl Iterator<Item = String>) -> String {
    let names: Vec<String> = names.collect();
    if names.is_empty() {
        return String::new();
    }
    let shown = names[..names.len().min(MAX_NAMED)].join(", ");
    let more = names.len().saturating_sub(MAX_NAMED);
    if more > 0 {
        format!("; {what}: {shown} (and {more} more)")
    } else {
        format!("; {what}: {shown}")
    }
}
