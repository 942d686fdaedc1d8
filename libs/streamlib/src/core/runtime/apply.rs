//! Applying a graph file to a runtime: every processor and connection, or nothing.

use super::stream_runtime::StreamRuntime;
use crate::core::error::{Result, StreamError};
use crate::core::graph::{GraphFile, InputLinkPortRef, OutputLinkPortRef, ProcessorUniqueId};
use crate::core::links::LinkOptions;
use crate::core::processors::PROCESSOR_REGISTRY;

impl StreamRuntime {
    /// Adds every processor and connection of a graph file, or nothing: if any entry fails,
    /// what was already added is removed again and the error names the entry.
    pub fn apply_graph(&mut self, graph: &GraphFile) -> Result<Vec<ProcessorUniqueId>> {
        let mut specs = Vec::with_capacity(graph.processors.len());
        for (i, p) in graph.processors.iter().enumerate() {
            let spec = PROCESSOR_REGISTRY
                .create(&p.processor_type, p.config.clone())
                .map_err(|e| graph_error(format!("processors[{i}] ('{}')", p.id), e))?;
            if graph.processors[..i].iter().any(|q| q.id == p.id) {
                return Err(StreamError::InvalidGraph(format!(
                    "processors[{i}]: id '{}' appears twice",
                    p.id
                )));
            }
            specs.push(spec.with_id(p.id.clone()));
        }
        let placed = graph.ui.iter().flat_map(|ui| &ui.positions);
        for (id, at) in placed.clone() {
            let place = format!("ui.positions.{id}");
            if !graph.processors.iter().any(|p| &p.id == id) {
                return Err(StreamError::InvalidGraph(format!(
                    "{place}: '{id}' is not a processor of the file"
                )));
            }
            if let Some(message) = at.problem() {
                return Err(StreamError::InvalidGraph(format!("{place}: {message}")));
            }
        }
        let mut connections = Vec::with_capacity(graph.connections.len());
        for (i, c) in graph.connections.iter().enumerate() {
            let from = OutputLinkPortRef::parse(&c.from)
                .map_err(|e| graph_error(format!("connections[{i}].from"), e))?;
            let to = InputLinkPortRef::parse(&c.to)
                .map_err(|e| graph_error(format!("connections[{i}].to"), e))?;
            let options = LinkOptions {
                capacity: c.capacity,
                overflow: c.overflow,
                read_mode: c.read_mode,
            };
            connections.push((from, to, options));
        }

        let mut added = Vec::new();
        let mut result = Ok(());
        for (i, spec) in specs.into_iter().enumerate() {
            match self.add_processor(spec) {
                Ok(id) => added.push(id),
                Err(e) => {
                    result = Err(graph_error(
                        format!("processors[{i}] ('{}')", graph.processors[i].id),
                        e,
                    ));
                    break;
                }
            }
        }
        let mut linked = Vec::new();
        if result.is_ok() {
            for (i, (from, to, options)) in connections.into_iter().enumerate() {
                match self.connect_with(from, to, options) {
                    Ok(link) => linked.push(link.id()),
                    Err(e) => {
                        result = Err(graph_error(format!("connections[{i}]"), e));
                        break;
                    }
                }
            }
        }
        if let Err(e) = result {
            for link in linked.iter().rev() {
                // Also links between processors that existed before the graph was applied.
                let _ = self.disconnect(link);
            }
            for id in added.iter().rev() {
                // Removing also removes the links made so far; the ids are ours, so this only
                // fails if the processor is already gone.
                let _ = self.remove_processor(id);
            }
            return Err(e);
        }
        // The drawing (checked above: every id is one just added, every position in range).
        let positions = placed.map(|(id, at)| (id.clone(), Some(*at))).collect();
        let _ = self.set_positions(positions);
        Ok(added)
    }
}

fn graph_error(context: String, e: StreamError) -> StreamError {
    match e {
        StreamError::InvalidGraph(m) => StreamError::InvalidGraph(format!("{context}: {m}")),
        other => StreamError::InvalidGraph(format!("{context}: {other}")),
    }
}
