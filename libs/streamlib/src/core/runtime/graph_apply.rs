//! Applying a desired graph document (`PUT /api/graph`): all of it, or nothing.
//!
//! The plan (`graph/document.rs`) is made and checked whole first; a document with problems is
//! refused with every one of them, and nothing is touched. Then, without holding up the runtime
//! thread (the request is parked like a create):
//!
//! 1. **Prepare** — new processors are set up on their threads *outside* the graph (as a create
//!    is), and processors whose fields that are not live changed are restarted in place with the
//!    new config (links kept). Nothing else changes yet; untouched processors and links keep
//!    their frames flowing.
//! 2. **Commit** — once every setup has succeeded: the links that go are removed, the
//!    processors that go are removed (their teardown finishes in the background), the new
//!    processors join the graph and are released, live changes are posted, and the new links
//!    are made. None of these can fail on a checked plan.
//! 3. **Rollback** — if a setup failed (or overran the setup timeout): the new processors are
//!    torn down unseen, the restarted ones are restarted again with the config they had, and
//!    the request is refused naming each failure at its place in the document. The graph is as
//!    it was (unless a processor cannot be brought back, which is then said); its revision has
//!    moved on, since the states in between were visible.
//!
//! An apply waits until nothing else is in progress (a create, removal, restart or start), and
//! while it is in progress every other change waits for it, in order, so the plan stays true;
//! reads are served. A processor replaced (its type or ports change) is set up anew before the
//! old one is removed. New processors are released once their links are made; the answer comes
//! once the removed processors' teardowns have ended and the config changes are in force.

use std::time::Instant;

use tokio::sync::oneshot;

use super::events::RuntimeEventKind;
use super::live::{ConfigApplied, ConfigChange, ConfigUpdate};
use super::pending::{AfterTeardown, setup_report_of};
use super::stream_runtime::StreamRuntime;
use super::worker::STOP_TIMEOUT;
use crate::core::error::{Result, StreamError};
use crate::core::graph::{
    GraphApplied, GraphFile, GraphProblem, Plan, ProcessorEntry, ProcessorUniqueId, UiPosition,
    check_unique_port_names,
};
use crate::core::service::command::CommandResult;

/// A processor of the document that the graph does not have yet.
struct NewProcessor {
    id: ProcessorUniqueId,
    entry: ProcessorEntry,
    /// `None` while its setup runs; `Some(true)` ready (or nothing to set up), `Some(false)`
    /// failed.
    ready: Option<bool>,
}

/// A restart of the apply (or of its rollback), waiting for its answer.
struct RestartWait {
    id: ProcessorUniqueId,
    /// The config it had before the apply (a rollback restarts it with this).
    old_config: serde_json::Value,
    changed: Vec<String>,
    answer: oneshot::Receiver<CommandResult>,
    /// `None` until answered.
    outcome: Option<Result<(), String>>,
}

/// An apply in progress (module docs).
pub(super) struct PendingApply {
    plan: Plan,
    new: Vec<NewProcessor>,
    restarts: Vec<RestartWait>,
    rolling_back: bool,
    problems: Vec<GraphProblem>,
    /// Committed: the answer, sent once the removed processors' teardowns have ended and the
    /// config changes are in force.
    answer: Option<CommandResult>,
    teardowns: Vec<oneshot::Receiver<CommandResult>>,
    changes: Vec<(ProcessorUniqueId, oneshot::Receiver<CommandResult>)>,
    /// Config changes that could not be made after the commit (the processor failed taking
    /// it, or its instance was gone): said in the answer.
    change_failures: Vec<String>,
    pub(super) deadline: Instant,
    reply: oneshot::Sender<CommandResult>,
}

impl PendingApply {
    /// Whether `id` is one of the processors it is creating.
    pub(super) fn creates(&self, id: &ProcessorUniqueId) -> bool {
        self.new.iter().any(|n| n.id == *id)
    }

    /// Processor threads it holds outside the graph.
    pub(super) fn threads(&self) -> usize {
        self.new.iter().filter(|n| n.entry.is_on_thread()).count()
    }
}

impl StreamRuntime {
    /// The running graph as a document (`GET /api/graph`): effective configs, resolved link
    /// options, the revision. Control-plane processors are not in it.
    pub fn graph_document(&self) -> GraphFile {
        self.graph.document()
    }

    /// The running graph as a graph file shows it best: no revision, no config field or link
    /// option at its default (what `serve --save` writes).
    pub fn graph_document_minimal(&self) -> GraphFile {
        self.graph.document_minimal()
    }

    /// Moves, places or unplaces (`None`) processors in the drawing (the graph document's
    /// `ui` section): a new revision and `layout_changed` if anything moved. All or nothing: an
    /// id that is not a processor of the document, or a position out of range, changes nothing.
    /// Answers with the revision after it.
    pub fn set_positions(
        &mut self,
        changes: std::collections::BTreeMap<String, Option<UiPosition>>,
    ) -> Result<u64> {
        let mut problems = Vec::new();
        let mut checked = Vec::with_capacity(changes.len());
        for (id, at) in changes {
            let pid = ProcessorUniqueId::new(id.clone());
            match self.graph.processor(&pid) {
                Err(_) => return Err(StreamError::ProcessorNotFound(id)),
                Ok(entry) if entry.control_plane => problems.push(GraphProblem {
                    place: format!("positions.{id}"),
                    message: format!(
                        "'{id}' is a control-plane processor; it is not part of the graph document"
                    ),
                }),
                Ok(_) => match at.and_then(|at| at.problem()) {
                    Some(message) => problems.push(GraphProblem {
                        place: format!("positions.{id}"),
                        message,
                    }),
                    None => checked.push((pid, at)),
                },
            }
        }
        if !problems.is_empty() {
            return Err(StreamError::GraphRejected { problems });
        }
        self.place(checked);
        Ok(self.graph.revision())
    }

    /// Sets checked positions, and says which processors moved.
    fn place(&mut self, changes: Vec<(ProcessorUniqueId, Option<UiPosition>)>) {
        let moved: Vec<ProcessorUniqueId> = changes
            .iter()
            .filter(|(id, at)| self.graph.positions().get(id) != at.as_ref())
            .map(|(id, _)| id.clone())
            .collect();
        if self.graph.set_positions(changes) {
            self.events()
                .publish(RuntimeEventKind::LayoutChanged { processors: moved });
        }
    }

    /// Starts applying `doc` (module docs): refused at once if `expected` (If-Match, or the
    /// document's own `revision`) is not the graph's revision, or if the document has problems;
    /// answered at once for a dry run or a document the graph already matches.
    pub(super) fn begin_apply(
        &mut self,
        doc: GraphFile,
        dry_run: bool,
        if_match: Option<u64>,
        reply: oneshot::Sender<CommandResult>,
    ) {
        let revision = self.graph.revision();
        if let Some(expected) = if_match.or(doc.revision) {
            if expected != revision {
                let error = StreamError::RevisionMismatch {
                    expected,
                    actual: revision,
                };
                let _ = reply.send(CommandResult::Error(error));
                return;
            }
        }
        // Bounded before anything is built: a document bigger than the graph may be is refused
        // at once.
        let max = self.limits.max_processors;
        if doc.processors.len() > max || doc.connections.len() > max.saturating_mul(64) {
            let problems = vec![GraphProblem {
                place: "processors".to_string(),
                message: format!(
                    "the document has {} processors and {} connections; a graph may have at most {max} processors (--max-processors) and 64 connections per processor",
                    doc.processors.len(),
                    doc.connections.len()
                ),
            }];
            let _ = reply.send(CommandResult::Error(StreamError::GraphRejected {
                problems,
            }));
            return;
        }
        let plan = self.graph.plan(&doc, |id| {
            self.pending.reserves(id) || self.workers.is_abandoned(id)
        });
        let mut plan = match plan {
            Ok(plan) => plan,
            Err(problems) => {
                let error = StreamError::GraphRejected { problems };
                let _ = reply.send(CommandResult::Error(error));
                return;
            }
        };
        // The new processors are set up before the ones that go are removed: both count.
        let needed =
            self.graph.processor_count() + self.pending.threads_outside_graph() + plan.adds.len();
        if !plan.adds.is_empty() && needed > self.limits.max_processors {
            let problems = vec![GraphProblem {
                place: "processors".to_string(),
                message: format!(
                    "applying it needs {needed} processors at once (the {} added are set up before the {} removed go), over the limit of {} (--max-processors)",
                    plan.adds.len(),
                    plan.removes.len(),
                    self.limits.max_processors
                ),
            }];
            let _ = reply.send(CommandResult::Error(StreamError::GraphRejected {
                problems,
            }));
            return;
        }
        let actions = plan.actions.clone();
        if dry_run || actions.is_empty() {
            let _ = reply.send(CommandResult::Applied(Box::new(GraphApplied {
                dry_run,
                revision,
                actions,
            })));
            return;
        }
        tracing::info!(actions = actions.len(), "applying a graph document");
        let adds = std::mem::take(&mut plan.adds);
        let mut apply = PendingApply {
            new: Vec::new(),
            restarts: Vec::new(),
            rolling_back: false,
            problems: Vec::new(),
            answer: None,
            teardowns: Vec::new(),
            changes: Vec::new(),
            change_failures: Vec::new(),
            deadline: Instant::now() + self.workers.setup_timeout + STOP_TIMEOUT,
            reply,
            plan,
        };
        let run = self.is_running();
        for (id, spec) in adds {
            let place = apply.plan.place_of(&id);
            let ports = spec.node.ports();
            if let Err(e) = check_unique_port_names(spec.type_name(), &ports) {
                apply.problems.push(problem(&place, e.to_string()));
                continue;
            }
            let mut entry = ProcessorEntry::new(&id, spec.node);
            let ready = if run {
                match self.workers.spawn(&id, &mut entry) {
                    Ok(()) => None,
                    Err(e) => {
                        apply.problems.push(problem(&place, format!("setup: {e}")));
                        Some(false)
                    }
                }
            } else {
                Some(true)
            };
            apply.new.push(NewProcessor { id, entry, ready });
        }
        for (update, old_config) in std::mem::take(&mut apply.plan.restarts) {
            let (tx, answer) = oneshot::channel();
            let id = update.processor_id.clone();
            let changed = update.changed.clone();
            self.restart_one(id.clone(), Some(update), tx);
            apply.restarts.push(RestartWait {
                id,
                old_config,
                changed,
                answer,
                outcome: None,
            });
        }
        self.pending.apply = Some(apply);
        self.poll_apply(Instant::now());
    }

    /// Moves the apply in progress on: collects setups and restarts that reported, then
    /// commits, rolls back, or answers (module docs).
    pub(super) fn poll_apply(&mut self, now: Instant) {
        let Some(mut apply) = self.pending.apply.take() else {
            return;
        };
        if apply.answer.is_some() {
            // Each teardown answers by its own deadline (at most STOP_TIMEOUT), abandoned or not.
            apply
                .teardowns
                .retain_mut(|rx| matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
            let mut failures = Vec::new();
            apply.changes.retain_mut(|(id, rx)| match rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => true,
                Ok(CommandResult::Error(e)) => {
                    failures.push(format!("{id}: {e}"));
                    false
                }
                Ok(_) => false,
                Err(oneshot::error::TryRecvError::Closed) => {
                    failures.push(format!("{id}: the change was not answered"));
                    false
                }
            });
            apply.change_failures.extend(failures);
            if !apply.teardowns.is_empty() || !apply.changes.is_empty() {
                self.pending.apply = Some(apply);
                return;
            }
            if let Some(mut answer) = apply.answer.take() {
                if !apply.change_failures.is_empty() {
                    // Applied, links and all; a processor failed taking its new config.
                    answer = CommandResult::Error(StreamError::processor(format!(
                        "the document was applied, but a config change could not be made: {}",
                        apply.change_failures.join("; ")
                    )));
                }
                let _ = apply.reply.send(answer);
            }
            self.check_finished();
            return;
        }
        let late = now >= apply.deadline;
        for n in apply.new.iter_mut().filter(|n| n.ready.is_none()) {
            let place = apply.plan.place_of(&n.id);
            match setup_report_of(&n.entry) {
                Some(Ok(())) => n.ready = Some(true),
                Some(Err(e)) => {
                    self.workers.join(&mut n.entry);
                    apply
                        .problems
                        .push(problem(&place, format!("setup failed: {e}")));
                    n.ready = Some(false);
                }
                None if late => {
                    let e = self.workers.give_up_setup(&mut n.entry, "was not added");
                    apply.problems.push(problem(&place, e.to_string()));
                    n.ready = Some(false);
                }
                None => {}
            }
        }
        for r in apply.restarts.iter_mut().filter(|r| r.outcome.is_none()) {
            r.outcome = match r.answer.try_recv() {
                Ok(CommandResult::Error(e)) => Some(Err(e.to_string())),
                Ok(_) => Some(Ok(())),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => {
                    Some(Err("the restart was not answered".to_string()))
                }
            };
        }
        let waiting = apply.new.iter().any(|n| n.ready.is_none())
            || apply.restarts.iter().any(|r| r.outcome.is_none());
        if waiting {
            self.pending.apply = Some(apply);
            return;
        }
        if apply.rolling_back {
            self.finish_rollback(apply);
            return;
        }
        for r in &apply.restarts {
            if let Some(Err(e)) = &r.outcome {
                let place = apply.plan.place_of(&r.id);
                apply
                    .problems
                    .push(problem(&place, format!("restart failed: {e}")));
            }
        }
        if apply.problems.is_empty() {
            self.commit_apply(apply);
        } else {
            self.roll_back(apply);
        }
    }

    /// Makes the checked plan's remaining changes (none can fail) and answers with the plan.
    fn commit_apply(&mut self, mut apply: PendingApply) {
        let plan = &mut apply.plan;
        let (disconnects, removes) = (
            std::mem::take(&mut plan.disconnects),
            std::mem::take(&mut plan.removes),
        );
        let (reconfigures, connects, actions) = (
            std::mem::take(&mut plan.reconfigures),
            std::mem::take(&mut plan.connects),
            std::mem::take(&mut plan.actions),
        );
        let layout = std::mem::take(&mut plan.layout);
        for link in &disconnects {
            if let Err(e) = self.disconnect(link) {
                tracing::warn!(link = %link, error = %e, "apply: a link to remove was gone");
            }
        }
        for id in &removes {
            match self.begin_remove(id) {
                Ok(Some(entry)) => {
                    // Announced now, before a processor of the same id joins; the answer
                    // waits for its teardown (a writer's file is complete then).
                    self.removed(id);
                    let (tx, rx) = oneshot::channel();
                    self.park_teardown(id.clone(), entry, tx, AfterTeardown::Quiet);
                    apply.teardowns.push(rx);
                }
                Ok(None) => self.removed(id),
                Err(e) => {
                    tracing::warn!(processor = %id, error = %e, "apply: a processor to remove was gone")
                }
            }
        }
        // The new processors join the graph held back: released only once their links are
        // made, so a source's first frames (or a short file's whole stream) reach them.
        let mut hold = Vec::new();
        for n in std::mem::take(&mut apply.new) {
            if n.entry.is_on_thread() {
                hold.push(n.entry.shared.clone());
            }
            self.insert_added(n.id, n.entry);
        }
        for update in reconfigures {
            let (tx, rx) = oneshot::channel();
            let id = update.processor_id.clone();
            // Checked, and with restart refused it never asks for one. Answered once in force
            // (a live change by the processor's thread): the apply's answer waits for it.
            let _ = self.change_config(&id, ConfigChange::Replace(update.config), false, tx);
            apply.changes.push((id, rx));
        }
        let mut failed = Vec::new();
        for (from, to, options) in connects {
            if let Err(e) = self.connect_with(from.clone(), to.clone(), options) {
                failed.push(format!("{from} -> {to}: {e}"));
            }
        }
        for shared in hold {
            shared.set_state(self.events(), super::lifecycle::ProcessorStatus::Running);
            shared.signal.release();
        }
        self.place(layout);
        let result = if failed.is_empty() {
            tracing::info!(revision = self.graph.revision(), "graph document applied");
            CommandResult::Applied(Box::new(GraphApplied {
                dry_run: false,
                revision: self.graph.revision(),
                actions,
            }))
        } else {
            // The plan checked every link against the graph it makes: this is a bug.
            CommandResult::Error(StreamError::processor(format!(
                "the document was applied but links it checked could not be made: {}",
                failed.join("; ")
            )))
        };
        apply.answer = Some(result);
        apply.deadline = Instant::now() + STOP_TIMEOUT;
        self.pending.apply = Some(apply);
        self.poll_apply(Instant::now());
    }

    /// Undoes what the prepare step did: new processors torn down unseen, restarted ones
    /// restarted with their old config (waited for, then answered).
    fn roll_back(&mut self, mut apply: PendingApply) {
        tracing::warn!(
            problems = apply.problems.len(),
            "applying a graph document failed; rolling back"
        );
        for n in std::mem::take(&mut apply.new) {
            let NewProcessor { id, entry, .. } = n;
            if entry.is_on_thread() {
                entry.shared.signal.request_stop();
                let (tx, _) = oneshot::channel();
                self.park_teardown(id, entry, tx, AfterTeardown::Quiet);
            }
        }
        let mut back = Vec::new();
        for r in std::mem::take(&mut apply.restarts) {
            // Only a restart that stored its config is undone (one refused changed nothing).
            let stored = self
                .graph
                .processor(&r.id)
                .is_ok_and(|e| e.config != r.old_config);
            if !stored {
                continue;
            }
            let (tx, answer) = oneshot::channel();
            let update = ConfigUpdate {
                processor_id: r.id.clone(),
                config: r.old_config.clone(),
                changed: r.changed.clone(),
                applied: ConfigApplied::Unchanged,
            };
            self.restart_one(r.id.clone(), Some(update), tx);
            back.push(RestartWait {
                outcome: None,
                answer,
                ..r
            });
        }
        apply.restarts = back;
        apply.rolling_back = true;
        apply.deadline = Instant::now() + self.workers.setup_timeout + STOP_TIMEOUT;
        self.pending.apply = Some(apply);
        self.poll_apply(Instant::now());
    }

    /// Answers a rolled-back apply: refused with every problem (and what could not be undone).
    fn finish_rollback(&mut self, apply: PendingApply) {
        let PendingApply {
            plan,
            restarts,
            mut problems,
            reply,
            ..
        } = apply;
        for r in restarts {
            if let Some(Err(e)) = r.outcome {
                problems.push(problem(
                    &plan.place_of(&r.id),
                    format!("rollback: it could not be restarted with its previous config: {e}"),
                ));
            }
        }
        // The revision is not put back even when all was undone: a revision names one state of
        // the graph, and the states in between were visible (an export, an ETag).
        let _ = reply.send(CommandResult::Error(StreamError::GraphRejected {
            problems,
        }));
        self.check_finished();
    }

    /// Refuses the apply in progress (shutdown): its new processors are abandoned.
    pub(super) fn refuse_pending_apply(&mut self, why: &str) {
        let Some(apply) = self.pending.apply.take() else {
            return;
        };
        for mut n in apply.new {
            self.workers.abandon(&mut n.entry);
        }
        // Committed already: the graph was changed; say so.
        let answer = apply.answer.unwrap_or_else(|| {
            CommandResult::Error(StreamError::RuntimeUnavailable(format!(
                "{why} while a graph was being applied"
            )))
        });
        let _ = apply.reply.send(answer);
    }
}

fn problem(place: &str, message: String) -> GraphProblem {
    GraphProblem {
        place: place.to_string(),
        message,
    }
}
