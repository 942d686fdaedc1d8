//! The worker protocol, both ends: the thread that runs one processor (setup, the
//! execution-mode loop, teardown) and what the runtime thread does to start, set up, stop and
//! join it. Panics and errors are caught on the worker and turn the processor `Failed`; they
//! never reach other threads.
//!
//! The handshake: the runtime spawns the thread and hands it the instance; the thread runs
//! `setup` and reports [`WorkerMsg::SetupDone`]; the runtime releases it (`signal.release()`)
//! once every processor of a start is set up; on stop the runtime raises the stop flag and
//! waits for [`WorkerMsg::Exited`], then joins the thread and takes the instance back. While it
//! waits, the runtime thread keeps running main-thread work, which a setup may need.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::events::EventBus;
use super::lifecycle::ProcessorStatus;
use super::live::ConfigApplied;
use super::main_thread::{self, MainTask, MainThreadHandle};
use super::shared::ProcessorShared;
use super::thread_role::{self, Role};
use crate::core::context::RuntimeContext;
use crate::core::error::{Result, Stage, StreamError};
use crate::core::graph::{ProcessorEntry, ProcessorUniqueId};
use crate::core::links::AnyInputPort;
use crate::core::processors::{DynProcessor, Execution};
use crate::core::service::RuntimeService;

/// How long `start()` / `add_processor()` wait for one processor's `setup` by default
/// ([`RuntimeLimits::setup_timeout_ms`](super::RuntimeLimits::setup_timeout_ms) changes it).
pub const SETUP_TIMEOUT: Duration = Duration::from_millis(super::limits::DEFAULT_SETUP_TIMEOUT_MS);
/// How long stopping waits for one processor's thread to end before abandoning it.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long stopping a whole graph waits for processor threads, all together (after the
/// frames queued for them had their chance to drain): beyond it, the rest are asked to stop
/// and abandoned, so a stop or shutdown is bounded whatever the graph's size.
pub const GRAPH_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Times the runtime thread yields, checking again, before it sleeps: when it waits for a
/// worker (a new processor thread usually answers within microseconds) and after it handled a
/// command (the next one often follows at once). A sleep/wake pair costs tens of microseconds
/// on the development VM; only right after work, so an idle runtime still sleeps (0% CPU). The
/// measured effect on the command loop is mixed (BENCHMARKS.md, "What changed the figures").
pub(crate) const BUSY_YIELDS: u32 = 64;

/// Times a Reactive processor with nothing to do yields its core before it parks.
///
/// In a busy pipeline the next frame is usually one scheduler slice away: yielding lets the
/// writer run and hand it over without a futex sleep/wake pair per batch. Measured with
/// `cargo bench --bench links` on 2 cores / 12 threads: ~0.45M frames/s parking at once (or
/// after a busy spin), ~2.5M frames/s with 3 yields; idle latency is unchanged (~9 µs per hop)
/// and an idle processor still parks after three syscalls, so idle CPU stays ~0%.
const REACTIVE_YIELDS: u32 = 3;

/// What became of a create whose setup overran (see [`WorkerHost::give_up_setup`]).
pub(crate) const NOT_ADDED: &str = "was not added";

/// How often a wait for a thread checks whether the stop was hurried.
const HURRY_CHECK: Duration = Duration::from_millis(50);

/// A setup's result from the worker's first message (`None`: its channel closed).
pub(crate) fn setup_outcome(message: Option<WorkerMsg>) -> Result<()> {
    match message {
        Some(WorkerMsg::SetupDone(result)) => result,
        Some(WorkerMsg::Exited) | None => {
            Err(StreamError::processor("its thread ended during setup"))
        }
    }
}

/// What a worker thread tells the runtime thread.
pub(crate) enum WorkerMsg {
    /// `setup` finished (or failed, with the processor's error).
    SetupDone(Result<()>),
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

/// Where a processor instance is.
pub(crate) enum Slot {
    /// Here, not running.
    Idle(Box<dyn DynProcessor>),
    /// On its thread (which may have ended after a failure; it is joined on the next stop).
    Running(Worker),
    /// Its thread did not stop in time and was abandoned; the instance is gone.
    Lost,
}

/// The runtime thread's end of the protocol: what every processor thread is given (service,
/// events, main-thread handle) and the main-thread queue the runtime keeps serving while it
/// waits for one.
pub(crate) struct WorkerHost {
    pub(crate) runtime_id: u64,
    pub(crate) service: RuntimeService,
    pub(crate) events: Arc<EventBus>,
    pub(crate) main_thread: MainThreadHandle,
    /// Work posted to the runtime thread by processors (windows and other thread-bound APIs).
    pub(crate) main_tasks: flume::Receiver<MainTask>,
    /// How long a setup may take.
    pub(crate) setup_timeout: Duration,
    /// Threads given up on (a setup that overran, a stop that did not finish), joined once
    /// they end; until then they count against the processor limit.
    pub(crate) abandoned: std::cell::RefCell<Vec<(ProcessorUniqueId, Worker)>>,
    /// Where processors may open files.
    pub(crate) files: crate::core::files::FileAccess,
    /// Raised by a worker after each message it sends ([`Reports`]), so the runtime thread can
    /// wait on one channel for every processor it is waiting for, however many.
    pub(crate) reports: Reports,
    /// Raised by a worker when its processor's stream ended or it failed, so the runtime
    /// thread checks whether the whole graph has finished.
    pub(crate) ends: Reports,
    /// The shutdown's "hurry" flag (a second Ctrl-C), watched while waiting for a thread.
    pub(crate) hurried: Arc<std::sync::atomic::AtomicBool>,
    /// The processors a stop has yet to stop: when the stop is hurried while the runtime waits
    /// for one of them, all are asked at once (`wait_servicing`).
    pub(crate) on_hurry: std::cell::RefCell<Vec<Arc<super::ProcessorSignal>>>,
}

/// "A worker sent a message": a one-slot flag channel shared by every worker of a runtime.
///
/// A worker puts its message on its own channel first and then raises the flag; the runtime
/// lowers the flag before it looks at the workers' channels, so no message goes unnoticed. A
/// full slot already means "look", so a raise that finds it full is dropped.
pub(crate) struct Reports {
    pub(crate) raised: flume::Receiver<()>,
    raise: flume::Sender<()>,
}

impl Reports {
    pub(crate) fn new() -> Self {
        let (raise, raised) = flume::bounded(1);
        Self { raised, raise }
    }

    /// Lowers the flag: call before looking at the workers' channels.
    pub(crate) fn lower(&self) {
        while self.raised.try_recv().is_ok() {}
    }
}

/// A worker's end: its message channel and the runtime's [`Reports`] flags.
struct Reporter {
    messages: flume::Sender<WorkerMsg>,
    raise: flume::Sender<()>,
    ends: flume::Sender<()>,
}

impl Reporter {
    fn send(&self, message: WorkerMsg) {
        // The runtime may have stopped listening (processor abandoned); nothing to do then.
        let _ = self.messages.send(message);
        let _ = self.raise.try_send(());
    }

    /// The processor's stream ended, or it failed: the graph may have finished.
    fn ended(&self) {
        let _ = self.ends.try_send(());
    }
}

/// How a wait for a worker ended.
enum Waited<T> {
    Value(T),
    Closed,
    TimedOut,
}

impl WorkerHost {
    fn context_for(&self, id: &ProcessorUniqueId, shared: &Arc<ProcessorShared>) -> RuntimeContext {
        RuntimeContext {
            processor_id: id.clone(),
            runtime_service: self.service.clone(),
            shared: shared.clone(),
            main_thread: self.main_thread.clone(),
            events: self.events.clone(),
            files: self.files.noting_into(shared.files.clone()),
        }
    }

    /// Puts the instance on a new thread, which runs `setup` and then waits to be released.
    pub(crate) fn spawn(&self, id: &ProcessorUniqueId, entry: &mut ProcessorEntry) -> Result<()> {
        let node = match std::mem::replace(&mut entry.slot, Slot::Lost) {
            Slot::Idle(node) => node,
            other => {
                entry.slot = other;
                return Err(StreamError::processor("the processor is already running"));
            }
        };
        for input in &entry.ports.inputs {
            input.set_reader_running(true);
        }
        // A new run: its streams start again.
        for output in &entry.ports.outputs {
            output.begin_run(entry.shared.signal.clone());
        }
        entry.shared.reset_ended();
        entry.shared.files.clear();
        entry.shared.signal.prepare_run();
        // Open before the thread exists: a change posted from now on is for this run (taken
        // once it is released), never mistaken for one posted while a thread ends.
        entry.shared.live.open();
        let ctx = self.context_for(id, &entry.shared);
        let raise = (self.reports.raise.clone(), self.ends.raise.clone());
        match spawn(node, ctx, self.runtime_id, raise) {
            Ok(worker) => {
                entry.slot = Slot::Running(worker);
                Ok(())
            }
            Err((node, e)) => {
                entry.slot = Slot::Idle(node);
                // Nothing was posted yet: this is the runtime thread, which posts.
                let _ = entry.shared.live.close();
                Err(StreamError::io("cannot start its thread", e))
            }
        }
    }

    /// Waits (until `deadline`) for the worker's setup result. On failure the thread is joined
    /// and the instance is back in the entry, idle.
    pub(crate) fn await_setup(&self, entry: &mut ProcessorEntry, deadline: Instant) -> Result<()> {
        let Slot::Running(worker) = &entry.slot else {
            return Err(StreamError::processor("the processor has no thread"));
        };
        let outcome = match self.wait_servicing(&worker.messages, deadline) {
            Waited::Value(message) => setup_outcome(Some(message)),
            Waited::Closed => setup_outcome(None),
            Waited::TimedOut => return Err(self.give_up_setup(entry, NOT_ADDED)),
        };
        if outcome.is_err() {
            self.join(entry);
        }
        outcome
    }

    /// Gives up waiting for a setup that overran the setup timeout: the processor is asked to
    /// stop (a setup that returns later tears down at once), its producers stop waiting for it,
    /// and its thread goes to `abandoned`. Returns the error to report; `outcome` says what
    /// became of the processor.
    pub(crate) fn give_up_setup(&self, entry: &mut ProcessorEntry, outcome: &str) -> StreamError {
        self.abandon(entry);
        StreamError::Timeout(format!(
            "setup did not finish within {} ms (the runtime's --setup-timeout-ms); the processor was asked to stop and {outcome}",
            self.setup_timeout.as_millis()
        ))
    }

    /// Gives up on the processor's thread: asks it to stop, stops its producers waiting for it,
    /// and keeps the thread in `abandoned` (joined once it ends); the instance is lost.
    pub(crate) fn abandon(&self, entry: &mut ProcessorEntry) {
        // Nothing more will come from it: its readers' streams end (the stop below makes its
        // own `end()` calls do nothing from now on, so this comes first).
        entry.ports.end_outputs();
        let _ = self.ends.raise.try_send(());
        entry.shared.signal.request_stop();
        for input in &entry.ports.inputs {
            input.set_reader_running(false);
        }
        if let Some(change) = entry.shared.live.close() {
            change.answer(
                &self.events,
                Err(StreamError::processor(
                    "its thread was abandoned before it took the change",
                )),
            );
        }
        if let Slot::Running(worker) = std::mem::replace(&mut entry.slot, Slot::Lost) {
            self.abandoned
                .borrow_mut()
                .push((entry.shared.id.clone(), worker));
        }
    }

    /// Joins abandoned threads that have ended; returns how many are still running.
    pub(crate) fn reap_abandoned(&self) -> usize {
        let mut abandoned = self.abandoned.borrow_mut();
        let (ended, stuck): (Vec<_>, Vec<_>) = std::mem::take(&mut *abandoned)
            .into_iter()
            .partition(|(_, worker)| worker.is_finished());
        *abandoned = stuck;
        for (id, worker) in ended {
            if worker.handle.join().is_err() {
                tracing::debug!(processor = %id, "an abandoned thread panicked");
            }
        }
        abandoned.len()
    }

    /// Whether an abandoned thread still runs under `id`.
    pub(crate) fn is_abandoned(&self, id: &ProcessorUniqueId) -> bool {
        self.abandoned.borrow().iter().any(|(a, _)| a == id)
    }

    /// Asks the processor to stop and waits for its thread until `deadline`, at most
    /// [`STOP_TIMEOUT`] (stopping a whole graph shares one deadline, so shutdown stays bounded
    /// whatever the graph's size).
    pub(crate) fn stop_by(&self, entry: &mut ProcessorEntry, deadline: Instant) {
        if entry.is_on_thread() {
            entry.shared.signal.request_stop();
            self.join_by(entry, deadline.min(Instant::now() + STOP_TIMEOUT));
        }
    }

    /// Waits for the thread to end (at most [`STOP_TIMEOUT`]) and takes the instance back; a
    /// thread that does not end is abandoned and the processor marked failed.
    pub(crate) fn join(&self, entry: &mut ProcessorEntry) {
        self.join_by(entry, Instant::now() + STOP_TIMEOUT);
    }

    pub(crate) fn join_by(&self, entry: &mut ProcessorEntry, deadline: Instant) {
        let Slot::Running(worker) = &entry.slot else {
            return;
        };
        let exited = loop {
            match self.wait_servicing(&worker.messages, deadline) {
                // A setup that ended while it was being stopped (a start that a stop
                // overtook): its failure still counts.
                Waited::Value(WorkerMsg::SetupDone(Err(e))) => {
                    entry.shared.fail(&self.events, Stage::Setup, &e);
                    continue;
                }
                Waited::Value(WorkerMsg::SetupDone(Ok(()))) => continue,
                Waited::Value(WorkerMsg::Exited) | Waited::Closed => break true,
                Waited::TimedOut => break false,
            }
        };
        self.collect(entry, exited);
    }

    /// Whether the worker has said it is ending (without waiting). Consumes its messages.
    pub(crate) fn has_exited(worker: &Worker) -> bool {
        loop {
            match worker.messages.try_recv() {
                Ok(WorkerMsg::SetupDone(_)) => continue,
                Ok(WorkerMsg::Exited) | Err(flume::TryRecvError::Disconnected) => return true,
                Err(flume::TryRecvError::Empty) => return false,
            }
        }
    }

    /// Ends a wait for the processor's thread: if it `exited`, joins it (it is ending; this
    /// returns within microseconds) and takes the instance back; otherwise abandons it and
    /// marks the processor failed.
    pub(crate) fn collect(&self, entry: &mut ProcessorEntry, exited: bool) {
        let Slot::Running(worker) = std::mem::replace(&mut entry.slot, Slot::Lost) else {
            return;
        };
        if !exited {
            let error = StreamError::processor(format!(
                "did not stop in time (at most {}s each, {}s for a whole stop); its thread was abandoned",
                STOP_TIMEOUT.as_secs(),
                GRAPH_STOP_TIMEOUT.as_secs()
            ));
            entry.shared.fail(&self.events, Stage::Teardown, &error);
            entry.slot = Slot::Running(worker);
            self.abandon(entry);
            return;
        }
        match worker.handle.join() {
            Ok(Some(node)) => entry.slot = Slot::Idle(node),
            Ok(None) | Err(_) => {
                let error =
                    StreamError::processor("its thread ended without returning the processor");
                entry.shared.fail(&self.events, Stage::Teardown, &error);
            }
        }
    }

    /// Waits until a worker reports ([`Reports`]) or `deadline`, running main-thread work
    /// meanwhile. The caller lowers the flag and looks at the workers it waits for.
    pub(crate) fn wait_for_reports(&self, deadline: Instant) {
        let _ = self.wait_servicing(&self.reports.raised, deadline);
    }

    /// Waits for a message on `rx` until `deadline`, running main-thread work meanwhile (a
    /// processor's setup or teardown may be waiting for it).
    /// Asks every processor the stop has yet to stop to end at once, if the stop was hurried
    /// (once per stop).
    fn hurry_if_asked(&self) {
        if self.hurried.load(std::sync::atomic::Ordering::Acquire) {
            for signal in self.on_hurry.take() {
                signal.cut_reads();
            }
        }
    }

    fn wait_servicing<T>(&self, rx: &flume::Receiver<T>, deadline: Instant) -> Waited<T> {
        for _ in 0..BUSY_YIELDS {
            match rx.try_recv() {
                Ok(value) => return Waited::Value(value),
                Err(flume::TryRecvError::Disconnected) => return Waited::Closed,
                Err(flume::TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        loop {
            // In slices, so that a hurried stop is noticed while waiting.
            let slice = deadline.min(Instant::now() + HURRY_CHECK);
            let woke = flume::Selector::new()
                .recv(rx, |r| r.map(Some).map_err(|_| ()))
                .recv(&self.main_tasks, |r| {
                    if let Ok(task) = r {
                        main_thread::execute(task);
                    }
                    Ok(None)
                })
                .wait_deadline(slice);
            match woke {
                Ok(Ok(Some(value))) => return Waited::Value(value),
                Ok(Ok(None)) => continue,
                Ok(Err(())) => return Waited::Closed,
                Err(_) if Instant::now() >= deadline => return Waited::TimedOut,
                Err(_) => self.hurry_if_asked(),
            }
        }
    }
}

/// Starts a thread for `node`. On failure the node is handed back with the OS error.
fn spawn(
    node: Box<dyn DynProcessor>,
    ctx: RuntimeContext,
    runtime_id: u64,
    (raise, ends): (flume::Sender<()>, flume::Sender<()>),
) -> Result<Worker, (Box<dyn DynProcessor>, std::io::Error)> {
    let (node_tx, node_rx) = flume::bounded::<Box<dyn DynProcessor>>(1);
    let (msg_tx, msg_rx) = flume::unbounded();
    let name = format!("sl-{}", ctx.processor_id);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let reporter = Reporter {
            messages: msg_tx,
            raise,
            ends,
        };
        let exit = ExitGuard(reporter);
        // The runtime sends the node right after the spawn succeeds.
        let node = node_rx.recv().ok()?;
        Some(run_processor(node, &ctx, runtime_id, &exit.0))
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

/// Sends [`WorkerMsg::Exited`] when the thread's closure ends, however it ends.
struct ExitGuard(Reporter);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.send(WorkerMsg::Exited);
    }
}

fn run_processor(
    mut node: Box<dyn DynProcessor>,
    ctx: &RuntimeContext,
    runtime_id: u64,
    reporter: &Reporter,
) -> Box<dyn DynProcessor> {
    let shared = ctx.shared.clone();
    let bus = ctx.events.clone();
    let id = shared.id.clone();
    shared.signal.bind_current_thread();
    thread_role::set(runtime_id, Role::Lifecycle(id.clone()));

    let setup = guarded(|| node.setup(ctx));
    let setup_ok = setup.is_ok();
    // The runtime thread waits for this; if it gave up (timeout), nobody reads it.
    reporter.send(WorkerMsg::SetupDone(setup));
    if !setup_ok {
        // It produces nothing this run: its readers see their streams end.
        node.ports().end_outputs();
        reporter.ended();
        finish(&mut *node, &shared, &bus);
        return node;
    }

    // The runtime thread marks the processor Running just before releasing it.
    if shared.signal.wait_for_release() {
        thread_role::set(runtime_id, Role::Process(id.clone()));
        let outcome = run_loop(&mut *node, ctx, reporter);
        thread_role::set(runtime_id, Role::Lifecycle(id));
        if let Err(error) = outcome {
            shared.fail(&bus, Stage::Process, &error);
        }
    }

    let failed_before = shared.state().0 == ProcessorStatus::Failed;
    match guarded(|| node.teardown()) {
        Err(error) => shared.fail(&bus, Stage::Teardown, &error),
        Ok(()) if shared.state().0 != ProcessorStatus::Failed => {
            shared.set_state(&bus, ProcessorStatus::Stopped)
        }
        Ok(()) => {}
    }
    if failed_before {
        // It failed while running: after what its teardown flushed, its readers' streams end.
        node.ports().end_outputs();
        reporter.ended();
    }
    finish(&mut *node, &shared, &bus);
    node
}

/// Watches for the end of a processor's stream (see `Processor::on_end_of_stream`): checked
/// after a `process()` call only once an end was noted on the processor's signal (an input's
/// writer ended it, or the processor ended an output of its own), so it costs nothing before.
struct EndWatch {
    /// Shared with the Reactive loop, which reads the same list.
    inputs: Arc<[Arc<dyn AnyInputPort>]>,
    outputs: Vec<Arc<dyn crate::core::links::AnyOutputPort>>,
    /// Check after every call: an end was noted (or the run just began, when an input may
    /// have been ended before the thread started).
    watching: bool,
}

impl EndWatch {
    fn new(node: &dyn DynProcessor) -> Self {
        let ports = node.ports();
        Self {
            inputs: ports.inputs.into(),
            outputs: ports.outputs,
            watching: true,
        }
    }

    /// Whether the processor has ended. With inputs connected: when every one has ended (its
    /// last frame read), after which `on_end_of_stream` runs and every output is ended. With
    /// none: when the processor has ended every output itself (a finite source).
    fn check(
        &mut self,
        node: &mut dyn DynProcessor,
        signal: &super::ProcessorSignal,
    ) -> Result<bool> {
        if signal.take_end_check() {
            self.watching = true;
        }
        // A processor being stopped has not reached the end of its stream.
        if !self.watching || signal.is_stopping() {
            return Ok(false);
        }
        let mut connected = self.inputs.iter().filter(|i| i.is_connected()).peekable();
        if connected.peek().is_some() {
            if connected.clone().all(|i| i.is_ended()) {
                guarded(|| node.on_end_of_stream())?;
                for output in &self.outputs {
                    output.end();
                }
                return Ok(true);
            }
            if !connected.any(|i| i.end_marked()) {
                self.watching = false;
            }
            return Ok(false);
        }
        if !self.outputs.is_empty() && self.outputs.iter().all(|o| o.is_ended()) {
            return Ok(true);
        }
        if !self.outputs.iter().any(|o| o.is_ended()) {
            self.watching = false;
        }
        Ok(false)
    }
}

/// Marks the end of a run: writers into this processor stop waiting for it, and a config
/// change posted too late for the run is stored for the next one.
fn finish(node: &mut dyn DynProcessor, shared: &ProcessorShared, bus: &EventBus) {
    if let Some(change) = shared.live.close() {
        let stored = node
            .replace_config(change.config())
            .map(|()| ConfigApplied::Stored);
        change.answer(bus, stored);
    }
    shared.signal.deactivate();
    let ports = node.ports();
    for input in &ports.inputs {
        input.set_reader_running(false);
    }
    for output in &ports.outputs {
        output.writer_done();
    }
    shared.signal.unbind_thread();
}

/// Calls `process` per the execution mode until stopped or failed. When the processor's stream
/// ends ([`EndWatch`]) it is marked ended and waits for the stop without further calls.
fn run_loop(node: &mut dyn DynProcessor, ctx: &RuntimeContext, reporter: &Reporter) -> Result<()> {
    let shared = &ctx.shared;
    let bus = &*ctx.events;
    let signal = &shared.signal;
    let mut watch = EndWatch::new(node);
    let watch_inputs = watch.inputs.clone();
    let mut ended = |node: &mut dyn DynProcessor| -> Result<bool> {
        if !watch.check(node, signal)? {
            return Ok(false);
        }
        shared.set_ended(bus);
        reporter.ended();
        // It reads no more: frames sent to it from now on are dropped and counted, not kept
        // (and a backpressured writer does not wait for it).
        for input in watch.inputs.iter() {
            input.set_reader_running(false);
        }
        while !signal.is_stopping() {
            take_live_change(node, ctx)?;
            std::thread::park();
        }
        Ok(true)
    };
    match node.execution() {
        Execution::Manual => {
            call_process(node, shared)?;
            // The processor drives itself; an end (of its inputs, or of the outputs it ended
            // from `process()`) wakes this thread to check.
            while !signal.is_stopping() {
                if ended(node)? {
                    return Ok(());
                }
                take_live_change(node, ctx)?;
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
                take_live_change(node, ctx)?;
                call_process(node, shared)?;
                if ended(node)? {
                    return Ok(());
                }
                if let Some(interval) = shared.interval().or(execution.interval()) {
                    next += interval;
                    let now = Instant::now();
                    // More than a whole period late (a stall): restart the schedule from now
                    // instead of firing a burst of catch-up calls.
                    if now > next + interval {
                        next = now;
                    }
                    if !pace_until(node, ctx, &mut next, execution)? {
                        return Ok(());
                    }
                }
            }
        }
        Execution::Reactive => {
            // The ports the end-of-stream watch already holds (one list per run).
            let inputs = watch_inputs;
            if inputs.iter().any(|i| i.has_data()) {
                signal.set_pending();
            }
            loop {
                if signal.is_stopping() {
                    return Ok(());
                }
                take_live_change(node, ctx)?;
                if signal.take_pending() {
                    let before = reads(&inputs);
                    call_process(node, shared)?;
                    if ended(node)? {
                        return Ok(());
                    }
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

/// Sleeps until `deadline` between two calls of a paced Continuous processor, taking a live
/// config change as soon as one is posted (the post wakes the thread) rather than at the next
/// call; a change that shortens the interval brings the deadline forward. False if a stop was
/// requested first.
fn pace_until(
    node: &mut dyn DynProcessor,
    ctx: &RuntimeContext,
    deadline: &mut Instant,
    execution: Execution,
) -> Result<bool> {
    let shared = &ctx.shared;
    loop {
        if shared.signal.is_stopping() {
            return Ok(false);
        }
        if take_live_change(node, ctx)? {
            if let Some(interval) = shared.interval().or(execution.interval()) {
                *deadline = (*deadline).min(Instant::now() + interval);
            }
        }
        let now = Instant::now();
        if now >= *deadline {
            return Ok(true);
        }
        std::thread::park_timeout(*deadline - now);
    }
}

/// Hands a live config change posted for the processor (`live.rs`) to it, between two
/// `process()` calls, and answers the request; true if there was one. A processor that
/// cannot take it fails.
#[inline]
fn take_live_change(node: &mut dyn DynProcessor, ctx: &RuntimeContext) -> Result<bool> {
    let (shared, bus) = (&ctx.shared, &*ctx.events);
    let Some(change) = shared.live.take() else {
        return Ok(false);
    };
    match guarded(|| node.reconfigure(change.config(), ctx)) {
        Ok(()) => {
            change.answer(bus, Ok(ConfigApplied::Live));
            Ok(true)
        }
        Err(e) => {
            // The instance holds what the runtime reports as its config, taken or not: a
            // restart sets it up with it.
            let _ = node.replace_config(change.config());
            let error = StreamError::processor(format!("could not take its new config: {e}"));
            change.answer(
                bus,
                Err(error
                    .clone()
                    .in_stage(shared.id.to_string(), Stage::Process)),
            );
            Err(error)
        }
    }
}

fn reads(inputs: &[Arc<dyn AnyInputPort>]) -> u64 {
    inputs.iter().map(|i| i.read_count()).sum()
}

#[inline]
fn call_process(node: &mut dyn DynProcessor, shared: &ProcessorShared) -> Result<()> {
    let started = Instant::now();
    let result = guarded(|| node.process());
    shared.record_process(started.elapsed());
    result
}

/// Runs a lifecycle call, turning a panic into an error.
fn guarded(f: impl FnOnce() -> Result<()>) -> Result<()> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => Err(StreamError::processor(format!(
            "panicked: {}",
            panic_message(&*panic)
        ))),
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
