//! The runtime thread's one command dispatcher: what `run()` and `poll_commands()` both use to
//! answer the service layer, so a read is served the same way whichever loop takes it.
//!
//! Reads queued together share one snapshot: a `GetState` reuses the snapshot taken for an
//! earlier read only if it was already queued when that snapshot was taken and no event has
//! been published since, so each read still sees every change made before its request.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::live::Decision;
use super::main_thread::{self, MainTask};
use super::pending::{AfterTeardown, PendingSetup};
use super::stream_runtime::{Begun, StreamRuntime};
use super::worker::BUSY_YIELDS;
use crate::core::error::StreamError;
use crate::core::graph::RuntimeState;
use crate::core::service::command::{CommandResult, RuntimeCommand};

/// A command with the channel its answer goes back on.
pub(crate) type QueuedCommand = (RuntimeCommand, oneshot::Sender<CommandResult>);

/// What woke the runtime thread.
pub(super) enum Wake {
    Command(RuntimeCommand, oneshot::Sender<CommandResult>),
    Task(MainTask),
    /// A worker reported, or the deadline of something parked passed (`pending.rs`).
    Pending,
    /// A processor's stream ended or it failed: the graph may have finished.
    Ended,
    Shutdown,
}

/// The snapshot the reads of one burst share (see the module docs).
#[derive(Default)]
pub(super) struct SharedSnapshot {
    /// The snapshot and how many commands were queued behind the read that took it.
    current: Option<(Arc<RuntimeState>, usize)>,
}

impl SharedSnapshot {
    /// Forgets the snapshot: something other than a read happened (a change, main-thread
    /// work, time passing).
    pub(super) fn clear(&mut self) {
        self.current = None;
    }
}

impl StreamRuntime {
    /// Executes one command and answers it; a `GetState` may share `snapshot` (module docs),
    /// anything else ends the sharing. A create, start or removal that waits for processor
    /// threads is parked and answered later (`pending.rs`); a command that must wait its turn
    /// ([`StreamRuntime::must_wait`]) is deferred: the runtime thread does not wait for them.
    pub(super) fn serve(
        &mut self,
        command: RuntimeCommand,
        reply: oneshot::Sender<CommandResult>,
        snapshot: &mut SharedSnapshot,
    ) {
        if !matches!(command, RuntimeCommand::GetState) {
            snapshot.clear();
        }
        if self.must_wait(&command) {
            self.pending.deferred.push_back((command, reply));
            return;
        }
        self.execute(command, reply, snapshot);
    }

    /// Whether `command` waits in `deferred`, in order: every change while a graph apply is in
    /// progress or waiting (the plan must stay true); an apply while anything is parked (a
    /// create, removal, restart or start in progress would change the graph under its plan);
    /// a stop, a restart or a config change while a start or a restart's setup is in progress
    /// (a stop never cuts a setup short; a change waits for the processors it may touch to be
    /// set up); and a start, stop, restart, change or apply behind any of those (a start alone
    /// joins the one in progress). Reads never wait.
    fn must_wait(&self, command: &RuntimeCommand) -> bool {
        use RuntimeCommand as C;
        if is_read(command) {
            return false;
        }
        let deferred = &self.pending.deferred;
        let apply_ahead = deferred
            .iter()
            .any(|(c, _)| matches!(c, C::ApplyGraph { .. }));
        if self.blocked(command) || apply_ahead {
            return true;
        }
        matches!(
            command,
            C::Start | C::Stop | C::Restart { .. } | C::UpdateConfig { .. } | C::ApplyGraph { .. }
        ) && !deferred.is_empty()
    }

    /// Whether something in progress keeps `command` from running now (the rules of
    /// [`StreamRuntime::must_wait`] but its place in the queue).
    pub(super) fn blocked(&self, command: &RuntimeCommand) -> bool {
        use RuntimeCommand as C;
        if is_read(command) {
            return false;
        }
        if self.pending.apply.is_some() {
            // Every change, and the graph a file is written from: never one half-way through
            // an apply.
            return true;
        }
        match command {
            C::ApplyGraph { .. } => !self.pending.is_empty(),
            C::Stop | C::Restart { .. } | C::UpdateConfig { .. } => self.pending.busy(),
            _ => false,
        }
    }

    /// Executes a command now (its turn has come: the caller has checked
    /// [`StreamRuntime::must_wait`], or it is being taken from `deferred`).
    pub(super) fn execute(
        &mut self,
        command: RuntimeCommand,
        reply: oneshot::Sender<CommandResult>,
        snapshot: &mut SharedSnapshot,
    ) {
        let name = command.name();
        let result = match command {
            RuntimeCommand::AddProcessor { spec } => match self.begin_add(spec) {
                Ok(Begun::Added(id)) => Ok(CommandResult::ProcessorAdded(id)),
                Ok(Begun::SettingUp(id, entry)) => {
                    self.pending.setups.push(PendingSetup {
                        id,
                        entry: *entry,
                        deadline: Instant::now() + self.workers.setup_timeout,
                        reply,
                    });
                    return;
                }
                Err(e) => Err(e),
            },
            RuntimeCommand::RemoveProcessor { id } => match self.begin_remove(&id) {
                Ok(Some(entry)) => {
                    self.park_teardown(id, entry, reply, AfterTeardown::Removed);
                    return;
                }
                Ok(None) => {
                    self.removed(&id);
                    Ok(CommandResult::ProcessorRemoved)
                }
                Err(e) => Err(e),
            },
            RuntimeCommand::Connect { from, to, options } => self
                .connect_with(from, to, options)
                .map(|link| CommandResult::Connected(link.id())),
            RuntimeCommand::Disconnect { link_id } => self
                .disconnect(&link_id)
                .map(|()| CommandResult::Disconnected),
            RuntimeCommand::Start => {
                self.begin_start();
                match &mut self.pending.start {
                    Some(start) => {
                        start.replies.push(reply);
                        return;
                    }
                    None => Ok(CommandResult::Started),
                }
            }
            RuntimeCommand::Stop => self.stop().map(|()| CommandResult::Stopped),
            RuntimeCommand::Restart { id, downstream } => {
                self.begin_restart(id, None, downstream, reply);
                return;
            }
            RuntimeCommand::UpdateConfig {
                id,
                change,
                restart,
            } => {
                if let Decision::Restart(update, reply) =
                    self.change_config(&id, change, restart, reply)
                {
                    self.begin_restart(id, Some(update), false, reply);
                }
                return;
            }
            RuntimeCommand::ApplyGraph {
                doc,
                dry_run,
                if_match,
            } => {
                self.begin_apply(*doc, dry_run, if_match, reply);
                return;
            }
            RuntimeCommand::GetGraph { minimal } => {
                Ok(CommandResult::Graph(Box::new(if minimal {
                    self.graph.document_minimal()
                } else {
                    self.graph.document()
                })))
            }
            RuntimeCommand::GetGraphForFile => Ok(CommandResult::GraphForFile(Box::new((
                self.graph.document(),
                self.graph.document_minimal(),
            )))),
            RuntimeCommand::GetState => Ok(CommandResult::State(self.shared_state(snapshot))),
            RuntimeCommand::GetProcessor { id } => self
                .processor_info(&id)
                .map(|info| CommandResult::Processor(Box::new(info))),
            RuntimeCommand::PortTargets { id, port } => {
                self.port_targets(&id, &port).map(CommandResult::Targets)
            }
            RuntimeCommand::SetPositions { changes } => {
                self.set_positions(changes).map(CommandResult::Placed)
            }
            RuntimeCommand::GetMetrics => {
                Ok(CommandResult::Metrics(Box::new(self.metrics_report())))
            }
            RuntimeCommand::WatchPort { id, port } => {
                self.graph.watch_port(&id, &port).map(CommandResult::Watch)
            }
        };
        let result = result.unwrap_or_else(|e| {
            tracing::debug!(command = name, error = %e, "command failed");
            CommandResult::Error(e)
        });
        // The caller may have given up (timeout, dropped future); nothing to do.
        let _ = reply.send(result);
    }

    /// A snapshot for a read: the shared one when the rule allows it, otherwise a fresh one.
    fn shared_state(&self, snapshot: &mut SharedSnapshot) -> Arc<RuntimeState> {
        let seq_now = self.events().snapshot(|seq| seq);
        match snapshot.current.take() {
            Some((state, queued_before)) if queued_before > 0 && state.seq == seq_now => {
                snapshot.current = Some((state.clone(), queued_before - 1));
                state
            }
            _ => {
                let state = Arc::new(self.state());
                snapshot.current = Some((state.clone(), self.command_rx.len()));
                state
            }
        }
    }

    /// Polls and executes pending commands, and the main-thread work processors posted, without
    /// waiting for more. For callers that drive the runtime from their own event loop instead
    /// of [`StreamRuntime::run`]. A create, start or removal that waits for processor threads
    /// (and a stop behind a start) is answered by a later call, once they have reported: keep
    /// polling (every few milliseconds) while [`StreamRuntime::has_parked_requests`] says so.
    pub fn poll_commands(&mut self) {
        let mut snapshot = SharedSnapshot::default();
        loop {
            self.settle();
            if self.workers.ends.raised.try_recv().is_ok() {
                self.check_finished();
            }
            if let Ok(task) = self.workers.main_tasks.try_recv() {
                snapshot.clear();
                main_thread::execute(task);
            } else if let Ok((command, reply)) = self.command_rx.try_recv() {
                self.serve(command, reply, &mut snapshot);
            } else {
                return;
            }
        }
    }

    /// Answers every queued command with `runtime_unavailable` without executing it.
    pub(super) fn refuse_queued_commands(&self, why: &str) {
        while let Ok(queued) = self.command_rx.try_recv() {
            refuse(queued, why);
        }
    }

    /// Commands from the service layer waiting to be executed (not yet taken by `run()` or
    /// `poll_commands()`).
    pub fn queued_commands(&self) -> usize {
        self.command_rx.len()
    }

    /// Whether requests wait for processor threads (see [`StreamRuntime::poll_commands`]).
    pub fn has_parked_requests(&self) -> bool {
        !self.pending.is_empty() || !self.pending.deferred.is_empty()
    }

    /// Answers every deferred start and stop with `runtime_unavailable` without executing it.
    pub(super) fn refuse_deferred(&mut self, why: &str) {
        for queued in std::mem::take(&mut self.pending.deferred) {
            refuse(queued, why);
        }
    }

    /// The next command, main-thread task or shutdown request, if one is already queued.
    /// (What is parked is checked by the caller, `poll_pending`.)
    pub(super) fn try_next_wake(&self) -> Option<Wake> {
        if self.shutdown_rx.try_recv().is_ok() {
            return Some(Wake::Shutdown);
        }
        if let Ok(task) = self.workers.main_tasks.try_recv() {
            return Some(Wake::Task(task));
        }
        self.command_rx
            .try_recv()
            .ok()
            .map(|(command, reply)| Wake::Command(command, reply))
    }

    /// Sleeps until the next command, main-thread task, shutdown request, or (while requests
    /// are parked) worker report or deadline.
    pub(super) fn next_wake(&self) -> Wake {
        // Deferred starts and stops whose turn has come (their start completed outside the
        // loop, e.g. in a direct `stop()`).
        if self
            .pending
            .deferred
            .front()
            .is_some_and(|(command, _)| !self.blocked(command))
        {
            return Wake::Pending;
        }
        let mut selector = flume::Selector::new()
            .recv(&self.shutdown_rx, |_| Wake::Shutdown)
            .recv(&self.command_rx, |r| match r {
                Ok((command, reply)) => Wake::Command(command, reply),
                // Unreachable while `self.workers.service` holds a sender; treat as shutdown.
                Err(_) => Wake::Shutdown,
            })
            .recv(&self.workers.main_tasks, |r| match r {
                Ok(task) => Wake::Task(task),
                Err(_) => Wake::Shutdown,
            })
            .recv(&self.workers.ends.raised, |_| Wake::Ended);
        if self.pending.is_empty() {
            return selector.wait();
        }
        selector = selector.recv(&self.workers.reports.raised, |_| Wake::Pending);
        match self.pending.next_deadline() {
            Some(deadline) => selector.wait_deadline(deadline).unwrap_or(Wake::Pending),
            None => selector.wait(),
        }
    }
}

/// Whether `command` only reads (never deferred, served at once).
fn is_read(command: &RuntimeCommand) -> bool {
    matches!(
        command,
        RuntimeCommand::GetState
            | RuntimeCommand::GetProcessor { .. }
            | RuntimeCommand::PortTargets { .. }
            | RuntimeCommand::GetGraph { .. }
            | RuntimeCommand::GetMetrics
            | RuntimeCommand::WatchPort { .. }
    )
}

/// Answers a command with `runtime_unavailable` (`why`) without executing it.
fn refuse((command, reply): QueuedCommand, why: &str) {
    let error =
        StreamError::RuntimeUnavailable(format!("{why} before executing {}", command.name()));
    // The caller may be gone too; nothing to do then.
    let _ = reply.send(CommandResult::Error(error));
}

impl StreamRuntime {
    /// Serves commands and main-thread work until shutdown is requested. After work it yields
    /// a few times, checking for more, before it sleeps, so a command arriving right after
    /// another is taken without a futex sleep/wake; an idle runtime sleeps (0% CPU).
    pub(super) fn serve_until_shutdown(&mut self) {
        'serve: while !self.shutdown.is_requested() {
            let mut wake = self.next_wake();
            let mut yields = 0;
            let mut snapshot = SharedSnapshot::default();
            loop {
                match wake {
                    Wake::Command(command, reply) => self.serve(command, reply, &mut snapshot),
                    Wake::Task(task) => {
                        snapshot.clear();
                        main_thread::execute(task);
                    }
                    Wake::Pending => {
                        snapshot.clear();
                        self.settle();
                    }
                    Wake::Ended => {
                        snapshot.clear();
                        self.check_finished();
                    }
                    Wake::Shutdown => break 'serve,
                }
                // Drain what is queued, then stay responsive for a moment before sleeping.
                wake = loop {
                    self.settle();
                    if let Some(next) = self.try_next_wake() {
                        yields = 0;
                        break next;
                    }
                    if yields >= BUSY_YIELDS || self.shutdown.is_requested() {
                        continue 'serve;
                    }
                    // Time passes while yielding: the next read gets a fresh snapshot.
                    snapshot.clear();
                    yields += 1;
                    std::thread::yield_now();
                };
            }
        }
    }
}
