//! The thread that runs one processor: setup, the execution-mode loop, teardown. Panics and
//! errors are caught here and turn the processor `Failed`; they never reach other threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::shared::ProcessorShared;
use super::state::ProcessorState;
use super::thread_role::{self, Role};
use crate::core::context::RuntimeContext;
use crate::core::error::Result;
use crate::core::links::AnyInputPort;
use crate::core::processors::{DynProcessor, Execution};

/// Times a Reactive processor with nothing to do yields its core before it parks.
///
/// In a busy pipeline the next frame is usually one scheduler slice away: yielding lets the
/// writer run and hand it over without a futex sleep/wake pair per batch. Measured with
/// `cargo bench --bench links` on 2 cores / 12 threads: ~0.45M frames/s parking at once (or
/// after a busy spin), ~2.5M frames/s with 3 yields; idle latency is unchanged (~9 µs per hop)
/// and an idle processor still parks after three syscalls, so idle CPU stays ~0%.
const REACTIVE_YIELDS: u32 = 3;

/// What a worker thread tells the runtime thread.
pub(crate) enum WorkerMsg {
    /// `setup` finished (or failed, with the message).
    SetupDone(Result<(), String>),
    /// The thread is about to end (sent from a drop guard, so also on unexpected unwinding).
    Exited,
}

/// A running processor thread.
pub(crate) struct Worker {
    pub(crate) handle: JoinHandle<Option<Box<dyn DynProcessor>>>,
    pub(crate) messages: flume::Receiver<WorkerMsg>,
}

impl Worker {
    pub(crate) fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Starts a thread for `node`. On failure the node is handed back with the OS error.
pub(crate) fn spawn(
    node: Box<dyn DynProcessor>,
    ctx: RuntimeContext,
    runtime_id: u64,
) -> Result<Worker, (Box<dyn DynProcessor>, std::io::Error)> {
    let (node_tx, node_rx) = flume::bounded::<Box<dyn DynProcessor>>(1);
    let (msg_tx, msg_rx) = flume::unbounded();
    let name = format!("sl-{}", ctx.processor_id);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let _exit = ExitGuard(msg_tx.clone());
        // The runtime sends the node right after the spawn succeeds.
        let node = node_rx.recv().ok()?;
        Some(run_processor(node, &ctx, runtime_id, &msg_tx))
    });
    match spawned {
        Ok(handle) => {
            // The thread holds the receiver until it has the node; a send can only fail if the
            // thread died before receiving, and then the node comes back here.
            if let Err(flume::SendError(node)) = node_tx.send(node) {
                return Err((
                    node,
                    std::io::Error::other("processor thread ended at start"),
                ));
            }
            Ok(Worker {
                handle,
                messages: msg_rx,
            })
        }
        // The node is only sent after a successful spawn, so it is still in hand here.
        Err(e) => Err((node, e)),
    }
}

struct ExitGuard(flume::Sender<WorkerMsg>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        // The runtime may have stopped listening (processor abandoned); nothing to do then.
        let _ = self.0.send(WorkerMsg::Exited);
    }
}

fn run_processor(
    mut node: Box<dyn DynProcessor>,
    ctx: &RuntimeContext,
    runtime_id: u64,
    messages: &flume::Sender<WorkerMsg>,
) -> Box<dyn DynProcessor> {
    let shared = ctx.shared.clone();
    let bus = ctx.events.clone();
    let id = shared.id.clone();
    shared.signal.bind_current_thread();
    thread_role::set(runtime_id, Role::Lifecycle(id.clone()));

    let setup = guarded(|| node.setup(ctx));
    let setup_ok = setup.is_ok();
    // The runtime thread waits for this; if it gave up (timeout), nobody reads it.
    let _ = messages.send(WorkerMsg::SetupDone(setup));
    if !setup_ok {
        finish(&*node, &shared);
        return node;
    }

    // The runtime thread marks the processor Running just before releasing it.
    if shared.signal.wait_for_release() {
        thread_role::set(runtime_id, Role::Process(id.clone()));
        let outcome = run_loop(&mut *node, &shared);
        thread_role::set(runtime_id, Role::Lifecycle(id));
        if let Err(message) = outcome {
            shared.fail(&bus, "process", message);
        }
    }

    match guarded(|| node.teardown()) {
        Err(message) => shared.fail(&bus, "teardown", message),
        Ok(()) if shared.state().0 != ProcessorState::Failed => {
            shared.set_state(&bus, ProcessorState::Stopped)
        }
        Ok(()) => {}
    }
    finish(&*node, &shared);
    node
}

/// Marks the end of a run: writers into this processor stop waiting for it.
fn finish(node: &dyn DynProcessor, shared: &ProcessorShared) {
    shared.signal.deactivate();
    for input in &node.ports().inputs {
        input.set_reader_running(false);
    }
    shared.signal.unbind_thread();
}

/// Calls `process` per the execution mode until stopped or failed.
fn run_loop(node: &mut dyn DynProcessor, shared: &Arc<ProcessorShared>) -> Result<(), String> {
    let signal = &shared.signal;
    match node.execution() {
        Execution::Manual => {
            call_process(node, shared)?;
            while !signal.is_stopping() {
                std::thread::park();
            }
            Ok(())
        }
        execution @ Execution::Continuous { .. } => {
            let mut next = Instant::now();
            loop {
                if signal.is_stopping() {
                    return Ok(());
                }
                call_process(node, shared)?;
                if let Some(interval) = shared.interval().or(execution.interval()) {
                    next += interval;
                    let now = Instant::now();
                    // More than a whole period late (a stall): restart the schedule from now
                    // instead of firing a burst of catch-up calls.
                    if now > next + interval {
                        next = now;
                    }
                    if !signal.sleep_until(next) {
                        return Ok(());
                    }
                }
            }
        }
        Execution::Reactive => {
            let inputs = node.ports().inputs;
            if inputs.iter().any(|i| i.has_data()) {
                signal.set_pending();
            }
            loop {
                if signal.is_stopping() {
                    return Ok(());
                }
                if signal.take_pending() {
                    let before = reads(&inputs);
                    call_process(node, shared)?;
                    // A processor may take one frame per call; call again while it makes
                    // progress and frames remain (but not if it chose to leave them).
                    if reads(&inputs) != before && inputs.iter().any(|i| i.has_data()) {
                        signal.set_pending();
                    }
                    continue;
                }
                let mut yields = 0;
                while yields < REACTIVE_YIELDS && !signal.has_pending() && !signal.is_stopping() {
                    std::thread::yield_now();
                    yields += 1;
                }
                if !signal.has_pending() && !signal.is_stopping() {
                    std::thread::park();
                }
            }
        }
    }
}

fn reads(inputs: &[Arc<dyn AnyInputPort>]) -> u64 {
    inputs.iter().map(|i| i.read_count()).sum()
}

#[inline]
fn call_process(node: &mut dyn DynProcessor, shared: &ProcessorShared) -> Result<(), String> {
    let started = Instant::now();
    let result = guarded(|| node.process());
    shared.record_process(started.elapsed());
    result
}

/// Runs a lifecycle call, turning an error or a panic into a message.
fn guarded(f: impl FnOnce() -> Result<()>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("panicked: {}", panic_message(&*panic))),
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}
