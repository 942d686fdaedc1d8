//! `StreamRuntime`: the public API over the graph, and the lifecycle ordering (start, drain,
//! stop, shutdown). The graph itself is [`Graph`]; processor threads are driven through
//! [`WorkerHost`] (`worker.rs`); commands from the service layer are dispatched in
//! `commands.rs`.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::commands::QueuedCommand;
use super::events::{EventBus, RuntimeEvent, RuntimeEventKind};
use super::lifecycle::{ProcessorStatus, RuntimeStatus};
use super::limits::RuntimeLimits;
use super::main_thread::{self, MainThreadHandle, ShutdownHandle};
use super::os_signals::SignalWatcher;
use super::pending::{Pending, PendingStart};
use super::thread_role::{self, Role};
use super::worker::{GRAPH_STOP_TIMEOUT, Reports, STOP_TIMEOUT, Slot, WorkerHost};
use crate::core::error::{Result, Stage, StreamError};
use crate::core::files::FileAccess;
use crate::core::graph::{
    Graph, InputLinkPortRef, Link, LinkInfo, LinkUniqueId, OutputLinkPortRef, PortTarget,
    ProcessorEntry, ProcessorInfo, ProcessorUniqueId, RatesBasis, RuntimeState,
    check_unique_port_names,
};
use crate::core::links::LinkOptions;
use crate::core::metrics::{MetricsReport, StatsWindow};
use crate::core::processors::ProcessorSpec;
use crate::core::service::RuntimeService;

/// How long `stop()` lets queued frames flow downstream before stopping the readers.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A reader whose input links made no progress for this long is considered drained (it chose
/// not to read them), so stopping does not wait the whole `DRAIN_TIMEOUT` on it.
const DRAIN_STALL: Duration = Duration::from_millis(200);

static NEXT_RUNTIME_ID: AtomicU64 = AtomicU64::new(1);

/// How [`StreamRuntime::begin_add`] left a new processor.
pub(super) enum Begun {
    /// In the graph (nothing to set up until the runtime starts).
    Added(ProcessorUniqueId),
    /// On its thread, in `setup`; [`StreamRuntime::finish_add`] completes it.
    SettingUp(ProcessorUniqueId, Box<ProcessorEntry>),
}

/// The pipeline runtime.
///
/// Owns the graph and must stay on the thread that created it (normally the main thread, which
/// platform window and device APIs require); other threads drive it through
/// [`RuntimeService`]. Each processor runs on a thread of its own.
///
/// ```no_run
/// use streamlib::prelude::*;
///
/// let mut runtime = StreamRuntime::new()?;
/// let src = runtime.add_processor(PROCESSOR_REGISTRY.create("TestPatternProcessor", serde_json::json!({"width": 320}))?)?;
/// let sink = runtime.add_processor(PROCESSOR_REGISTRY.create("CountingSinkProcessor", serde_json::Value::Null)?)?;
/// runtime.connect(OutputLinkPortRef::new(src, "video"), InputLinkPortRef::new(sink, "video"))?;
/// runtime.run()?; // until Ctrl-C
/// # Ok::<(), streamlib::core::StreamError>(())
/// ```
pub struct StreamRuntime {
    status: RuntimeStatus,
    pub(super) graph: Graph,
    /// What the graph may spend.
    pub(super) limits: RuntimeLimits,
    /// Requests from the service layer waiting for processor threads (`pending.rs`): creates
    /// in setup, a start, removals in teardown.
    pub(super) pending: Pending,
    /// `graph_finished` was published for the graph as it is (cleared by a start, a new
    /// processor or a restart).
    pub(super) finished: bool,
    /// Samples of the graph's figures for rates over a recent window (`core::metrics`).
    stats: StatsWindow,

    /// Commands from every `RuntimeService` clone, each with its reply channel.
    pub(super) command_rx: flume::Receiver<QueuedCommand>,
    /// Starts, sets up, stops and joins processor threads; holds what each is given.
    pub(super) workers: WorkerHost,
    pub(super) shutdown: ShutdownHandle,
    pub(super) shutdown_rx: flume::Receiver<()>,
    /// Raised on drop so that services stop waiting for replies (see `RuntimeService::send`).
    closed: Arc<AtomicBool>,
    /// The runtime is bound to its thread (see the type docs).
    _not_send: PhantomData<*const ()>,
}

impl StreamRuntime {
    /// Creates an idle runtime with an empty graph and the default [`RuntimeLimits`], bound to
    /// the calling thread.
    pub fn new() -> Result<Self> {
        Self::with_limits(RuntimeLimits::default())
    }

    /// Creates an idle runtime with an empty graph and the given limits, bound to the calling
    /// thread.
    pub fn with_limits(limits: RuntimeLimits) -> Result<Self> {
        limits.validate()?;
        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        let (command_tx, command_rx) = flume::unbounded();
        let events = Arc::new(EventBus::new());
        let (main_task_tx, main_tasks) = flume::unbounded();
        let (shutdown_tx, shutdown_rx) = flume::bounded(1);
        let closed = Arc::new(AtomicBool::new(false));
        let hurried = Arc::new(AtomicBool::new(false));
        thread_role::set(id, Role::Main);
        Ok(Self {
            status: RuntimeStatus::Idle,
            graph: Graph::new(limits.max_queued_bytes(), limits.max_link_bytes()),
            limits,
            pending: Pending::default(),
            finished: false,
            stats: StatsWindow::default(),
            command_rx,
            workers: WorkerHost {
                runtime_id: id,
                service: RuntimeService::new(command_tx, events.sender(), id, closed.clone()),
                events,
                main_thread: MainThreadHandle {
                    tx: main_task_tx,
                    runtime_id: id,
                },
                main_tasks,
                setup_timeout: limits.setup_timeout(),
                abandoned: Default::default(),
                files: FileAccess::free(),
                reports: Reports::new(),
                ends: Reports::new(),
                hurried: hurried.clone(),
                on_hurry: Default::default(),
            },
            shutdown: ShutdownHandle {
                requested: Arc::new(AtomicBool::new(false)),
                hurried,
                tx: shutdown_tx,
            },
            shutdown_rx,
            closed,
            _not_send: PhantomData,
        })
    }

    /// The thread-safe async facade for other threads.
    pub fn runtime_service(&self) -> RuntimeService {
        self.workers.service.clone()
    }

    /// A handle that makes [`StreamRuntime::run`] return.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// A handle for running work on this runtime's thread.
    pub fn main_thread(&self) -> MainThreadHandle {
        self.workers.main_thread.clone()
    }

    /// Events from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.workers.service.subscribe_events()
    }

    /// Runtime lifecycle status.
    pub fn status(&self) -> RuntimeStatus {
        self.status
    }

    // ----------------------------------------------------------------------------------------
    // Graph changes

    /// Adds a processor. While running it is set up and started at once; if its setup fails it
    /// is not added and the error is returned.
    pub fn add_processor(&mut self, spec: ProcessorSpec) -> Result<ProcessorUniqueId> {
        match self.begin_add(spec)? {
            Begun::Added(id) => Ok(id),
            Begun::SettingUp(id, mut entry) => {
                let deadline = Instant::now() + self.workers.setup_timeout;
                self.workers
                    .await_setup(&mut entry, deadline)
                    .map_err(|e| e.in_stage(id.to_string(), Stage::Setup))?;
                Ok(self.finish_add(id, *entry))
            }
        }
    }

    /// Sets where processors may open files (default: [`FileAccess::free`]). Processors set
    /// up from now on get it; `streamlib serve` confines them to its media directory.
    pub fn set_file_access(&mut self, files: FileAccess) {
        self.workers.files = files;
    }

    /// Where processors may open files.
    pub fn file_access(&self) -> &FileAccess {
        &self.workers.files
    }

    /// The limits this runtime enforces.
    pub fn limits(&self) -> RuntimeLimits {
        self.limits
    }

    /// First half of adding a processor: checks it and the limits, reserves its id, and either
    /// adds it (nothing to set up now) or starts its setup on its thread.
    pub(super) fn begin_add(&mut self, spec: ProcessorSpec) -> Result<Begun> {
        let ProcessorSpec { node, id } = spec;
        node.validate()?;
        self.workers.reap_abandoned();
        // An abandoned thread of a processor still in the graph (lost at a start) counts once.
        let abandoned = self
            .workers
            .abandoned
            .borrow()
            .iter()
            .filter(|(id, _)| self.graph.processor(id).is_err())
            .count();
        let in_use =
            self.graph.processor_count() + self.pending.threads_outside_graph() + abandoned;
        if in_use >= self.limits.max_processors {
            return Err(StreamError::LimitReached {
                limit: "max_processors",
                message: format!(
                    "the runtime already has {in_use} processors (each on a thread of its own), its limit; remove some, or raise the limit (--max-processors, now {})",
                    self.limits.max_processors
                ),
            });
        }
        // Ids of creates still setting up, and of abandoned threads still running (their late
        // events would be taken for a new processor's), are taken too.
        let taken = |rt: &Self, candidate: &ProcessorUniqueId| {
            rt.pending.reserves(candidate) || rt.workers.is_abandoned(candidate)
        };
        if let Some(requested) = &id {
            if taken(self, &ProcessorUniqueId::new(requested.clone())) {
                return Err(StreamError::DuplicateProcessorId(requested.clone()));
            }
        }
        let id = loop {
            let candidate = self.graph.new_processor_id(id.clone(), node.type_name())?;
            if !taken(self, &candidate) {
                break candidate;
            }
        };
        check_unique_port_names(node.type_name(), &node.ports())?;
        let mut entry = ProcessorEntry::new(&id, node);

        let start_now = self.is_running() || entry.control_plane;
        if !start_now {
            self.insert_added(id.clone(), entry);
            return Ok(Begun::Added(id));
        }
        self.workers
            .spawn(&id, &mut entry)
            .map_err(|e| e.in_stage(id.to_string(), Stage::Setup))?;
        Ok(Begun::SettingUp(id, Box::new(entry)))
    }

    /// Second half of adding a processor whose setup succeeded: it joins the graph and, if set
    /// up and waiting (not back from a teardown), is released.
    pub(super) fn finish_add(
        &mut self,
        id: ProcessorUniqueId,
        entry: ProcessorEntry,
    ) -> ProcessorUniqueId {
        let waiting = entry.is_on_thread();
        let shared = entry.shared.clone();
        self.insert_added(id.clone(), entry);
        if waiting {
            shared.set_state(self.events(), ProcessorStatus::Running);
            shared.signal.release();
        }
        id
    }

    /// Whether a processor added now should run: the runtime runs (or is starting) and no stop
    /// is waiting its turn behind a start (`pending.rs`).
    pub(super) fn is_running(&self) -> bool {
        self.status == RuntimeStatus::Running && !self.pending.stop_deferred()
    }

    /// Puts a processor into the graph and announces it.
    pub(super) fn insert_added(&mut self, id: ProcessorUniqueId, entry: ProcessorEntry) {
        if !entry.control_plane {
            self.finished = false;
        }
        let processor_type = entry.type_name.to_string();
        self.graph.insert_processor(id.clone(), entry);
        self.events().publish(RuntimeEventKind::ProcessorAdded {
            processor_id: id.clone(),
            processor_type,
        });
        tracing::info!(processor = %id, "processor added");
    }

    /// Removes a processor: first its links, then the processor (stopped if running, waiting
    /// for its thread up to [`STOP_TIMEOUT`](super::STOP_TIMEOUT)).
    pub fn remove_processor(&mut self, id: &ProcessorUniqueId) -> Result<()> {
        if let Some(mut entry) = self.begin_remove(id)? {
            self.workers.join(&mut entry);
        }
        self.removed(id);
        Ok(())
    }

    /// First half of removing a processor: its links are removed, it leaves the graph and is
    /// asked to stop. Returns the entry if its thread is still to be joined.
    pub(super) fn begin_remove(
        &mut self,
        id: &ProcessorUniqueId,
    ) -> Result<Option<ProcessorEntry>> {
        self.graph.processor(id)?;
        for link_id in self.graph.links_of(id) {
            self.disconnect(&link_id)?;
        }
        let Some(entry) = self.graph.remove_processor(id) else {
            return Ok(None);
        };
        self.pending.forget(id);
        if !entry.is_on_thread() {
            return Ok(None);
        }
        entry.shared.signal.request_stop();
        Ok(Some(entry))
    }

    /// Announces a removal whose thread (if any) has been joined or abandoned.
    pub(super) fn removed(&self, id: &ProcessorUniqueId) {
        self.events().publish(RuntimeEventKind::ProcessorRemoved {
            processor_id: id.clone(),
        });
        tracing::info!(processor = %id, "processor removed");
    }

    /// Connects an output to an input with the frame type's default link options.
    pub fn connect(&mut self, from: OutputLinkPortRef, to: InputLinkPortRef) -> Result<Link> {
        self.connect_with(from, to, LinkOptions::default())
    }

    /// Connects an output to an input. The link is live at once: the next frame written to the
    /// output reaches it.
    pub fn connect_with(
        &mut self,
        from: OutputLinkPortRef,
        to: InputLinkPortRef,
        options: LinkOptions,
    ) -> Result<Link> {
        let link = self.graph.connect(from, to, options)?;
        self.events().publish(RuntimeEventKind::LinkCreated {
            link_id: link.id(),
            from: link.from().to_string(),
            to: link.to().to_string(),
        });
        tracing::info!(link = %link.id(), from = %link.from(), to = %link.to(), "link created");
        Ok(link)
    }

    /// Removes a link. Frames still queued in it are dropped.
    pub fn disconnect(&mut self, link_id: &LinkUniqueId) -> Result<()> {
        let entry = self.graph.remove_link(link_id)?;
        entry.link.detach();
        self.events().publish(RuntimeEventKind::LinkRemoved {
            link_id: link_id.clone(),
            from: entry.from.to_string(),
            to: entry.to.to_string(),
        });
        tracing::info!(link = %link_id, "link removed");
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Lifecycle

    /// Starts every processor: all are set up (in parallel, each on its thread, sharing one
    /// setup deadline), then all are released at once. A processor whose setup fails becomes
    /// `Failed`; the others run. Waits for the setups (the service layer's start does not: see
    /// `pending.rs`).
    pub fn start(&mut self) -> Result<()> {
        self.begin_start();
        self.finish_start_blocking();
        Ok(())
    }

    /// First half of a start: spawns every idle processor's thread, which sets up and then
    /// waits to be released; `poll_pending` releases them once every setup has reported.
    /// Nothing to do if the runtime is already running (or starting).
    pub(super) fn begin_start(&mut self) {
        if self.status == RuntimeStatus::Running {
            return;
        }
        self.reclaim_finished_workers();
        self.status = RuntimeStatus::Running;
        self.finished = false;
        let idle: Vec<ProcessorUniqueId> = self
            .graph
            .processors()
            .filter(|(_, e)| matches!(e.slot, Slot::Idle(_)))
            .map(|(id, _)| id.clone())
            .collect();
        let mut setting_up = Vec::new();
        for id in idle {
            let Some(entry) = self.graph.processor_mut(&id) else {
                continue;
            };
            if entry.shared.state().0 != ProcessorStatus::Pending {
                entry
                    .shared
                    .set_state(&self.workers.events, ProcessorStatus::Pending);
            }
            match self.workers.spawn(&id, entry) {
                Ok(()) => setting_up.push(id),
                Err(e) => {
                    entry.shared.fail(&self.workers.events, Stage::Setup, &e);
                    // Nothing will come from it this run.
                    entry.ports.end_outputs();
                }
            }
        }
        self.pending.start = Some(PendingStart {
            setting_up,
            ready: Vec::new(),
            deadline: Instant::now() + self.workers.setup_timeout,
            cut_short: false,
            replies: Vec::new(),
        });
        self.poll_pending();
    }

    /// Stops every processor except control-plane ones, sources first: each reader is stopped
    /// only after the frames queued for it have been processed (up to [`DRAIN_TIMEOUT`]), so a
    /// pipeline ends without losing what was already produced.
    pub fn stop(&mut self) -> Result<()> {
        if self.status != RuntimeStatus::Running {
            return Ok(());
        }
        // A start in progress completes first (the service layer defers a stop until then).
        self.finish_start_blocking();
        let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
        let order = self.graph.stop_order();
        // Sources first, all at once: in a large graph they would otherwise keep every core
        // busy while the ones before them are stopped in turn.
        for id in &order {
            if self.graph.links_into(id).is_empty() {
                if let Ok(entry) = self.graph.processor(id) {
                    entry.shared.signal.request_stop();
                }
            }
        }
        self.stop_in_order(&order, Some(drain_deadline));
        self.status = RuntimeStatus::Stopped;
        self.events().publish(RuntimeEventKind::RuntimeStopped);
        tracing::info!("runtime stopped");
        // Restarts in progress were stopped with the rest: answered now (left stopped), before
        // anything can start their processors again.
        self.poll_restarts(Instant::now());
        Ok(())
    }

    /// Stops everything, control-plane processors included. `run()` ends with this, and so
    /// does dropping the runtime.
    pub fn shutdown(&mut self) -> Result<()> {
        // A start in progress gets at most STOP_TIMEOUT more for its setups: a hung one must
        // not hold up a shutdown (those still running then are abandoned).
        self.cut_start_short(Instant::now() + STOP_TIMEOUT);
        self.stop()?;
        // Requests waiting for this thread would keep the API server's connections open while
        // it tries to stop: answer them now.
        self.refuse_queued_commands("the runtime is shutting down");
        self.refuse_pending_setups("the runtime is shutting down");
        self.refuse_pending_apply("the runtime is shutting down");
        self.refuse_deferred("the runtime is shutting down");
        self.finish_teardowns();
        let rest = self.graph.on_thread_newest_first();
        self.stop_in_order(&rest, None);
        Ok(())
    }

    /// Runs the runtime on this thread until shutdown is requested ([`ShutdownHandle`]) or the
    /// process gets SIGINT/SIGTERM; then stops every processor cleanly and returns.
    ///
    /// Starts the runtime first if needed. While waiting it uses no CPU: it sleeps until a
    /// command, main-thread work, a pending setup's result or deadline, or the shutdown request
    /// arrives, and handles each at once.
    ///
    /// A second SIGINT/SIGTERM hurries the shutdown ([`ShutdownHandle::hurry`]; the process
    /// exits after 10 s at the latest), a third exits the process at once. The handlers stay
    /// installed (and do nothing) after `run()` returns.
    pub fn run(&mut self) -> Result<()> {
        thread_role::set(self.workers.runtime_id, Role::Main);
        // A shutdown requested before run() (e.g. by a very short timer) is honoured at once:
        // the flag is only reset when run() returns.
        let signals = SignalWatcher::install(self.shutdown.clone())?;
        // Setups run while commands are served; the start completes in `poll_pending`.
        self.begin_start();
        tracing::info!("runtime running; waiting for commands");
        self.serve_until_shutdown();
        tracing::info!("shutting down");
        let result = self.shutdown();
        // Dropped only now, so a second Ctrl-C during a slow shutdown still exits at once.
        drop(signals);
        self.shutdown.requested.store(false, Ordering::Release);
        self.shutdown.hurried.store(false, Ordering::Release);
        while self.shutdown_rx.try_recv().is_ok() {}
        result
    }

    /// Publishes `graph_finished` once every processor of the running graph (but control-plane
    /// ones) has ended or failed, i.e. nothing left can produce. Called when a worker says its
    /// processor ended or failed.
    pub(super) fn check_finished(&mut self) {
        self.workers.ends.lower();
        // Not while a start or a create is in progress: what it sets up may produce.
        if self.finished
            || !self.is_running()
            || self.pending.start.is_some()
            || !self.pending.setups.is_empty()
            || !self.pending.restarts.is_empty()
            || self.pending.apply.is_some()
        {
            return;
        }
        let mut processors = self
            .graph
            .processors()
            .filter(|(_, e)| !e.control_plane)
            .peekable();
        if processors.peek().is_none() {
            return;
        }
        let done = processors
            .all(|(_, e)| e.shared.is_ended() || e.shared.state().0 == ProcessorStatus::Failed);
        if done {
            self.finished = true;
            self.events().publish(RuntimeEventKind::GraphFinished);
            tracing::info!("graph finished: every processor has ended or failed");
        }
    }

    // ----------------------------------------------------------------------------------------
    // Reports

    /// A snapshot of the whole runtime, consistent with the event sequence number it carries.
    pub fn state(&self) -> RuntimeState {
        let rates = self.rates_basis();
        self.events()
            .snapshot(|seq| self.graph.snapshot(self.status, seq, &rates))
    }

    /// One processor's details.
    pub fn processor_info(&self, id: &ProcessorUniqueId) -> Result<ProcessorInfo> {
        self.graph.processor_info(id, &self.rates_basis())
    }

    /// The state with rates, and the histograms of the same moment (a Prometheus scrape).
    pub(crate) fn metrics_report(&self) -> MetricsReport {
        let rates = self.rates_basis();
        let state = self
            .events()
            .snapshot(|seq| self.graph.snapshot(self.status, seq, &rates));
        MetricsReport {
            state,
            sample: rates.current,
        }
    }

    /// The figures now, noted in the window, and the window's start to compute rates against.
    pub(super) fn rates_basis(&self) -> RatesBasis {
        let current = Arc::new(self.graph.sample(Instant::now()));
        let baselines = self.stats.observe(&current);
        RatesBasis { current, baselines }
    }

    /// Every port in the graph that `id`'s port `port` could be linked with (its output to
    /// their inputs, their outputs to its input), each saying whether `connect` would make the
    /// link now and, if not, why: different frame types, an input already taken, the same
    /// processor.
    pub fn port_targets(&self, id: &ProcessorUniqueId, port: &str) -> Result<Vec<PortTarget>> {
        self.graph.port_targets(id, port)
    }

    /// Every link's details.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.graph.link_infos(&self.rates_basis())
    }

    // ----------------------------------------------------------------------------------------
    // Internals

    pub(super) fn events(&self) -> &EventBus {
        &self.workers.events
    }

    /// Stops `order` one by one (after its inputs drained, when `drain` gives a deadline). The
    /// joins share [`GRAPH_STOP_TIMEOUT`], counted from the first; once it has passed, every
    /// processor still running is asked to stop at once and they share one more
    /// [`STOP_TIMEOUT`](super::STOP_TIMEOUT), so the whole stop is bounded whatever the graph's
    /// size, and one slow processor does not cost the healthy ones after it.
    fn stop_in_order(&mut self, order: &[ProcessorUniqueId], drain: Option<Instant>) {
        let mut deadline: Option<Instant> = None;
        let mut rushed = false;
        // Should the stop be hurried while waiting for one of them, all are asked at once.
        *self.workers.on_hurry.borrow_mut() = order
            .iter()
            .filter_map(|id| self.graph.processor(id).ok())
            .map(|e| e.shared.signal.clone())
            .collect();
        for (i, id) in order.iter().enumerate() {
            if let Some(drain_deadline) = drain {
                if !rushed && !self.shutdown.is_hurried() {
                    self.wait_inputs_drained(id, drain_deadline);
                }
            }
            let now = Instant::now();
            let mut until = *deadline.get_or_insert(now + GRAPH_STOP_TIMEOUT);
            // Past the shared deadline, or told to hurry (a second Ctrl-C): everyone at once.
            if (now >= until || self.shutdown.is_hurried()) && !rushed {
                tracing::warn!(
                    remaining = order.len() - i,
                    "stopping is taking long; asking every remaining processor to stop at once"
                );
                for rest in &order[i..] {
                    if let Ok(entry) = self.graph.processor(rest) {
                        // Their queued frames are given up on too.
                        entry.shared.signal.cut_reads();
                    }
                }
                until = now + STOP_TIMEOUT;
                deadline = Some(until);
                rushed = true;
            }
            if let Some(entry) = self.graph.processor_mut(id) {
                self.workers.stop_by(entry, until);
            }
        }
        self.workers.on_hurry.borrow_mut().clear();
    }

    /// Joins threads of processors that failed while running, so the next start can retry them.
    fn reclaim_finished_workers(&mut self) {
        for id in self.graph.finished_workers() {
            if let Some(entry) = self.graph.processor_mut(&id) {
                self.workers.join(entry);
            }
        }
    }

    /// Lets the frames queued for `id` be processed before it is stopped: returns when its
    /// input links are empty, when it stops reading (no progress for `DRAIN_STALL`), when it is
    /// not running, or at `deadline`.
    fn wait_inputs_drained(&self, id: &ProcessorUniqueId, deadline: Instant) {
        let Ok(entry) = self.graph.processor(id) else {
            return;
        };
        let inputs = self.graph.links_into(id);
        let mut last_reads: u64 = u64::MAX;
        let mut last_progress = Instant::now();
        loop {
            let running = entry.shared.state().0 == ProcessorStatus::Running
                && matches!(&entry.slot, Slot::Running(w) if !w.is_finished());
            if !running || inputs.iter().all(|l| l.is_empty()) || self.shutdown.is_hurried() {
                return;
            }
            let reads: u64 = inputs.iter().map(|l| l.counters().read).sum();
            let now = Instant::now();
            if reads != last_reads {
                last_reads = reads;
                last_progress = now;
            } else if now.duration_since(last_progress) >= DRAIN_STALL {
                return;
            }
            if now >= deadline {
                tracing::warn!(processor = %id, "frames still queued at stop; dropping them");
                return;
            }
            // Short waits: draining normally takes microseconds to milliseconds.
            if let Ok(task) = self
                .workers
                .main_tasks
                .recv_timeout(Duration::from_millis(1))
            {
                main_thread::execute(task);
            }
        }
    }
}

impl Drop for StreamRuntime {
    fn drop(&mut self) {
        // Errors here have nowhere to go; shutdown already logs what it abandons.
        let _ = self.shutdown();
        // Answer every command still queued; later senders see `closed` (SeqCst on both sides).
        self.closed.store(true, Ordering::SeqCst);
        self.refuse_queued_commands("the runtime shut down");
        thread_role::clear(self.workers.runtime_id);
    }
}
