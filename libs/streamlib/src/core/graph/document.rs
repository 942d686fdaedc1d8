//! The graph as a document: the export `GET /api/graph` returns, and the plan that makes the
//! running graph match a desired document (`PUT /api/graph`).
//!
//! The document is a [`GraphFile`] (the format `streamlib run` reads) with the graph's
//! `revision`. Control-plane processors (the API server) run whatever the graph is: they are
//! not in an export, a document cannot name them, and their links are left alone.
//!
//! A plan matches processors by id and links by their two ends. It only touches what differs:
//! a processor whose type or config is unchanged, and a link whose ends and (resolved) options
//! are unchanged, are not in it, and frames keep flowing through them. Every problem of a
//! document is found before anything is done, each named by its place in the document
//! (`processors[2].config.width`), so a refused document is refused whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::file::{GraphConnection, GraphFile, GraphProcessor, GraphUi, UiPosition};
use super::ids::validate_user_id;
use super::store::Graph;
use super::{InputLinkPortRef, LinkUniqueId, OutputLinkPortRef, ProcessorUniqueId};
use crate::core::error::StreamError;
use crate::core::frames::FrameType;
use crate::core::links::{AnyOutputPort, LinkOptions, PortSet, ResolvedLinkOptions};
use crate::core::processors::{PROCESSOR_REGISTRY, ProcessorSpec};
use crate::core::runtime::{ConfigApplied, ConfigUpdate, Slot, changed_fields};

/// What a plan does to one processor or link.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanActionKind {
    /// A processor of the document that the graph does not have: created (and set up).
    Add,
    /// A processor the document does not have: removed, with its links.
    Remove,
    /// Live fields changed on a running processor: it takes them in place.
    Reconfigure,
    /// Fields that are not live changed on a running processor: torn down and set up again
    /// with the new config, its links kept.
    Restart,
    /// The config changed on a processor that is not running: stored for its next setup.
    Store,
    /// A link of the document that the graph does not have (or whose options changed).
    Connect,
    /// A link the document does not have (or whose options changed, or whose processor goes).
    Disconnect,
    /// The document's `ui` section draws processors elsewhere (`changed` names them); nothing
    /// that runs is touched.
    Layout,
}

/// One step of a plan, with why.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanAction {
    /// What is done.
    pub action: PlanActionKind,
    /// The processor id (processor actions) or `from -> to` (link actions).
    pub target: String,
    /// Why, in words.
    pub reason: String,
    /// The config fields that changed (reconfigure, restart, store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// The answer to `PUT /api/graph`: the plan, as executed (or, for a dry run, as it would be).
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GraphApplied {
    /// Nothing was changed: this is what the document would do.
    pub dry_run: bool,
    /// The graph's revision after the apply (before it, for a dry run).
    pub revision: u64,
    /// The actions in the order they are executed; empty when the graph already matches.
    pub actions: Vec<PlanAction>,
}

/// One thing wrong with a document, at its place.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GraphProblem {
    /// Where in the document, e.g. `processors[2].config.width` or `connections[0].to`.
    pub place: String,
    /// What is wrong there.
    pub message: String,
}

/// A plan, with what executing it needs.
pub(crate) struct Plan {
    /// The public view, in execution order.
    pub(crate) actions: Vec<PlanAction>,
    /// New processors with their ids (the instances made while checking the document).
    pub(crate) adds: Vec<(ProcessorUniqueId, ProcessorSpec)>,
    pub(crate) removes: Vec<ProcessorUniqueId>,
    /// Live changes and stores (the runtime decides which when it applies them).
    pub(crate) reconfigures: Vec<ConfigUpdate>,
    /// Restarts, each with the config in force now (to go back to on a rollback).
    pub(crate) restarts: Vec<(ConfigUpdate, serde_json::Value)>,
    pub(crate) disconnects: Vec<LinkUniqueId>,
    pub(crate) connects: Vec<(OutputLinkPortRef, InputLinkPortRef, LinkOptions)>,
    /// Each processor's index in the document, to name it in errors.
    pub(crate) places: BTreeMap<ProcessorUniqueId, usize>,
    /// The positions to set (`None`: unplaced) when the document's `ui` section moves any.
    pub(crate) layout: Vec<(ProcessorUniqueId, Option<UiPosition>)>,
}

impl Plan {
    /// `processors[i] ('id')` for a processor of the document.
    pub(crate) fn place_of(&self, id: &ProcessorUniqueId) -> String {
        match self.places.get(id) {
            Some(i) => format!("processors[{i}] ('{id}')"),
            None => format!("processor '{id}'"),
        }
    }
}

/// The most problems a refused document lists (then "and N more").
pub(crate) const MAX_PROBLEMS: usize = 100;

/// What the graph would hold for one processor after the plan: its ports.
struct FinalPorts<'a> {
    ports: std::borrow::Cow<'a, PortSet>,
    /// Its links stay only if it is kept (not replaced or new).
    kept: bool,
}

impl Graph {
    /// The running graph as a document (module docs): processors in the order added, with
    /// their effective configs; links with their options resolved.
    pub(crate) fn document(&self) -> GraphFile {
        let processors = self
            .processors()
            .filter(|(_, e)| !e.control_plane)
            .map(|(id, e)| GraphProcessor {
                id: id.to_string(),
                processor_type: e.type_name.to_string(),
                config: e.config.clone(),
            })
            .collect();
        let connections = self
            .links()
            .filter(|(_, l)| !self.touches_control_plane(&l.from.processor, &l.to.processor))
            .map(|(_, l)| {
                let options = l.link.options();
                GraphConnection {
                    from: l.from.to_string(),
                    to: l.to.to_string(),
                    capacity: Some(options.capacity),
                    overflow: Some(options.overflow),
                    read_mode: Some(options.read_mode),
                }
            })
            .collect();
        let positions: BTreeMap<String, UiPosition> = self
            .positions()
            .iter()
            .filter(|(id, _)| !self.is_control_plane(id))
            .map(|(id, at)| (id.to_string(), *at))
            .collect();
        GraphFile {
            revision: Some(self.revision()),
            processors,
            connections,
            ui: (!positions.is_empty()).then_some(GraphUi { positions }),
        }
    }

    /// The document as a graph file shows it best: like [`Graph::document`], without the
    /// revision, without config fields at their default, and without link options at the
    /// frame type's default. Applying it makes the same graph.
    pub(crate) fn document_minimal(&self) -> GraphFile {
        let mut doc = self.document();
        doc.revision = None;
        let mut defaults: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for p in &mut doc.processors {
            let default = defaults.entry(p.processor_type.clone()).or_insert_with(|| {
                PROCESSOR_REGISTRY
                    .check_config(&p.processor_type, serde_json::Value::Null)
                    .unwrap_or_default()
            });
            if let (Some(config), Some(default)) = (p.config.as_object_mut(), default.as_object()) {
                config.retain(|k, v| default.get(k) != Some(v));
            }
        }
        let outputs: Vec<Option<(usize, crate::core::links::ReadMode)>> = self
            .links()
            .filter(|(_, l)| !self.touches_control_plane(&l.from.processor, &l.to.processor))
            .map(|(_, l)| {
                self.processor(&l.from.processor)
                    .ok()
                    .and_then(|e| e.ports.output(&l.from.port).map(|o| o.defaults()))
            })
            .collect();
        for (c, defaults) in doc.connections.iter_mut().zip(outputs) {
            let Some((capacity, read_mode)) = defaults else {
                continue;
            };
            let overflow = c.overflow.unwrap_or_default();
            if c.capacity == Some(capacity) {
                c.capacity = None;
            }
            if c.overflow == Some(crate::core::links::OverflowPolicy::default()) {
                c.overflow = None;
            }
            // The read mode's default follows the overflow policy (as `LinkOptions::resolve`).
            let default_read = match overflow {
                crate::core::links::OverflowPolicy::Backpressure => {
                    crate::core::links::ReadMode::InOrder
                }
                crate::core::links::OverflowPolicy::DropOldest => read_mode,
            };
            if c.read_mode == Some(default_read) {
                c.read_mode = None;
            }
        }
        doc
    }

    fn is_control_plane(&self, id: &ProcessorUniqueId) -> bool {
        self.processor(id).is_ok_and(|e| e.control_plane)
    }

    fn touches_control_plane(&self, a: &ProcessorUniqueId, b: &ProcessorUniqueId) -> bool {
        self.is_control_plane(a) || self.is_control_plane(b)
    }

    /// The plan that makes this graph match `doc`, or every problem of `doc`. `reserved` says
    /// whether an id is taken outside the graph (a create or removal in progress).
    pub(crate) fn plan(
        &self,
        doc: &GraphFile,
        reserved: impl Fn(&ProcessorUniqueId) -> bool,
    ) -> Result<Plan, Vec<GraphProblem>> {
        let mut problems = Vec::new();
        let mut more = 0usize;
        let mut problem = |place: String, message: String| {
            if problems.len() < MAX_PROBLEMS {
                problems.push(GraphProblem { place, message });
            } else {
                more += 1;
            }
        };
        let mut plan = Plan {
            actions: Vec::new(),
            adds: Vec::new(),
            removes: Vec::new(),
            reconfigures: Vec::new(),
            restarts: Vec::new(),
            disconnects: Vec::new(),
            connects: Vec::new(),
            places: BTreeMap::new(),
            layout: Vec::new(),
        };
        // Processors: by id.
        let mut wanted: std::collections::BTreeSet<ProcessorUniqueId> = Default::default();
        let mut finals: BTreeMap<ProcessorUniqueId, FinalPorts<'_>> = BTreeMap::new();
        let mut replaced: Vec<ProcessorUniqueId> = Vec::new();
        for (i, p) in doc.processors.iter().enumerate() {
            let place = format!("processors[{i}]");
            if let Err(e) = validate_user_id(&p.id) {
                problem(format!("{place}.id"), e.to_string());
                continue;
            }
            let id = ProcessorUniqueId::new(p.id.clone());
            if wanted.contains(&id) {
                problem(format!("{place}.id"), format!("id '{id}' appears twice"));
                continue;
            }
            wanted.insert(id.clone());
            plan.places.insert(id.clone(), i);
            if PROCESSOR_REGISTRY.is_control_plane(&p.processor_type) {
                problem(
                    format!("{place}.type"),
                    format!(
                        "{} is a control-plane processor: it runs whatever the graph is and is not part of a graph document",
                        p.processor_type
                    ),
                );
                continue;
            }
            if self.is_control_plane(&id) {
                problem(
                    format!("{place}.id"),
                    format!(
                        "'{id}' is a control-plane processor (it serves this API); it is not part of a graph document"
                    ),
                );
                continue;
            }
            let config = match PROCESSOR_REGISTRY.check_config(&p.processor_type, p.config.clone())
            {
                Ok(config) => config,
                Err(e) => {
                    let (at, message) = config_problem(&place, e);
                    problem(at, message);
                    continue;
                }
            };
            let existing = self.processor(&id).ok();
            match existing {
                // Its thread was abandoned and its instance lost: it comes back as a new one.
                Some(entry) if matches!(entry.slot, Slot::Lost) => {
                    replaced.push(id.clone());
                    plan.removes.push(id.clone());
                    plan.actions.push(PlanAction {
                        action: PlanActionKind::Remove,
                        target: id.to_string(),
                        reason: "its instance was lost (its thread was abandoned): removed and added again"
                            .to_string(),
                        changed: Vec::new(),
                    });
                }
                Some(entry) if entry.type_name == p.processor_type => {
                    let changed = changed_fields(&entry.config, &config);
                    if changed.is_empty() {
                        finals.insert(id.clone(), kept(&entry.ports));
                        continue;
                    }
                    let live = PROCESSOR_REGISTRY
                        .live_fields(entry.type_name)
                        .unwrap_or_default();
                    let all_live = changed.iter().all(|f| live.contains(f));
                    let update = ConfigUpdate {
                        processor_id: id.clone(),
                        config: config.clone(),
                        changed: changed.clone(),
                        applied: ConfigApplied::Unchanged,
                    };
                    let running = matches!(&entry.slot, Slot::Running(w) if !w.is_finished());
                    if all_live || !running {
                        let (action, reason) = if running {
                            (
                                PlanActionKind::Reconfigure,
                                "live fields changed: taken in place".to_string(),
                            )
                        } else {
                            (
                                PlanActionKind::Store,
                                "not running: the config is stored for its next setup".to_string(),
                            )
                        };
                        if !all_live && !same_ports(&entry.ports, &p.processor_type, &config) {
                            replaced.push(id.clone());
                        } else {
                            plan.actions.push(PlanAction {
                                action,
                                target: id.to_string(),
                                reason,
                                changed,
                            });
                            plan.reconfigures.push(update);
                            finals.insert(id.clone(), kept(&entry.ports));
                            continue;
                        }
                    } else if same_ports(&entry.ports, &p.processor_type, &config) {
                        let fixed: Vec<&str> = changed
                            .iter()
                            .filter(|f| !live.contains(f))
                            .map(String::as_str)
                            .collect();
                        plan.actions.push(PlanAction {
                            action: PlanActionKind::Restart,
                            target: id.to_string(),
                            reason: format!(
                                "fields that are not live changed: {}",
                                fixed.join(", ")
                            ),
                            changed,
                        });
                        plan.restarts.push((update, entry.config.clone()));
                        finals.insert(id.clone(), kept(&entry.ports));
                        continue;
                    } else {
                        replaced.push(id.clone());
                    }
                    // Its ports change: removed and added again.
                    plan.removes.push(id.clone());
                    plan.actions.push(PlanAction {
                        action: PlanActionKind::Remove,
                        target: id.to_string(),
                        reason: "its new config changes its ports: removed and added again"
                            .to_string(),
                        changed: Vec::new(),
                    });
                }
                Some(entry) => {
                    replaced.push(id.clone());
                    plan.removes.push(id.clone());
                    plan.actions.push(PlanAction {
                        action: PlanActionKind::Remove,
                        target: id.to_string(),
                        reason: format!(
                            "its type changes from {} to {}: removed and added again",
                            entry.type_name, p.processor_type
                        ),
                        changed: Vec::new(),
                    });
                }
                None if reserved(&id) => {
                    problem(
                        format!("{place}.id"),
                        format!("'{id}' is being created or removed; try again when that is done"),
                    );
                    continue;
                }
                None => {}
            }
            let spec = match PROCESSOR_REGISTRY.create(&p.processor_type, config) {
                Ok(spec) => spec,
                Err(e) => {
                    let (at, message) = config_problem(&place, e);
                    problem(at, message);
                    continue;
                }
            };
            if let Err(e) =
                super::store::check_unique_port_names(spec.type_name(), &spec.node.ports())
            {
                problem(place, e.to_string());
                continue;
            }
            finals.insert(
                id.clone(),
                FinalPorts {
                    ports: std::borrow::Cow::Owned(spec.node.ports()),
                    kept: false,
                },
            );
            plan.actions.push(PlanAction {
                action: PlanActionKind::Add,
                target: id.to_string(),
                reason: if replaced.contains(&id) {
                    "added again with its new type or ports".to_string()
                } else {
                    "new in the document".to_string()
                },
                changed: Vec::new(),
            });
            plan.adds.push((id, spec));
        }
        for (id, entry) in self.processors() {
            if !entry.control_plane && !wanted.contains(id) {
                plan.removes.push(id.clone());
                plan.actions.push(PlanAction {
                    action: PlanActionKind::Remove,
                    target: id.to_string(),
                    reason: "not in the document".to_string(),
                    changed: Vec::new(),
                });
            }
        }

        // Links: by their two ends.
        let mut desired: std::collections::HashMap<(String, String), ResolvedLinkOptions> =
            Default::default();
        let mut inputs_taken: BTreeMap<String, usize> = BTreeMap::new();
        for (j, c) in doc.connections.iter().enumerate() {
            let place = format!("connections[{j}]");
            let from = match OutputLinkPortRef::parse(&c.from) {
                Ok(r) => r,
                Err(e) => {
                    problem(format!("{place}.from"), e.to_string());
                    continue;
                }
            };
            let to = match InputLinkPortRef::parse(&c.to) {
                Ok(r) => r,
                Err(e) => {
                    problem(format!("{place}.to"), e.to_string());
                    continue;
                }
            };
            let output = match final_port(&finals, &wanted, &from.processor, &from.port, true) {
                Ok(Some(FoundPort::Output(port))) => Some(port),
                Ok(_) => None,
                Err(message) => {
                    problem(format!("{place}.from"), message);
                    continue;
                }
            };
            let input_type = match final_port(&finals, &wanted, &to.processor, &to.port, false) {
                Ok(Some(FoundPort::Input(frame_type))) => Some(frame_type),
                Ok(_) => None,
                Err(message) => {
                    problem(format!("{place}.to"), message);
                    continue;
                }
            };
            // An end whose processor has a problem of its own: nothing more to check here.
            let (Some(output), Some(input_type)) = (output, input_type) else {
                continue;
            };
            if from.processor == to.processor {
                problem(
                    place,
                    format!("{from} to {to}: a processor cannot be linked to itself"),
                );
                continue;
            }
            if output.frame_type() != input_type {
                problem(
                    place,
                    format!(
                        "{from} ({}) to {to} ({input_type}): a link joins ports of the same frame type",
                        output.frame_type()
                    ),
                );
                continue;
            }
            if let Some(first) = inputs_taken.insert(to.to_string(), j) {
                problem(
                    format!("{place}.to"),
                    format!(
                        "input {to} is already linked by connections[{first}]; an input takes one link"
                    ),
                );
                continue;
            }
            let options = LinkOptions {
                capacity: c.capacity,
                overflow: c.overflow,
                read_mode: c.read_mode,
            };
            let (capacity, read_mode) = output.defaults();
            match options.resolve(capacity, read_mode, self.max_link_bytes()) {
                Ok(resolved) => {
                    desired.insert((from.to_string(), to.to_string()), resolved);
                }
                Err(e) => problem(place, e.to_string()),
            }
            plan.connects.push((from, to, options));
        }
        // The drawing: every position names a processor of the document and is in range.
        for (id, at) in doc.ui.iter().flat_map(|ui| &ui.positions) {
            let place = format!("ui.positions.{id}");
            if !wanted.contains(&ProcessorUniqueId::new(id.clone())) {
                problem(place, format!("'{id}' is not a processor of the document"));
            } else if let Some(message) = at.problem() {
                problem(place, message);
            }
        }
        if more > 0 {
            problems.push(GraphProblem {
                place: String::new(),
                message: format!("and {more} more problem(s) not listed"),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        // Which links stay: same ends, same resolved options, both ends kept.
        let mut staying: std::collections::HashSet<(String, String)> = Default::default();
        let mut disconnect_actions = Vec::new();
        for (link_id, link) in self.links() {
            if self.touches_control_plane(&link.from.processor, &link.to.processor) {
                continue;
            }
            let (from, to) = (link.from.to_string(), link.to.to_string());
            let ends_kept = [&link.from.processor, &link.to.processor]
                .iter()
                .all(|p| finals.get(*p).is_some_and(|f| f.kept));
            let options = link.link.options();
            let key = (from, to);
            let wanted_options = desired.get(&key);
            if ends_kept && wanted_options.is_some_and(|o| same_options(o, &options)) {
                staying.insert(key);
                continue;
            }
            let (from, to) = key;
            let reason = if !ends_kept {
                "a processor it joins is removed or replaced"
            } else if wanted_options.is_some() {
                "its options change: linked again with the new ones"
            } else {
                "not in the document"
            };
            plan.disconnects.push(link_id.clone());
            disconnect_actions.push(PlanAction {
                action: PlanActionKind::Disconnect,
                target: format!("{from} -> {to}"),
                reason: reason.to_string(),
                changed: Vec::new(),
            });
        }
        let mut connect_actions = Vec::new();
        plan.connects.retain(|(from, to, _)| {
            let key = (from.to_string(), to.to_string());
            if staying.contains(&key) {
                return false;
            }
            connect_actions.push(PlanAction {
                action: PlanActionKind::Connect,
                target: format!("{from} -> {to}"),
                reason: "new in the document, or linked again".to_string(),
                changed: Vec::new(),
            });
            true
        });
        // Execution order: links go, processors go, processors come (and change), links come.
        let mut actions = disconnect_actions;
        let (removes, others): (Vec<_>, Vec<_>) = plan
            .actions
            .drain(..)
            .partition(|a| a.action == PlanActionKind::Remove);
        actions.extend(removes);
        actions.extend(others);
        actions.extend(connect_actions);
        // A document with a `ui` section (even empty) places its processors as it says and
        // unplaces the others; one without leaves the drawing alone — a processor replaced
        // (removed and added again) is put back where it was.
        if let Some(ui) = &doc.ui {
            let mut moved = Vec::new();
            for id in &wanted {
                let at = ui.positions.get(id.as_str()).copied();
                let now = self.positions().get(id).copied();
                if at != now {
                    moved.push(id.to_string());
                    plan.layout.push((id.clone(), at));
                } else if at.is_some() && replaced.contains(id) {
                    plan.layout.push((id.clone(), at));
                }
            }
            if !moved.is_empty() {
                actions.push(PlanAction {
                    action: PlanActionKind::Layout,
                    target: "ui".to_string(),
                    reason: format!("{} processor(s) drawn elsewhere", moved.len()),
                    changed: moved,
                });
            }
        } else {
            for id in &replaced {
                if let Some(at) = self.positions().get(id) {
                    plan.layout.push((id.clone(), Some(*at)));
                }
            }
        }
        plan.actions = actions;
        Ok(plan)
    }
}

fn kept(ports: &PortSet) -> FinalPorts<'_> {
    FinalPorts {
        ports: std::borrow::Cow::Borrowed(ports),
        kept: true,
    }
}

/// Whether `config` gives `type_name` the ports it has now.
fn same_ports(ports: &PortSet, type_name: &str, config: &serde_json::Value) -> bool {
    let Ok(spec) = PROCESSOR_REGISTRY.create(type_name, config.clone()) else {
        return false;
    };
    let new = spec.node.ports();
    let names = |set: &PortSet| {
        (
            set.inputs
                .iter()
                .map(|p| p.name().to_string())
                .collect::<Vec<_>>(),
            set.outputs
                .iter()
                .map(|p| p.name().to_string())
                .collect::<Vec<_>>(),
        )
    };
    names(ports) == names(&new)
}

fn same_options(a: &ResolvedLinkOptions, b: &ResolvedLinkOptions) -> bool {
    (a.capacity, a.overflow, a.read_mode) == (b.capacity, b.overflow, b.read_mode)
}

/// A port of a processor as the graph will have it after the plan.
enum FoundPort {
    Output(std::sync::Arc<dyn AnyOutputPort>),
    Input(FrameType),
}

/// Finds a port as it will be after the plan. `Ok(None)`: the processor has a problem of its
/// own, already reported. The error names the ports there are.
fn final_port(
    finals: &BTreeMap<ProcessorUniqueId, FinalPorts<'_>>,
    wanted: &std::collections::BTreeSet<ProcessorUniqueId>,
    processor: &ProcessorUniqueId,
    port: &str,
    output: bool,
) -> Result<Option<FoundPort>, String> {
    let Some(f) = finals.get(processor) else {
        if wanted.contains(processor) {
            return Ok(None);
        }
        return Err(format!("processor '{processor}' is not in the document"));
    };
    let found = if output {
        f.ports.output(port).cloned().map(FoundPort::Output)
    } else {
        f.ports
            .input(port)
            .map(|p| FoundPort::Input(p.frame_type()))
    };
    found.map(Some).ok_or_else(|| {
        let (direction, names): (&str, Vec<&str>) = if output {
            ("output", f.ports.outputs.iter().map(|p| p.name()).collect())
        } else {
            ("input", f.ports.inputs.iter().map(|p| p.name()).collect())
        };
        let list = if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        };
        format!("processor '{processor}' has no {direction} port '{port}'; its {direction} ports are: {list}")
    })
}

/// A config error of `processors[i]` at its place (`processors[2].config.width`).
fn config_problem(place: &str, e: StreamError) -> (String, String) {
    match e {
        StreamError::InvalidConfig {
            field: Some(field),
            message,
            processor_type,
        } => (
            format!("{place}.config.{field}"),
            format!("{message} ({processor_type})"),
        ),
        StreamError::InvalidConfig { .. } => (format!("{place}.config"), e.to_string()),
        StreamError::UnknownProcessorType { .. } => (format!("{place}.type"), e.to_string()),
        other => (place.to_string(), other.to_string()),
    }
}
