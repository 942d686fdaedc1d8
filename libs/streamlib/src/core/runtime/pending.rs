//! Requests from the service layer that wait for processor threads: a create whose processor
//! is in `setup`, a start whose processors are, a removal whose processor is tearing down.
//!
//! None of them may hold up the runtime thread (a device that takes seconds to open, a setup
//! or teardown that hangs): the runtime starts the work on the processor threads, parks the
//! request here with a deadline, and goes on serving other commands. Each worker raises the
//! runtime's [`Reports`](super::worker::Reports) flag when it sends a message, so the runtime
//! waits on one channel and the earliest deadline, then looks at what is parked
//! ([`StreamRuntime::poll_pending`]).
//!
//! - A **create** joins the graph when its setup succeeds (not before: other requests do not
//!   see it, its id is reserved), and is answered; a setup that overruns the setup timeout
//!   ([`RuntimeLimits`](super::RuntimeLimits)) is abandoned and answered with the timeout. If
//!   the runtime was stopped meanwhile, the processor tears down first (it is added stopped,
//!   and the next start runs it).
//! - A **start** releases every processor at once when the last setup has reported or the
//!   shared deadline passed (the late ones fail), then publishes `runtime_started` and answers
//!   every start request that arrived meanwhile. Starts and stops that arrive while it is
//!   pending are **deferred**, in order, until it completes: a stop never cuts a setup short,
//!   and never waits for one on the runtime thread.
//! - A **removal** takes the processor out of the graph at once (links first) and asks it to
//!   stop; it is answered when the thread has ended (a writer's file is complete then), or
//!   after [`STOP_TIMEOUT`] with the thread abandoned. Its id stays reserved until then.

use std::collections::VecDeque;
use std::time::Instant;

use tokio::sync::oneshot;

use super::commands::QueuedCommand;
use super::events::RuntimeEventKind;
use super::graph_apply::PendingApply;
use super::lifecycle::ProcessorStatus;
use super::restart::PendingRestart;
use super::stream_runtime::StreamRuntime;
use super::worker::{NOT_ADDED, STOP_TIMEOUT, Slot, WorkerHost, setup_outcome};
use crate::core::error::{Result, Stage, StreamError};
use crate::core::graph::{ProcessorEntry, ProcessorUniqueId};
use crate::core::service::command::{CommandResult, RuntimeCommand};

/// Everything parked on the runtime thread, waiting for processor threads.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) setups: Vec<PendingSetup>,
    pub(super) teardowns: Vec<PendingTeardown>,
    /// Processors restarting in place (`restart.rs`).
    pub(super) restarts: Vec<PendingRestart>,
    /// A graph document being applied (`graph_apply.rs`).
    pub(super) apply: Option<PendingApply>,
    pub(super) start: Option<PendingStart>,
    /// Starts and stops that arrived while `start` was pending, in order.
    pub(super) deferred: VecDeque<QueuedCommand>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.setups.is_empty()
            && self.teardowns.is_empty()
            && self.restarts.is_empty()
            && self.apply.is_none()
            && self.start.is_none()
    }

    /// Whether something is in progress that a stop must not cut short, and that commands
    /// deferred behind it wait for: a start, or a restart setting its processor up again.
    pub(super) fn busy(&self) -> bool {
        self.start.is_some()
            || self
                .restarts
                .iter()
                .any(|r| r.phase == super::restart::RestartPhase::SettingUp)
    }

    /// Whether `id` is restarting.
    pub(super) fn is_restarting(&self, id: &ProcessorUniqueId) -> bool {
        self.restarts.iter().any(|r| r.id == *id)
    }

    /// Processor threads parked here outside the graph (they count against the limit).
    pub(super) fn threads_outside_graph(&self) -> usize {
        self.setups.len() + self.teardowns.len() + self.apply.as_ref().map_or(0, |a| a.threads())
    }

    /// Whether `id` is reserved by a create or a removal in progress.
    pub(super) fn reserves(&self, id: &ProcessorUniqueId) -> bool {
        self.setups.iter().any(|p| p.id == *id)
            || self.teardowns.iter().any(|p| p.id == *id)
            || self.apply.as_ref().is_some_and(|a| a.creates(id))
    }

    /// The earliest deadline of anything parked.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let setups = self.setups.iter().map(|p| p.deadline);
        let teardowns = self.teardowns.iter().map(|p| p.deadline);
        let restarts = self.restarts.iter().map(|r| r.deadline);
        let apply = self.apply.iter().map(|a| a.deadline);
        let start = self.start.iter().map(|s| s.deadline);
        setups
            .chain(teardowns)
            .chain(restarts)
            .chain(apply)
            .chain(start)
            .min()
    }

    /// Whether a stop waits its turn behind the start in progress.
    pub(super) fn stop_deferred(&self) -> bool {
        self.deferred
            .iter()
            .any(|(command, _)| matches!(command, RuntimeCommand::Stop))
    }

    /// Forgets `id` in the start in progress (it is being removed).
    pub(super) fn forget(&mut self, id: &ProcessorUniqueId) {
        if let Some(start) = &mut self.start {
            start.setting_up.retain(|s| s != id);
            start.ready.retain(|s| s != id);
        }
    }
}

/// One create request waiting for its processor's setup.
pub(super) struct PendingSetup {
    pub(super) id: ProcessorUniqueId,
    /// The entry, its instance on the worker thread.
    pub(super) entry: ProcessorEntry,
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<CommandResult>,
}

/// What a parked teardown completes.
pub(super) enum AfterTeardown {
    /// A removal: announce it and answer `ProcessorRemoved`.
    Removed,
    /// A create whose setup ended after the runtime stopped: add it (stopped) and answer.
    Added,
    /// Already announced (a removal by a graph apply), or never announced (a processor an
    /// apply that failed had set up): nothing to announce; nobody waits for the answer.
    Quiet,
}

/// One request waiting for a processor's thread to end, outside the graph.
pub(super) struct PendingTeardown {
    pub(super) id: ProcessorUniqueId,
    /// The entry, its instance on the worker thread (asked to stop).
    pub(super) entry: ProcessorEntry,
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<CommandResult>,
    pub(super) then: AfterTeardown,
}

/// A start waiting for its processors' setups.
pub(super) struct PendingStart {
    /// Processors whose setup has not reported yet.
    pub(super) setting_up: Vec<ProcessorUniqueId>,
    /// Processors set up, released together when `setting_up` is empty.
    pub(super) ready: Vec<ProcessorUniqueId>,
    pub(super) deadline: Instant,
    /// The deadline was brought forward by a shutdown: setups still running then are
    /// abandoned for that reason, not for overrunning the setup timeout.
    pub(super) cut_short: bool,
    /// Every start request waiting (a second start joins the first).
    pub(super) replies: Vec<oneshot::Sender<CommandResult>>,
}

/// How a worker's setup went, as far as can be told without waiting.
enum SetupReport {
    Done(Result<()>),
    NotYet,
}

/// How the setup on the processor's thread went: `None` while it has not reported (or there
/// is no thread).
pub(super) fn setup_report_of(entry: &ProcessorEntry) -> Option<Result<()>> {
    if !entry.is_on_thread() {
        return None;
    }
    match setup_report(entry) {
        SetupReport::Done(result) => Some(result),
        SetupReport::NotYet => None,
    }
}

fn setup_report(entry: &ProcessorEntry) -> SetupReport {
    let Slot::Running(worker) = &entry.slot else {
        return SetupReport::Done(Err(StreamError::processor("the processor has no thread")));
    };
    match worker.messages.try_recv() {
        Ok(message) => SetupReport::Done(setup_outcome(Some(message))),
        Err(flume::TryRecvError::Disconnected) => SetupReport::Done(setup_outcome(None)),
        Err(flume::TryRecvError::Empty) => SetupReport::NotYet,
    }
}

impl StreamRuntime {
    /// Finishes whatever is parked whose workers have reported or whose deadline has passed,
    /// without waiting. (Deferred starts and stops are run by the command loops, see
    /// [`StreamRuntime::run_deferred`].)
    pub(super) fn poll_pending(&mut self) {
        self.workers.reports.lower();
        let now = Instant::now();
        self.poll_setups(now);
        self.poll_teardowns(now);
        self.poll_restarts(now);
        self.poll_apply(now);
        self.poll_start(now);
    }

    /// Waits, running main-thread work, until the start in progress (if any) has completed,
    /// serving what else is parked meanwhile. For the blocking API and shutdown.
    pub(super) fn finish_start_blocking(&mut self) {
        while self.pending.start.is_some() {
            let deadline = self.pending.next_deadline();
            if let Some(deadline) = deadline {
                self.workers.wait_for_reports(deadline);
            }
            self.poll_pending();
        }
    }

    /// Brings the deadline of the start in progress forward to `limit` (see
    /// [`PendingStart::cut_short`]).
    pub(super) fn cut_start_short(&mut self, limit: Instant) {
        if let Some(start) = &mut self.pending.start {
            if limit < start.deadline {
                start.deadline = limit;
                start.cut_short = true;
            }
        }
    }

    /// Polls what is parked, then serves the starts and stops deferred behind a start that has
    /// completed: what the command loops do before they look for new work.
    pub(super) fn settle(&mut self) {
        if !self.pending.is_empty() {
            self.poll_pending();
        }
        self.run_deferred();
    }

    /// Serves the commands deferred, in order, while the one in front is not blocked by
    /// something in progress (see `StreamRuntime::blocked`); one whose client has gone is
    /// dropped.
    pub(super) fn run_deferred(&mut self) {
        loop {
            let Some((front, _)) = self.pending.deferred.front() else {
                return;
            };
            if self.blocked(front) {
                return;
            }
            let Some((command, reply)) = self.pending.deferred.pop_front() else {
                return;
            };
            // The client gave up waiting (a timeout): the change is not made behind its back.
            if reply.is_closed() {
                tracing::debug!(
                    command = command.name(),
                    "a deferred command's client has gone; not executed"
                );
                continue;
            }
            self.execute(command, reply, &mut Default::default());
        }
    }

    // ----------------------------------------------------------------------------------------
    // Creates

    fn poll_setups(&mut self, now: Instant) {
        let parked_before = self.pending.setups.len();
        let mut i = 0;
        while i < self.pending.setups.len() {
            let parked = &self.pending.setups[i];
            match setup_report(&parked.entry) {
                SetupReport::Done(setup) => {
                    let parked = self.pending.setups.swap_remove(i);
                    self.finish_pending_setup(parked, setup);
                }
                SetupReport::NotYet if parked.deadline <= now => {
                    let parked = self.pending.setups.swap_remove(i);
                    self.abandon_pending_setup(parked);
                }
                SetupReport::NotYet => i += 1,
            }
        }
        if parked_before > 0 && self.pending.setups.is_empty() {
            // Whether the graph has finished waits for creates in progress (one that failed
            // adds nothing, and everything else may have ended meanwhile).
            self.check_finished();
        }
    }

    /// Completes a pending create with its setup's result.
    fn finish_pending_setup(&mut self, parked: PendingSetup, setup: Result<()>) {
        let PendingSetup {
            id,
            mut entry,
            reply,
            ..
        } = parked;
        if let Err(e) = setup {
            self.workers.join(&mut entry);
            let error = e.in_stage(id.to_string(), Stage::Setup);
            let _ = reply.send(CommandResult::Error(error));
            return;
        }
        if !self.is_running() && !entry.control_plane {
            // The runtime was stopped while this setup ran: the processor tears down (it was
            // never released), then joins the graph stopped; the next start runs it.
            entry.shared.signal.request_stop();
            self.park_teardown(id, entry, reply, AfterTeardown::Added);
            return;
        }
        let result = self.finish_add(id, entry);
        // The client may have given up (timeout); the processor stays added then.
        let _ = reply.send(CommandResult::ProcessorAdded(result));
    }

    /// Gives up on a setup that overran its deadline: the processor is asked to stop, its
    /// thread is kept to be joined once it ends, and the request is answered with the timeout.
    fn abandon_pending_setup(&mut self, parked: PendingSetup) {
        let PendingSetup {
            id,
            mut entry,
            reply,
            ..
        } = parked;
        let error = self.workers.give_up_setup(&mut entry, NOT_ADDED);
        tracing::warn!(processor = %id, "setup overran; the processor was not added");
        let _ = reply.send(CommandResult::Error(
            error.in_stage(id.to_string(), Stage::Setup),
        ));
    }

    /// Answers every pending create with `why`; their processors are asked to stop and their
    /// threads abandoned (never waited for: a hung setup must not hold up a shutdown).
    pub(super) fn refuse_pending_setups(&mut self, why: &str) {
        for mut parked in std::mem::take(&mut self.pending.setups) {
            self.workers.abandon(&mut parked.entry);
            let error = StreamError::RuntimeUnavailable(format!(
                "{why} while processor '{}' was being set up",
                parked.id
            ));
            let _ = parked.reply.send(CommandResult::Error(error));
        }
    }

    // ----------------------------------------------------------------------------------------
    // Teardowns (removals, and creates that ended after a stop)

    /// Parks `entry` (out of the graph, asked to stop) until its thread has ended.
    pub(super) fn park_teardown(
        &mut self,
        id: ProcessorUniqueId,
        entry: ProcessorEntry,
        reply: oneshot::Sender<CommandResult>,
        then: AfterTeardown,
    ) {
        self.pending.teardowns.push(PendingTeardown {
            id,
            entry,
            deadline: Instant::now() + STOP_TIMEOUT,
            reply,
            then,
        });
        self.poll_teardowns(Instant::now());
    }

    fn poll_teardowns(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.teardowns.len() {
            let parked = &self.pending.teardowns[i];
            let exited = match &parked.entry.slot {
                Slot::Running(worker) => WorkerHost::has_exited(worker),
                _ => true,
            };
            if exited || parked.deadline <= now {
                let mut parked = self.pending.teardowns.swap_remove(i);
                self.workers.collect(&mut parked.entry, exited);
                self.finish_teardown(parked);
            } else {
                i += 1;
            }
        }
    }

    /// Answers a parked teardown whose thread has been joined or abandoned.
    fn finish_teardown(&mut self, parked: PendingTeardown) {
        let PendingTeardown {
            id,
            entry,
            reply,
            then,
            ..
        } = parked;
        let result = match then {
            AfterTeardown::Quiet => CommandResult::ProcessorRemoved,
            AfterTeardown::Removed => {
                self.removed(&id);
                CommandResult::ProcessorRemoved
            }
            AfterTeardown::Added if matches!(entry.slot, Slot::Idle(_)) => {
                if !self.is_running() {
                    CommandResult::ProcessorAdded(self.finish_add(id, entry))
                } else {
                    // Started again meanwhile: set it up again, as a create.
                    let mut entry = entry;
                    match self.workers.spawn(&id, &mut entry) {
                        Ok(()) => {
                            let deadline = Instant::now() + self.workers.setup_timeout;
                            self.pending.setups.push(PendingSetup {
                                id,
                                entry,
                                deadline,
                                reply,
                            });
                            return;
                        }
                        Err(e) => {
                            CommandResult::Error(e.in_stage(id.to_string(), Stage::Setup))
                        }
                    }
                }
            }
            AfterTeardown::Added => CommandResult::Error(
                StreamError::processor(format!(
                    "the runtime stopped while it was set up, and its teardown did not end within {} s; it was not added",
                    STOP_TIMEOUT.as_secs()
                ))
                .in_stage(id.to_string(), Stage::Teardown),
            ),
        };
        let _ = reply.send(result);
    }

    /// Waits for every parked teardown (each until its own deadline, at most
    /// [`STOP_TIMEOUT`]) and answers it: a shutdown lets writers being removed finish.
    pub(super) fn finish_teardowns(&mut self) {
        for mut parked in std::mem::take(&mut self.pending.teardowns) {
            self.workers.join_by(&mut parked.entry, parked.deadline);
            self.finish_teardown(parked);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Start

    fn poll_start(&mut self, now: Instant) {
        let Some(start) = self.pending.start.as_mut() else {
            return;
        };
        let mut i = 0;
        while i < start.setting_up.len() {
            let id = &start.setting_up[i];
            let Some(entry) = self.graph.processor_mut(id) else {
                start.setting_up.swap_remove(i);
                continue;
            };
            let setup = match setup_report(entry) {
                SetupReport::Done(Ok(())) => Ok(()),
                SetupReport::Done(Err(e)) => {
                    self.workers.join(entry);
                    Err(e)
                }
                SetupReport::NotYet if start.deadline <= now && start.cut_short => {
                    self.workers.abandon(entry);
                    Err(StreamError::processor(
                        "the runtime shut down while it was being set up; its thread was abandoned",
                    ))
                }
                SetupReport::NotYet if start.deadline <= now => {
                    Err(self.workers.give_up_setup(entry, "is failed"))
                }
                SetupReport::NotYet => {
                    i += 1;
                    continue;
                }
            };
            match setup {
                Ok(()) => start.ready.push(id.clone()),
                Err(e) => entry.shared.fail(&self.workers.events, Stage::Setup, &e),
            }
            start.setting_up.swap_remove(i);
        }
        if start.setting_up.is_empty() {
            self.complete_start();
        }
    }

    /// Releases every processor of the start at once and answers the start requests.
    fn complete_start(&mut self) {
        let Some(start) = self.pending.start.take() else {
            return;
        };
        // Marked Running before the release, so that a start request is answered with every
        // processor `Running` and a failure in a first `process()` can only come after that.
        for id in &start.ready {
            if let Ok(entry) = self.graph.processor(id) {
                entry
                    .shared
                    .set_state(&self.workers.events, ProcessorStatus::Running);
                entry.shared.signal.release();
            }
        }
        self.workers
            .events
            .publish(RuntimeEventKind::RuntimeStarted);
        tracing::info!(processors = self.graph.processor_count(), "runtime started");
        for reply in start.replies {
            let _ = reply.send(CommandResult::Started);
        }
        // Ends reported while it started (a source whose setup failed) were not acted on.
        self.check_finished();
    }
}
