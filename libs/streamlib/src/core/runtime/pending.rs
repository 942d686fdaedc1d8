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
//!   ([`RuntimeLimits`](super::RuntimeLimits)) is abandoned and answered with the timeout.
//! - A **start** releases every processor at once when the last setup has reported or the
//!   shared deadline passed (the late ones fail), then publishes `runtime_started` and answers
//!   every start request that arrived meanwhile. A stop before then ends it with a conflict;
//!   its processors still in setup **wind down** in the background (below).
//! - A processor **winding down** was asked to stop while its setup ran: it stays in the graph
//!   (`pending` state) and the stop does not wait for it; its thread is joined once it ends. A
//!   setup still running at the start's deadline is abandoned like any overrun; a teardown
//!   that takes [`STOP_TIMEOUT`] more is abandoned too. A start meanwhile takes it in once it
//!   is back.
//! - A **removal** takes the processor out of the graph at once (links first) and asks it to
//!   stop; it is answered when the thread has ended (a writer's file is complete then), or
//!   after [`STOP_TIMEOUT`] with the thread abandoned. Its id stays reserved until then.

use std::time::Instant;

use tokio::sync::oneshot;

use super::events::RuntimeEventKind;
use super::lifecycle::ProcessorStatus;
use super::stream_runtime::StreamRuntime;
use super::worker::{STOP_TIMEOUT, Slot, WorkerHost, WorkerMsg};
use crate::core::error::{Stage, StreamError};
use crate::core::graph::{ProcessorEntry, ProcessorUniqueId};
use crate::core::service::command::CommandResult;

/// Everything parked on the runtime thread, waiting for processor threads.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) setups: Vec<PendingSetup>,
    pub(super) removals: Vec<PendingRemoval>,
    pub(super) start: Option<PendingStart>,
    pub(super) winding_down: Vec<WindingDown>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.setups.is_empty()
            && self.removals.is_empty()
            && self.start.is_none()
            && self.winding_down.is_empty()
    }

    /// Whether `id` is winding down (see the module docs).
    pub(super) fn is_winding_down(&self, id: &ProcessorUniqueId) -> bool {
        self.winding_down.iter().any(|w| w.id == *id)
    }

    /// Processor threads parked here outside the graph (they count against the limit).
    pub(super) fn threads_outside_graph(&self) -> usize {
        self.setups.len() + self.removals.len()
    }

    /// Whether `id` is reserved by a create or a removal in progress.
    pub(super) fn reserves(&self, id: &ProcessorUniqueId) -> bool {
        self.setups.iter().any(|p| p.id == *id) || self.removals.iter().any(|p| p.id == *id)
    }

    /// The earliest deadline of anything parked.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let setups = self.setups.iter().map(|p| p.deadline);
        let removals = self.removals.iter().map(|p| p.deadline);
        let start = self.start.iter().map(|s| s.deadline);
        let winding_down = self.winding_down.iter().map(WindingDown::next_deadline);
        setups
            .chain(removals)
            .chain(start)
            .chain(winding_down)
            .min()
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

/// One removal waiting for its processor's thread to end.
pub(super) struct PendingRemoval {
    pub(super) id: ProcessorUniqueId,
    /// The entry, out of the graph, its instance on the worker thread.
    pub(super) entry: ProcessorEntry,
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<CommandResult>,
}

/// A start waiting for its processors' setups.
pub(super) struct PendingStart {
    /// Processors whose setup has not reported yet.
    pub(super) setting_up: Vec<ProcessorUniqueId>,
    /// Processors set up, released together when `setting_up` is empty.
    pub(super) ready: Vec<ProcessorUniqueId>,
    pub(super) deadline: Instant,
    /// Every start request waiting (a second start joins the first).
    pub(super) replies: Vec<oneshot::Sender<CommandResult>>,
}

/// A processor of a start that a stop overtook while it set up (see the module docs).
pub(super) struct WindingDown {
    pub(super) id: ProcessorUniqueId,
    /// The start's setup deadline: a setup still running then is abandoned.
    setup_deadline: Instant,
    /// Its setup has reported.
    set_up: bool,
}

impl WindingDown {
    /// When it is given up on: at the setup deadline while it sets up, [`STOP_TIMEOUT`] after
    /// it while it tears down.
    fn next_deadline(&self) -> Instant {
        if self.set_up {
            self.setup_deadline + STOP_TIMEOUT
        } else {
            self.setup_deadline
        }
    }
}

/// How a worker's setup went, as far as can be told without waiting.
enum SetupReport {
    Done(crate::core::error::Result<()>),
    NotYet,
}

fn setup_report(entry: &ProcessorEntry) -> SetupReport {
    let Slot::Running(worker) = &entry.slot else {
        return SetupReport::Done(Err(StreamError::processor("the processor has no thread")));
    };
    match worker.messages.try_recv() {
        Ok(WorkerMsg::SetupDone(result)) => SetupReport::Done(result),
        Ok(WorkerMsg::Exited) | Err(flume::TryRecvError::Disconnected) => {
            SetupReport::Done(Err(StreamError::processor("its thread ended during setup")))
        }
        Err(flume::TryRecvError::Empty) => SetupReport::NotYet,
    }
}

impl StreamRuntime {
    /// Finishes whatever is parked whose workers have reported or whose deadline has passed,
    /// without waiting.
    pub(super) fn poll_pending(&mut self) {
        self.workers.reports.lower();
        let now = Instant::now();
        self.poll_setups(now);
        self.poll_removals(now);
        self.poll_winding_down(now);
        self.poll_start(now);
    }

    fn poll_setups(&mut self, now: Instant) {
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
    }

    /// Completes a pending create with its setup's result.
    fn finish_pending_setup(
        &mut self,
        parked: PendingSetup,
        setup: crate::core::error::Result<()>,
    ) {
        let PendingSetup {
            id,
            mut entry,
            reply,
            ..
        } = parked;
        if setup.is_err() {
            self.workers.join(&mut entry);
        }
        let result = self
            .finish_add(id, entry, setup)
            .map(CommandResult::ProcessorAdded);
        // The client may have given up (timeout); the processor stays added then.
        let _ = reply.send(result.unwrap_or_else(CommandResult::Error));
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
        let error = self.workers.give_up_setup(&mut entry);
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
    // Removals

    /// Parks the removal of `entry` (already out of the graph, asked to stop).
    pub(super) fn park_removal(
        &mut self,
        id: ProcessorUniqueId,
        entry: ProcessorEntry,
        reply: oneshot::Sender<CommandResult>,
    ) {
        self.pending.removals.push(PendingRemoval {
            id,
            entry,
            deadline: Instant::now() + STOP_TIMEOUT,
            reply,
        });
        self.poll_removals(Instant::now());
    }

    fn poll_removals(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.removals.len() {
            let parked = &self.pending.removals[i];
            let exited = match &parked.entry.slot {
                Slot::Running(worker) => WorkerHost::has_exited(worker),
                _ => true,
            };
            if exited || parked.deadline <= now {
                let parked = self.pending.removals.swap_remove(i);
                self.finish_removal(parked, exited);
            } else {
                i += 1;
            }
        }
    }

    /// Joins (or, past its deadline, abandons) a removed processor's thread and answers.
    fn finish_removal(&mut self, parked: PendingRemoval, exited: bool) {
        let PendingRemoval {
            id,
            mut entry,
            reply,
            ..
        } = parked;
        self.workers.collect(&mut entry, exited);
        self.removed(&id);
        let _ = reply.send(CommandResult::ProcessorRemoved);
    }

    /// Waits for every removal in progress (each until its own deadline, at most
    /// [`STOP_TIMEOUT`]) and answers it: a shutdown lets writers being removed finish.
    pub(super) fn finish_removals(&mut self) {
        for mut parked in std::mem::take(&mut self.pending.removals) {
            self.workers.join_by(&mut parked.entry, parked.deadline);
            self.removed(&parked.id);
            let _ = parked.reply.send(CommandResult::ProcessorRemoved);
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
            // Still winding down from an earlier start: set up once it is back.
            if self.pending.winding_down.iter().any(|w| w.id == *id) {
                i += 1;
                continue;
            }
            // Removed while it set up, or lost (its failure is reported): nothing to release.
            let Some(entry) = self
                .graph
                .processor_mut(id)
                .filter(|e| !matches!(e.slot, Slot::Lost))
            else {
                start.setting_up.swap_remove(i);
                continue;
            };
            let setup = match setup_report(entry) {
                SetupReport::Done(Ok(())) => Ok(()),
                SetupReport::Done(Err(e)) => {
                    self.workers.join(entry);
                    Err(e)
                }
                SetupReport::NotYet if start.deadline <= now => {
                    Err(self.workers.give_up_setup(entry))
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
    }

    /// Ends a start that a stop overtook: its requests are answered with a conflict, and its
    /// processors still in setup are asked to stop and wind down in the background (the stop
    /// does not wait for a setup; those set up are stopped like the others).
    pub(super) fn abort_start(&mut self) {
        let Some(start) = self.pending.start.take() else {
            return;
        };
        for id in &start.setting_up {
            if let Ok(entry) = self.graph.processor(id) {
                entry.shared.signal.request_stop();
                if !self.pending.is_winding_down(id) {
                    self.pending.winding_down.push(WindingDown {
                        id: id.clone(),
                        setup_deadline: start.deadline,
                        set_up: false,
                    });
                }
            }
        }
        for reply in start.replies {
            let error = StreamError::Conflict(
                "the runtime was stopped before its processors finished setting up".into(),
            );
            let _ = reply.send(CommandResult::Error(error));
        }
    }

    fn poll_winding_down(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.winding_down.len() {
            let winding = &mut self.pending.winding_down[i];
            let Some(entry) = self.graph.processor_mut(&winding.id) else {
                // Removed meanwhile: its removal waits for the thread.
                self.pending.winding_down.swap_remove(i);
                continue;
            };
            let Slot::Running(worker) = &entry.slot else {
                self.pending.winding_down.swap_remove(i);
                continue;
            };
            let mut exited = false;
            loop {
                match worker.messages.try_recv() {
                    Ok(WorkerMsg::SetupDone(result)) => {
                        winding.set_up = true;
                        if let Err(e) = result {
                            entry.shared.fail(&self.workers.events, Stage::Setup, &e);
                        }
                    }
                    Ok(WorkerMsg::Exited) | Err(flume::TryRecvError::Disconnected) => {
                        exited = true;
                        break;
                    }
                    Err(flume::TryRecvError::Empty) => break,
                }
            }
            if exited {
                self.workers.collect(entry, true);
            } else if !winding.set_up && now >= winding.setup_deadline {
                let error = self.workers.give_up_setup(entry);
                entry
                    .shared
                    .fail(&self.workers.events, Stage::Setup, &error);
            } else if now >= winding.next_deadline() {
                self.workers.collect(entry, false);
            } else {
                i += 1;
                continue;
            }
            let id = self.pending.winding_down.swap_remove(i).id;
            self.rejoin_start(&id);
        }
    }

    /// A processor back from winding down joins the start in progress, if it waits for it.
    fn rejoin_start(&mut self, id: &ProcessorUniqueId) {
        let Some(start) = self.pending.start.as_mut() else {
            return;
        };
        let Some(at) = start.setting_up.iter().position(|s| s == id) else {
            return;
        };
        let Some(entry) = self.graph.processor_mut(id) else {
            return;
        };
        if !matches!(entry.slot, Slot::Idle(_)) {
            // Lost: its failure is reported; nothing to set up.
            start.setting_up.swap_remove(at);
            return;
        }
        if let Err(e) = self.workers.spawn(id, entry) {
            entry.shared.fail(&self.workers.events, Stage::Setup, &e);
            start.setting_up.swap_remove(at);
        }
    }
}
