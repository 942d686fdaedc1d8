//! The graph as the runtime holds it: processor and link entries, port resolution and link
//! validation, id generation, and the questions lifecycle code asks of it (links of a
//! processor, the links into one, stop order).
//!
//! It only stores and answers; starting and stopping threads is the runtime's job
//! (`core::runtime`), so every method here is cheap and never waits.

use std::sync::Arc;

use indexmap::IndexMap;

use super::file::UiPosition;
use super::ids::{id_prefix_for_type, random_suffix, validate_user_id};
use super::{InputLinkPortRef, Link, LinkUniqueId, OutputLinkPortRef, ProcessorUniqueId};
use crate::core::error::{Result, StreamError};
use crate::core::frames::FrameType;
use crate::core::links::{
    AnyInputPort, AnyLink, AnyOutputPort, LinkOptions, MemoryBudget, PortSet,
};
use crate::core::processors::Execution;
use crate::core::runtime::{ProcessorShared, Slot};

/// One processor in the graph.
pub(crate) struct ProcessorEntry {
    pub(crate) type_name: &'static str,
    /// The effective config (defaults filled in), as reports show it.
    pub(crate) config: serde_json::Value,
    pub(crate) execution: Execution,
    pub(crate) control_plane: bool,
    /// Handles on the instance's ports, kept here so links can change while the instance is on
    /// its thread.
    pub(crate) ports: PortSet,
    /// What the processor's thread, the runtime and reports share (state, counters, signal).
    pub(crate) shared: Arc<ProcessorShared>,
    /// Where the instance is: here, on its thread, or lost.
    pub(crate) slot: Slot,
}

impl ProcessorEntry {
    /// The entry of a new processor `id`: its instance here, idle, its state `Pending`.
    pub(crate) fn new(
        id: &ProcessorUniqueId,
        node: Box<dyn crate::core::processors::DynProcessor>,
    ) -> Self {
        let ports = node.ports();
        Self {
            type_name: node.type_name(),
            config: node.config_json(),
            execution: node.execution(),
            control_plane: node.control_plane(),
            ports,
            shared: Arc::new(ProcessorShared::new(id.clone())),
            slot: Slot::Idle(node),
        }
    }

    /// Whether the instance is on a thread (running, or ended after a failure and not yet
    /// joined).
    pub(crate) fn is_on_thread(&self) -> bool {
        matches!(self.slot, Slot::Running(_))
    }
}

/// One link in the graph.
pub(crate) struct LinkEntry {
    pub(crate) from: OutputLinkPortRef,
    pub(crate) to: InputLinkPortRef,
    pub(crate) frame_type: FrameType,
    pub(crate) link: Arc<dyn AnyLink>,
    /// When it was created (its counters count from then).
    pub(crate) added: std::time::Instant,
}

/// Processors and links in the order they were added, and the memory budget their links
/// share.
pub(crate) struct Graph {
    processors: IndexMap<ProcessorUniqueId, ProcessorEntry>,
    links: IndexMap<LinkUniqueId, LinkEntry>,
    /// Bytes queued in all links, and the most allowed.
    budget: Arc<MemoryBudget>,
    /// Most bytes queued in one link.
    max_link_bytes: u64,
    /// Counts every change to what the graph document shows (a processor added or removed, a
    /// link made or removed, a config changed, a processor drawn elsewhere):
    /// `GET /api/graph`'s `revision` and `ETag`.
    revision: u64,
    /// Where each processor is drawn (the document's `ui` section), for those placed.
    positions: std::collections::BTreeMap<ProcessorUniqueId, UiPosition>,
}

impl Graph {
    /// An empty graph whose links may queue `max_queued_bytes` together and `max_link_bytes`
    /// each.
    pub(crate) fn new(max_queued_bytes: u64, max_link_bytes: u64) -> Self {
        Self {
            processors: IndexMap::new(),
            links: IndexMap::new(),
            budget: Arc::new(MemoryBudget::new(max_queued_bytes)),
            max_link_bytes,
            revision: 0,
            positions: Default::default(),
        }
    }

    /// The most bytes one link may queue.
    pub(crate) fn max_link_bytes(&self) -> u64 {
        self.max_link_bytes
    }

    /// The graph's revision (see the field).
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// A processor's config changed: a new revision.
    pub(crate) fn note_config_change(&mut self) {
        self.revision += 1;
    }

    /// Bytes the links hold reserved in the runtime's memory budget now.
    pub(crate) fn reserved_bytes(&self) -> u64 {
        self.budget.queued()
    }

    /// Every processor, in the order added.
    pub(crate) fn processors(
        &self,
    ) -> impl DoubleEndedIterator<Item = (&ProcessorUniqueId, &ProcessorEntry)> {
        self.processors.iter()
    }

    /// Every link, in the order created.
    pub(crate) fn links(&self) -> impl Iterator<Item = (&LinkUniqueId, &LinkEntry)> {
        self.links.iter()
    }

    /// Number of processors.
    pub(crate) fn processor_count(&self) -> usize {
        self.processors.len()
    }

    /// The processor `id`, or `ProcessorNotFound`.
    pub(crate) fn processor(&self, id: &ProcessorUniqueId) -> Result<&ProcessorEntry> {
        self.processors
            .get(id)
            .ok_or_else(|| StreamError::ProcessorNotFound(id.to_string()))
    }

    /// The processor `id`, to change where its instance is.
    pub(crate) fn processor_mut(&mut self, id: &ProcessorUniqueId) -> Option<&mut ProcessorEntry> {
        self.processors.get_mut(id)
    }

    /// The id a new processor gets: the caller's (checked and free) or a generated one
    /// (`<type prefix>-<suffix>`).
    pub(crate) fn new_processor_id(
        &self,
        requested: Option<String>,
        type_name: &str,
    ) -> Result<ProcessorUniqueId> {
        if let Some(id) = requested {
            validate_user_id(&id)?;
            let id = ProcessorUniqueId::new(id);
            if self.processors.contains_key(&id) {
                return Err(StreamError::DuplicateProcessorId(id.to_string()));
            }
            return Ok(id);
        }
        let prefix = id_prefix_for_type(type_name);
        loop {
            let id = ProcessorUniqueId::new(format!("{prefix}-{}", random_suffix()));
            if !self.processors.contains_key(&id) {
                return Ok(id);
            }
        }
    }

    /// A fresh link id.
    pub(crate) fn new_link_id(&self) -> LinkUniqueId {
        loop {
            let id = LinkUniqueId::new(format!("link-{}", random_suffix()));
            if !self.links.contains_key(&id) {
                return id;
            }
        }
    }

    /// Adds a processor under an id from [`Graph::new_processor_id`].
    pub(crate) fn insert_processor(&mut self, id: ProcessorUniqueId, entry: ProcessorEntry) {
        self.processors.insert(id, entry);
        self.revision += 1;
    }

    /// Takes a processor out (its links must be gone first, see [`Graph::links_of`]).
    pub(crate) fn remove_processor(&mut self, id: &ProcessorUniqueId) -> Option<ProcessorEntry> {
        let removed = self.processors.shift_remove(id);
        self.revision += u64::from(removed.is_some());
        self.positions.remove(id);
        removed
    }

    /// Where each placed processor is drawn.
    pub(crate) fn positions(&self) -> &std::collections::BTreeMap<ProcessorUniqueId, UiPosition> {
        &self.positions
    }

    /// Places and unplaces processors (`None` unplaces): a new revision if anything moved.
    /// Whether anything did. The caller has checked the ids and positions.
    pub(crate) fn set_positions(
        &mut self,
        changes: impl IntoIterator<Item = (ProcessorUniqueId, Option<UiPosition>)>,
    ) -> bool {
        let mut moved = false;
        for (id, at) in changes {
            let before = match at {
                Some(at) => self.positions.insert(id, at),
                None => self.positions.remove(&id),
            };
            moved |= before != at;
        }
        self.revision += u64::from(moved);
        moved
    }

    /// The output port `port` names, with the processor that owns it.
    fn output(
        &self,
        port: &OutputLinkPortRef,
    ) -> Result<(&ProcessorEntry, Arc<dyn AnyOutputPort>)> {
        let entry = self.processor(&port.processor)?;
        let found = entry.ports.output(&port.port).cloned().ok_or_else(|| {
            port_not_found(
                &port.processor,
                &port.port,
                "output",
                entry.ports.outputs.iter().map(|p| p.name()),
            )
        })?;
        Ok((entry, found))
    }

    /// The input port `port` names, with the processor that owns it.
    fn input(&self, port: &InputLinkPortRef) -> Result<(&ProcessorEntry, Arc<dyn AnyInputPort>)> {
        let entry = self.processor(&port.processor)?;
        let found = entry.ports.input(&port.port).cloned().ok_or_else(|| {
            port_not_found(
                &port.processor,
                &port.port,
                "input",
                entry.ports.inputs.iter().map(|p| p.name()),
            )
        })?;
        Ok((entry, found))
    }

    /// Links output `from` to input `to`, live at once (the next frame written reaches it).
    /// Refuses, changing nothing, a missing processor or port, a link from a processor to
    /// itself, ports of different frame types, an input that already has a link, and options
    /// out of range; the refusals of a link name the links that would work (`targets.rs`).
    /// Longer cycles (A → B → A) are allowed: a processor in between decides what flows back.
    pub(crate) fn connect(
        &mut self,
        from: OutputLinkPortRef,
        to: InputLinkPortRef,
        options: LinkOptions,
    ) -> Result<Link> {
        let (_, output) = self.output(&from)?;
        let (target, input) = self.input(&to)?;
        let frame_type = output.frame_type();
        if from.processor == to.processor {
            return Err(StreamError::SelfLink {
                from: from.to_string(),
                to: to.to_string(),
                alternatives: self.alternatives_for_output(&from),
            });
        }
        if frame_type != input.frame_type() {
            return Err(StreamError::PortTypeMismatch {
                from: from.to_string(),
                to: to.to_string(),
                from_type: frame_type,
                to_type: input.frame_type(),
                alternatives: self.alternatives_for_output(&from)
                    + &self.alternatives_for_input(&to),
            });
        }
        if let Some(existing) = input.connected_link() {
            return Err(StreamError::InputAlreadyConnected {
                input: to.to_string(),
                link: existing.to_string(),
                alternatives: self.alternatives_for_output(&from),
            });
        }
        let (default_capacity, default_read_mode) = output.defaults();
        let resolved = options.resolve(default_capacity, default_read_mode, self.max_link_bytes)?;
        let reader_signal = target.shared.signal.clone();
        // A reader whose stream has ended reads no more: nothing is queued for it.
        let reader_running = reader_signal.is_active() && !target.shared.is_ended();

        let id = self.new_link_id();
        let link = output.link_to(
            id.clone(),
            input,
            reader_signal.clone(),
            &resolved,
            self.budget.clone(),
            reader_running,
        )?;
        // The reader's thread may have ended between the check and the attach; it clears the
        // flag before it looks at its links, so one of the two sees the other (SeqCst).
        if reader_running && !reader_signal.is_active() {
            link.set_reader_running(false);
        }
        self.links.insert(
            id.clone(),
            LinkEntry {
                from: from.clone(),
                to: to.clone(),
                frame_type,
                link,
                added: std::time::Instant::now(),
            },
        );
        self.revision += 1;
        Ok(Link {
            id,
            from,
            to,
            frame_type,
        })
    }

    /// Takes a link out, or `LinkNotFound`.
    pub(crate) fn remove_link(&mut self, id: &LinkUniqueId) -> Result<LinkEntry> {
        let removed = self
            .links
            .shift_remove(id)
            .ok_or_else(|| StreamError::LinkNotFound(id.to_string()))?;
        self.revision += 1;
        Ok(removed)
    }

    /// The link `id`, if there is one.
    pub(crate) fn link(&self, id: &LinkUniqueId) -> Option<&LinkEntry> {
        self.links.get(id)
    }

    /// Links that start or end at processor `id`.
    pub(crate) fn links_of(&self, id: &ProcessorUniqueId) -> Vec<LinkUniqueId> {
        self.links
            .iter()
            .filter(|(_, l)| l.from.processor == *id || l.to.processor == *id)
            .map(|(link_id, _)| link_id.clone())
            .collect()
    }

    /// The links that feed processor `id`.
    pub(crate) fn links_into(&self, id: &ProcessorUniqueId) -> Vec<Arc<dyn AnyLink>> {
        self.links
            .values()
            .filter(|l| l.to.processor == *id)
            .map(|l| l.link.clone())
            .collect()
    }

    /// The links leaving output `port` of processor `id`.
    pub(crate) fn links_from(&self, id: &ProcessorUniqueId, port: &str) -> Vec<LinkUniqueId> {
        self.links
            .iter()
            .filter(|(_, l)| l.from.processor == *id && l.from.port == port)
            .map(|(link_id, _)| link_id.clone())
            .collect()
    }

    /// Processors whose thread ended by itself (a failure while running) and was not joined.
    pub(crate) fn finished_workers(&self) -> Vec<ProcessorUniqueId> {
        self.processors
            .iter()
            .filter(|(_, e)| matches!(&e.slot, Slot::Running(w) if w.is_finished()))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Processors on a thread, the last added first (the order shutdown stops them in).
    pub(crate) fn on_thread_newest_first(&self) -> Vec<ProcessorUniqueId> {
        self.processors
            .iter()
            .rev()
            .filter(|(_, e)| e.is_on_thread())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Running non-control-plane processors, upstream before downstream (cycles last), so each
    /// is stopped only after everything that feeds it.
    pub(crate) fn stop_order(&self) -> Vec<ProcessorUniqueId> {
        let mut indegree: IndexMap<&ProcessorUniqueId, usize> = self
            .processors
            .iter()
            .filter(|(_, e)| !e.control_plane && e.is_on_thread())
            .map(|(id, _)| (id, 0))
            .collect();
        for l in self.links.values() {
            if indegree.contains_key(&l.from.processor) {
                if let Some(d) = indegree.get_mut(&l.to.processor) {
                    *d += 1;
                }
            }
        }
        let mut order = Vec::with_capacity(indegree.len());
        let mut ready: Vec<&ProcessorUniqueId> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(id, _)| *id)
            .collect();
        while let Some(id) = ready.pop() {
            order.push(id.clone());
            indegree.shift_remove(id);
            for l in self.links.values().filter(|l| l.from.processor == *id) {
                if let Some(d) = indegree.get_mut(&l.to.processor) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(&l.to.processor);
                    }
                }
            }
        }
        order.extend(indegree.keys().map(|id| (*id).clone()));
        order
    }
}

impl Graph {
    /// Starts watching the frames that pass processor `id`'s port `port`: an output's own, or
    /// for an input what the output feeding its link writes (see `links::PortWatch`).
    pub(crate) fn watch_port(
        &self,
        id: &ProcessorUniqueId,
        port: &str,
    ) -> Result<crate::core::links::PortWatch> {
        let entry = self.processor(id)?;
        if let Some(output) = entry.ports.output(port) {
            return Ok(output.watch());
        }
        let Some(input) = entry.ports.input(port) else {
            let names = entry.ports.inputs.iter().map(|p| p.name());
            let names = names.chain(entry.ports.outputs.iter().map(|p| p.name()));
            return Err(port_not_found(id, port, "input or output", names));
        };
        let from = input
            .connected_link()
            .and_then(|link| self.link(&link))
            .map(|link| link.from.clone())
            .ok_or_else(|| {
                StreamError::Conflict(format!(
                    "input port '{id}.{port}' is not connected: no frames pass it (connect it, or look at an output)"
                ))
            })?;
        let writer = self.processor(&from.processor)?;
        writer
            .ports
            .output(&from.port)
            .map(|output| output.watch())
            .ok_or_else(|| {
                port_not_found(
                    &from.processor,
                    &from.port,
                    "output",
                    writer.ports.outputs.iter().map(|p| p.name()),
                )
            })
    }
}

/// The one `PortNotFound` error: names the port asked for and lists those the processor has.
fn port_not_found<'a>(
    processor: &ProcessorUniqueId,
    port: &str,
    direction: &'static str,
    available: impl Iterator<Item = &'a str>,
) -> StreamError {
    StreamError::PortNotFound {
        processor: processor.to_string(),
        port: port.to_string(),
        direction,
        available: available.map(str::to_string).collect(),
    }
}

/// Refuses a processor type whose instance has two ports of one name in one direction (links
/// address ports by name).
pub(crate) fn check_unique_port_names(type_name: &str, ports: &PortSet) -> Result<()> {
    let inputs: Vec<&str> = ports.inputs.iter().map(|p| p.name()).collect();
    let outputs: Vec<&str> = ports.outputs.iter().map(|p| p.name()).collect();
    for (direction, names) in [("input", inputs), ("output", outputs)] {
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(StreamError::InvalidConfig {
                    processor_type: type_name.to_string(),
                    field: None,
                    message: format!("two {direction} ports are named '{name}'"),
                });
            }
        }
    }
    Ok(())
}
