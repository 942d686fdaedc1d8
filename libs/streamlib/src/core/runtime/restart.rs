//! Restarting one processor: teardown, then setup again, with its links kept (its entry and
//! its ports never leave the graph). `POST /api/processors/{id}/restart` asks for it, and so
//! does a config change with non-live fields when the request allows a restart; a `Failed`
//! processor comes back this way.
//!
//! Like a create or a removal, it never holds up the runtime thread: the processor is asked to
//! stop and the request parked ([`PendingRestart`]); once its thread has ended (at most
//! [`STOP_TIMEOUT`]) the new config, if any, is stored in the instance and, if the runtime runs,
//! a new thread sets it up (at most the setup timeout) and is released at once. While it is
//! down, frames sent to it are dropped and counted like those sent to any stopped processor;
//! its readers' streams do not end. A setup that fails leaves it `Failed`, still linked. While
//! a start is in progress, restarts wait for it (they are deferred with starts and stops).
//!
//! A processor that failed ended its outputs, so the processors downstream of it may have
//! ended their stream too (a writer completed its file) and read nothing more. When asked
//! (`downstream`, HTTP `?downstream=true`), a restart that succeeds in a running graph then
//! restarts every processor downstream of it whose stream has ended (following links through
//! ended processors only), so the stream begins again for them too. It is not the default: a
//! writer restarted starts its file again, replacing the one it completed. Each restart
//! announces `processor_restarted`.

use std::time::Instant;

use tokio::sync::oneshot;

use super::events::RuntimeEventKind;
use super::lifecycle::ProcessorStatus;
use super::live::{ConfigApplied, ConfigUpdate, publish_changed};
use super::pending::setup_report_of;
use super::stream_runtime::StreamRuntime;
use super::worker::{STOP_TIMEOUT, Slot, WorkerHost};
use crate::core::error::{Stage, StreamError};
use crate::core::graph::ProcessorUniqueId;
use crate::core::service::command::CommandResult;

/// Where a restart is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RestartPhase {
    /// Asked to stop; waiting for its thread to end.
    Stopping,
    /// On a new thread, in `setup`.
    SettingUp,
}

/// One restart waiting for the processor's thread.
pub(super) struct PendingRestart {
    pub(super) id: ProcessorUniqueId,
    pub(super) phase: RestartPhase,
    pub(super) deadline: Instant,
    /// The config change that asked for it (stored before the new setup), if any.
    pub(super) update: Option<ConfigUpdate>,
    /// Restart the ended processors downstream once this one runs again.
    pub(super) downstream: bool,
    pub(super) reply: oneshot::Sender<CommandResult>,
}

impl StreamRuntime {
    /// Starts restarting `id` (module docs); `update` is the checked config change that needs
    /// it, if any; `downstream`: then restart the ended processors downstream of it. Answered
    /// at once when nothing has to be waited for.
    pub(super) fn begin_restart(
        &mut self,
        id: ProcessorUniqueId,
        update: Option<ConfigUpdate>,
        downstream: bool,
        reply: oneshot::Sender<CommandResult>,
    ) {
        self.restart_with(id, update, downstream, reply);
    }

    /// The processors downstream of `id` whose stream has ended, reached through ended ones.
    fn ended_downstream(&self, id: &ProcessorUniqueId) -> Vec<ProcessorUniqueId> {
        let mut found: Vec<ProcessorUniqueId> = Vec::new();
        let mut frontier = vec![id.clone()];
        while let Some(from) = frontier.pop() {
            for (_, link) in self.graph.links() {
                let to = &link.to.processor;
                if link.from.processor != from || *to == *id || found.contains(to) {
                    continue;
                }
                let ended = self
                    .graph
                    .processor(to)
                    .is_ok_and(|e| e.shared.is_ended() && !e.control_plane);
                if ended && !self.pending.is_restarting(to) {
                    found.push(to.clone());
                    frontier.push(to.clone());
                }
            }
        }
        found
    }

    /// Starts restarting `id` alone.
    pub(super) fn restart_one(
        &mut self,
        id: ProcessorUniqueId,
        update: Option<ConfigUpdate>,
        reply: oneshot::Sender<CommandResult>,
    ) {
        self.restart_with(id, update, false, reply);
    }

    fn restart_with(
        &mut self,
        id: ProcessorUniqueId,
        update: Option<ConfigUpdate>,
        downstream: bool,
        reply: oneshot::Sender<CommandResult>,
    ) {
        let refusal = match self.graph.processor_mut(&id) {
            None => Some(StreamError::ProcessorNotFound(id.to_string())),
            Some(entry) if entry.control_plane => Some(StreamError::Conflict(format!(
                "processor '{id}' is a control-plane processor (it serves this API); it cannot be restarted through itself: restart streamlib instead"
            ))),
            Some(_) if self.pending.is_restarting(&id) => Some(StreamError::Conflict(format!(
                "processor '{id}' is already restarting"
            ))),
            Some(entry) if matches!(entry.slot, Slot::Lost) => {
                Some(StreamError::Conflict(format!(
                    "processor '{id}' lost its instance (its thread did not stop in time and was abandoned); remove it and add it again"
                )))
            }
            Some(entry) => {
                // A thread that ended (after a failure) is joined: nothing to stop.
                if matches!(&entry.slot, Slot::Running(w) if w.is_finished()) {
                    self.workers.join(entry);
                }
                entry.shared.note_restart();
                None
            }
        };
        if let Some(error) = refusal {
            let _ = reply.send(CommandResult::Error(error));
            return;
        }
        let mut parked = PendingRestart {
            id,
            phase: RestartPhase::Stopping,
            deadline: Instant::now() + STOP_TIMEOUT,
            update,
            downstream,
            reply,
        };
        let on_thread = self
            .graph
            .processor(&parked.id)
            .is_ok_and(|e| e.is_on_thread());
        if on_thread {
            if let Some(entry) = self.graph.processor_mut(&parked.id) {
                entry.shared.signal.request_stop();
            }
            self.pending.restarts.push(parked);
            self.poll_restarts(Instant::now());
            return;
        }
        parked.phase = RestartPhase::SettingUp;
        self.set_up_again(parked);
    }

    /// Moves parked restarts on: joins threads that ended (or abandons those past their
    /// deadline), then sets them up again; answers those whose setup reported.
    pub(super) fn poll_restarts(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.restarts.len() {
            let parked = &self.pending.restarts[i];
            let Some(entry) = self.graph.processor_mut(&parked.id) else {
                let parked = self.pending.restarts.swap_remove(i);
                let error = StreamError::Conflict(format!(
                    "processor '{}' was removed while it restarted",
                    parked.id
                ));
                let _ = parked.reply.send(CommandResult::Error(error));
                continue;
            };
            match parked.phase {
                RestartPhase::Stopping => {
                    let exited = match &entry.slot {
                        Slot::Running(worker) => WorkerHost::has_exited(worker),
                        _ => true,
                    };
                    if !exited && parked.deadline > now {
                        i += 1;
                        continue;
                    }
                    self.workers.collect(entry, exited);
                    let mut parked = self.pending.restarts.swap_remove(i);
                    parked.phase = RestartPhase::SettingUp;
                    self.set_up_again(parked);
                }
                RestartPhase::SettingUp => {
                    let report = setup_report_of(entry);
                    let outcome = match report {
                        // A stop overtook it and its thread did not end in time.
                        None if matches!(entry.slot, Slot::Lost) => Err(StreamError::processor(
                            "a stop gave up on its thread while it was being set up again",
                        )),
                        // A stop overtook it: the thread was joined, the instance is back.
                        None if !entry.is_on_thread() => Ok(false),
                        None if parked.deadline <= now => {
                            Err(self.workers.give_up_setup(entry, "is failed"))
                        }
                        None => {
                            i += 1;
                            continue;
                        }
                        Some(Ok(())) => Ok(true),
                        Some(Err(e)) => {
                            self.workers.join(entry);
                            Err(e)
                        }
                    };
                    let parked = self.pending.restarts.swap_remove(i);
                    self.finish_restart(parked, outcome);
                }
            }
        }
    }

    /// The processor's thread has ended: stores the new config and, if the runtime runs,
    /// starts the new setup (parked); otherwise answers.
    fn set_up_again(&mut self, mut parked: PendingRestart) {
        let run = self.is_running();
        let stored = match self.graph.processor_mut(&parked.id) {
            None => Err(StreamError::ProcessorNotFound(parked.id.to_string())),
            // Its thread did not end in time: it was abandoned and the processor failed.
            Some(entry) if !matches!(entry.slot, Slot::Idle(_)) => {
                Err(StreamError::processor(format!(
                    "did not stop within {} s to restart; its thread was abandoned",
                    STOP_TIMEOUT.as_secs()
                ))
                .in_stage(parked.id.to_string(), Stage::Teardown))
            }
            Some(entry) => match (&parked.update, &mut entry.slot) {
                (Some(update), Slot::Idle(node)) => node
                    .replace_config(update.config.clone())
                    .map(|()| entry.config = update.config.clone())
                    .map(|()| true),
                _ => Ok(false),
            },
        };
        match stored {
            Err(e) => {
                let _ = parked.reply.send(CommandResult::Error(e));
                return;
            }
            Ok(true) => self.graph.note_config_change(),
            Ok(false) => {}
        }
        let Some(entry) = self.graph.processor_mut(&parked.id) else {
            return;
        };
        if !run {
            let id = parked.id.clone();
            self.finish_restart(parked, Ok(false));
            tracing::info!(processor = %id, "processor restarted (stopped: the runtime is not running)");
            return;
        }
        if entry.shared.state().0 != ProcessorStatus::Pending {
            entry
                .shared
                .set_state(&self.workers.events, ProcessorStatus::Pending);
        }
        match self.workers.spawn(&parked.id, entry) {
            Ok(()) => {
                // It may produce again: the graph is not finished (any more).
                self.finished = false;
                parked.deadline = Instant::now() + self.workers.setup_timeout;
                self.pending.restarts.push(parked);
                self.poll_restarts(Instant::now());
            }
            Err(e) => {
                entry.shared.fail(&self.workers.events, Stage::Setup, &e);
                self.finish_restart(parked, Err(e));
            }
        }
    }

    /// Answers a restart: `Ok(true)` set up (released now), `Ok(false)` left stopped (the
    /// runtime does not run), or the setup's error (the processor is `Failed`, still linked).
    fn finish_restart(&mut self, parked: PendingRestart, outcome: Result<bool, StreamError>) {
        let PendingRestart {
            id,
            update,
            downstream,
            reply,
            ..
        } = parked;
        let bus = &self.workers.events;
        let mut cascade = false;
        let result = match (outcome, self.graph.processor(&id)) {
            (_, Err(e)) => CommandResult::Error(e),
            (Err(e), Ok(entry)) => {
                if entry.shared.state().0 != ProcessorStatus::Failed {
                    entry.shared.fail(bus, Stage::Setup, &e);
                }
                // The new config is stored all the same (the instance has it): said so.
                if let Some(mut update) = update {
                    update.applied = ConfigApplied::Stored;
                    publish_changed(bus, &update);
                }
                CommandResult::Error(e.in_stage(id.to_string(), Stage::Setup))
            }
            (Ok(set_up), Ok(entry)) => {
                if set_up {
                    entry.shared.set_state(bus, ProcessorStatus::Running);
                    entry.shared.signal.release();
                    cascade = downstream;
                }
                bus.publish(RuntimeEventKind::ProcessorRestarted {
                    processor_id: id.clone(),
                });
                tracing::info!(processor = %id, "processor restarted");
                match update {
                    Some(mut update) => {
                        update.applied = if set_up {
                            ConfigApplied::Restarted
                        } else {
                            ConfigApplied::Stored
                        };
                        publish_changed(bus, &update);
                        CommandResult::ConfigUpdated(Box::new(update))
                    }
                    None => match self.graph.processor_info(&id, &self.rates_basis()) {
                        Ok(info) => CommandResult::Processor(Box::new(info)),
                        Err(e) => CommandResult::Error(e),
                    },
                }
            }
        };
        let _ = reply.send(result);
        if cascade {
            for ended in self.ended_downstream(&id) {
                // Nobody waits for these answers; their events tell.
                let (reply, _) = oneshot::channel();
                self.restart_one(ended, None, reply);
            }
        }
        if self.pending.restarts.is_empty() {
            // A processor that failed and was waiting to come back may have been all that kept
            // the graph from finishing, or from being finished.
            self.check_finished();
        }
    }
}
