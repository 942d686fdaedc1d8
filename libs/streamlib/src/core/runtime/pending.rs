//! Processors added through the service layer whose `setup` is still running.
//!
//! A create request must not hold up the runtime thread while its processor sets up (a device
//! that takes seconds to open, a setup that hangs): the runtime spawns the processor's thread,
//! parks the request here, and goes on serving other commands. When the worker reports its
//! setup result the processor joins the graph (or not, on failure) and the request is answered;
//! a setup that overruns the setup timeout ([`RuntimeLimits`](super::RuntimeLimits)) is abandoned and answered with
//! the timeout. Until then the processor is not in the graph: its id is reserved, and other
//! requests do not see it.

use std::time::Instant;

use tokio::sync::oneshot;

use super::stream_runtime::StreamRuntime;
use super::worker::{Slot, Worker, WorkerMsg};
use crate::core::error::{Stage, StreamError};
use crate::core::graph::{ProcessorEntry, ProcessorUniqueId};
use crate::core::service::command::CommandResult;

/// One create request waiting for its processor's setup.
pub(super) struct PendingSetup {
    pub(super) id: ProcessorUniqueId,
    /// The entry, its instance on the worker thread.
    pub(super) entry: ProcessorEntry,
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<CommandResult>,
}

impl PendingSetup {
    /// The worker's message channel.
    pub(super) fn worker(&self) -> Option<&Worker> {
        match &self.entry.slot {
            Slot::Running(worker) => Some(worker),
            _ => None,
        }
    }
}

impl StreamRuntime {
    /// Finishes every pending setup whose worker has answered or whose deadline has passed,
    /// without waiting.
    pub(super) fn poll_pending_setups(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.pending.len() {
            let pending = &self.pending[i];
            let message = match pending.worker() {
                Some(worker) => match worker.messages.try_recv() {
                    Ok(message) => Some(Some(message)),
                    Err(flume::TryRecvError::Disconnected) => Some(None),
                    Err(flume::TryRecvError::Empty) => None,
                },
                None => Some(None),
            };
            match message {
                Some(message) => {
                    let pending = self.pending.swap_remove(i);
                    self.finish_pending(pending, message);
                }
                None if pending.deadline <= now => {
                    let pending = self.pending.swap_remove(i);
                    self.abandon_pending(pending);
                }
                None => i += 1,
            }
        }
    }

    /// The earliest deadline of a pending setup.
    pub(super) fn next_setup_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Completes a pending create with the worker's first message (`None`: the thread is gone).
    pub(super) fn finish_pending(&mut self, pending: PendingSetup, message: Option<WorkerMsg>) {
        let PendingSetup {
            id,
            mut entry,
            reply,
            ..
        } = pending;
        let setup = match message {
            Some(WorkerMsg::SetupDone(result)) => result,
            Some(WorkerMsg::Exited) | None => {
                Err(StreamError::processor("its thread ended during setup"))
            }
        };
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
    fn abandon_pending(&mut self, pending: PendingSetup) {
        let PendingSetup {
            id,
            mut entry,
            reply,
            ..
        } = pending;
        let error = self.workers.give_up_setup(&mut entry);
        tracing::warn!(processor = %id, "setup overran; the processor was not added");
        let _ = reply.send(CommandResult::Error(
            error.in_stage(id.to_string(), Stage::Setup),
        ));
    }

    /// Answers every pending create with `why`; their processors are asked to stop and their
    /// threads abandoned (never waited for: a hung setup must not hold up a shutdown).
    pub(super) fn refuse_pending_setups(&mut self, why: &str) {
        for mut pending in std::mem::take(&mut self.pending) {
            self.workers.abandon(&mut pending.entry);
            let error = StreamError::RuntimeUnavailable(format!(
                "{why} while processor '{}' was being set up",
                pending.id
            ));
            let _ = pending.reply.send(CommandResult::Error(error));
        }
    }
}
