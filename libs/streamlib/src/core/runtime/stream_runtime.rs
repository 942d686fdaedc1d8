//! `StreamRuntime`: the graph, its lifecycle, and the command loop.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::{broadcast, oneshot};

use super::events::{EventBus, RuntimeEvent, RuntimeEventKind};
use super::main_thread::{self, MainTask, MainThreadHandle, ShutdownHandle};
use super::shared::ProcessorShared;
use super::signals::SignalWatcher;
use super::state::{
    Link, LinkInfo, PortInfo, ProcessorInfo, ProcessorState, RuntimeState, RuntimeStatus,
};
use super::thread_role::{self, Role};
use super::worker::{self, Worker, WorkerMsg};
use crate::core::context::RuntimeContext;
use crate::core::error::{Result, StreamError};
use crate::core::frames::FrameType;
use crate::core::graph::{
    GraphFile, InputLinkPortRef, LinkUniqueId, OutputLinkPortRef, ProcessorUniqueId,
    id_prefix_for_type, random_suffix, validate_user_id,
};
use crate::core::links::{AnyLink, LinkOptions, PortSet};
use crate::core::processors::{DynProcessor, Execution, PROCESSOR_REGISTRY, ProcessorSpec};
use crate::core::service::RuntimeService;
use crate::core::service::command::{CommandResult, RuntimeCommand};

/// How long `start()` / `add_processor()` wait for one processor's `setup`.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long stopping waits for one processor's thread to end before abandoning it.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `stop()` lets queued frames flow downstream before stopping the readers.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// After handling work, the runtime thread yields this many times, checking for more, before it
/// sleeps, so a command arriving right after another is taken without a futex sleep/wake (two
/// wake-ups cost 31–60 µs on the development VM). Only after work, so an idle runtime still
/// sleeps (0% CPU). Measured effect is mixed; see BENCHMARKS.md ("What changed the figures").
const BUSY_YIELDS: u32 = 64;

/// A reader whose input links made no progress for this long is considered drained (it chose
/// not to read them), so stopping does not wait the whole `DRAIN_TIMEOUT` on it.
const DRAIN_STALL: Duration = Duration::from_millis(200);

static NEXT_RUNTIME_ID: AtomicU64 = AtomicU64::new(1);

/// One processor in the graph.
struct ProcessorEntry {
    type_name: &'static str,
    config: serde_json::Value,
    execution: Execution,
    control_plane: bool,
    /// Handles on the instance's ports, kept here so links can change while the instance is on
    /// its thread.
    ports: PortSet,
    shared: Arc<ProcessorShared>,
    slot: Slot,
}

/// Where the processor instance is.
enum Slot {
    /// Here, not running.
    Idle(Box<dyn DynProcessor>),
    /// On its thread (which may have ended after a failure; it is joined on the next stop).
    Running(Worker),
    /// Its thread did not stop in time and was abandoned; the instance is gone.
    Lost,
}

/// One link in the graph.
/// The runtime's shared plumbing: its id, service, events and main-thread queue.
struct RuntimeEnv {
    id: u64,
    runtime_service: RuntimeService,
    events: Arc<EventBus>,
    /// Work posted to this thread by processors (windows and other thread-bound APIs).
    main_task_rx: flume::Receiver<MainTask>,
    main_thread: MainThreadHandle,
}

struct LinkEntry {
    from: OutputLinkPortRef,
    to: InputLinkPortRef,
    frame_type: FrameType,
    link: Arc<dyn AnyLink>,
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
    processors: IndexMap<ProcessorUniqueId, ProcessorEntry>,
    links: IndexMap<LinkUniqueId, LinkEntry>,
    /// Commands from every `RuntimeService` clone, each with its reply channel.
    command_rx: flume::Receiver<(RuntimeCommand, oneshot::Sender<CommandResult>)>,
    /// What processor threads share with the runtime (kept apart from the graph maps so a
    /// processor entry can be borrowed mutably while these are used).
    env: RuntimeEnv,
    shutdown: ShutdownHandle,
    shutdown_rx: flume::Receiver<()>,
    /// Raised on drop so that services stop waiting for replies (see `RuntimeService::send`).
    closed: Arc<AtomicBool>,
    /// The runtime is bound to its thread (see the type docs).
    _not_send: PhantomData<*const ()>,
}

impl StreamRuntime {
    /// Create runtime with service layer enabled.
    pub fn new() -> Result<Self> {
        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        let (command_tx, command_rx) = flume::unbounded();
        let events = Arc::new(EventBus::new());
        let (main_task_tx, main_task_rx) = flume::unbounded();
        let (shutdown_tx, shutdown_rx) = flume::bounded(1);
        let closed = Arc::new(AtomicBool::new(false));
        thread_role::set(id, Role::Main);
        Ok(Self {
            status: RuntimeStatus::Idle,
            processors: IndexMap::new(),
            links: IndexMap::new(),
            command_rx,
            env: RuntimeEnv {
                id,
                runtime_service: RuntimeService::new(
                    command_tx,
                    events.sender(),
                    id,
                    closed.clone(),
                ),
                events,
                main_task_rx,
                main_thread: MainThreadHandle {
                    tx: main_task_tx,
                    runtime_id: id,
                },
            },
            shutdown: ShutdownHandle {
                requested: Arc::new(AtomicBool::new(false)),
                tx: shutdown_tx,
            },
            shutdown_rx,
            closed,
            _not_send: PhantomData,
        })
    }

    /// The thread-safe async facade for other threads.
    pub fn runtime_service(&self) -> RuntimeService {
        self.env.runtime_service.clone()
    }

    /// A handle that makes [`StreamRuntime::run`] return.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// A handle for running work on this runtime's thread.
    pub fn main_thread(&self) -> MainThreadHandle {
        self.env.main_thread.clone()
    }

    /// Events from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.env.runtime_service.subscribe_events()
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
        let ProcessorSpec { node, id } = spec;
        node.validate()?;
        let id = match id {
            Some(id) => {
                validate_user_id(&id)?;
                let id = ProcessorUniqueId::new(id);
                if self.processors.contains_key(&id) {
                    return Err(StreamError::DuplicateProcessorId(id.to_string()));
                }
                id
            }
            None => self.generate_processor_id(node.type_name()),
        };
        let ports = node.ports();
        check_unique_port_names(node.type_name(), &ports)?;

        let mut entry = ProcessorEntry {
            type_name: node.type_name(),
            config: node.config_json(),
            execution: node.execution(),
            control_plane: node.control_plane(),
            ports,
            shared: Arc::new(ProcessorShared::new(id.clone())),
            slot: Slot::Idle(node),
        };

        let start_now = self.status == RuntimeStatus::Running || entry.control_plane;
        if start_now {
            self.env
                .spawn_worker(&id, &mut entry)
                .and_then(|()| self.env.await_setup(&mut entry))
                .map_err(|message| StreamError::ProcessorFailed {
                    processor: id.to_string(),
                    stage: "setup",
                    message,
                })?;
        }
        let processor_type = entry.type_name.to_string();
        let shared = entry.shared.clone();
        self.processors.insert(id.clone(), entry);
        self.env.events.publish(RuntimeEventKind::ProcessorAdded {
            processor_id: id.clone(),
            processor_type,
        });
        if start_now {
            shared.set_state(&self.env.events, ProcessorState::Running);
            shared.signal.release();
        }
        tracing::info!(processor = %id, "processor added");
        Ok(id)
    }

    /// Removes a processor: first its links, then the processor (stopped if running).
    pub fn remove_processor(&mut self, id: &ProcessorUniqueId) -> Result<()> {
        if !self.processors.contains_key(id) {
            return Err(StreamError::ProcessorNotFound(id.to_string()));
        }
        let attached: Vec<LinkUniqueId> = self
            .links
            .iter()
            .filter(|(_, l)| l.from.processor == *id || l.to.processor == *id)
            .map(|(link_id, _)| link_id.clone())
            .collect();
        for link_id in attached {
            self.disconnect(&link_id)?;
        }
        if let Some(mut entry) = self.processors.shift_remove(id) {
            self.env.stop_worker(&mut entry);
        }
        self.env.events.publish(RuntimeEventKind::ProcessorRemoved {
            processor_id: id.clone(),
        });
        tracing::info!(processor = %id, "processor removed");
        Ok(())
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
        let source = self
            .processors
            .get(&from.processor)
            .ok_or_else(|| StreamError::ProcessorNotFound(from.processor.to_string()))?;
        let output =
            source
                .ports
                .output(&from.port)
                .cloned()
                .ok_or_else(|| StreamError::PortNotFound {
                    processor: from.processor.to_string(),
                    port: from.port.clone(),
                    direction: "output",
                    available: source
                        .ports
                        .outputs
                        .iter()
                        .map(|p| p.name().to_string())
                        .collect(),
                })?;
        let target = self
            .processors
            .get(&to.processor)
            .ok_or_else(|| StreamError::ProcessorNotFound(to.processor.to_string()))?;
        let input =
            target
                .ports
                .input(&to.port)
                .cloned()
                .ok_or_else(|| StreamError::PortNotFound {
                    processor: to.processor.to_string(),
                    port: to.port.clone(),
                    direction: "input",
                    available: target
                        .ports
                        .inputs
                        .iter()
                        .map(|p| p.name().to_string())
                        .collect(),
                })?;
        if output.frame_type() != input.frame_type() {
            return Err(StreamError::PortTypeMismatch {
                from: from.to_string(),
                to: to.to_string(),
                from_type: output.frame_type(),
                to_type: input.frame_type(),
            });
        }
        if let Some(existing) = input.connected_link() {
            return Err(StreamError::InputAlreadyConnected {
                input: to.to_string(),
                link: existing.to_string(),
            });
        }
        let (default_capacity, default_read_mode) = output.defaults();
        let resolved = options.resolve(default_capacity, default_read_mode)?;
        let reader_running = target.shared.signal.is_active();
        let reader_signal = target.shared.signal.clone();
        let frame_type = output.frame_type();

        let id = self.generate_link_id();
        let link = output.link_to(
            id.clone(),
            input,
            reader_signal.clone(),
            &resolved,
            reader_running,
        )?;
        // The reader's thread may have ended between the check and the attach; it clears the
        // flag before it looks at its links, so one of the two sees the other (SeqCst).
        if reader_running && !reader_signal.is_active() {
            link.set_reader_running(false);
        }
        self.links.insert(
            id.clone(),
            LinkEntry {
                from: from.clone(),
                to: to.clone(),
                frame_type,
                link,
            },
        );
        self.env.events.publish(RuntimeEventKind::LinkCreated {
            link_id: id.clone(),
            from: from.to_string(),
            to: to.to_string(),
        });
        tracing::info!(link = %id, %from, %to, "link created");
        Ok(Link {
            id,
            from,
            to,
            frame_type,
        })
    }

    /// Removes a link. Frames still queued in it are dropped.
    pub fn disconnect(&mut self, link_id: &LinkUniqueId) -> Result<()> {
        let entry = self
            .links
            .shift_remove(link_id)
            .ok_or_else(|| StreamError::LinkNotFound(link_id.to_string()))?;
        entry.link.detach();
        self.env.events.publish(RuntimeEventKind::LinkRemoved {
            link_id: link_id.clone(),
            from: entry.from.to_string(),
            to: entry.to.to_string(),
        });
        tracing::info!(link = %link_id, "link removed");
        Ok(())
    }

    /// Adds every processor and connection of a graph file, or nothing: if any entry fails,
    /// what was already added is removed again and the error names the entry.
    pub fn apply_graph(&mut self, graph: &GraphFile) -> Result<Vec<ProcessorUniqueId>> {
        let mut specs = Vec::with_capacity(graph.processors.len());
        for (i, p) in graph.processors.iter().enumerate() {
            let spec = PROCESSOR_REGISTRY
                .create(&p.processor_type, p.config.clone())
                .map_err(|e| graph_error(format!("processors[{i}] ('{}')", p.id), e))?;
            if graph.processors[..i].iter().any(|q| q.id == p.id) {
                return Err(StreamError::InvalidGraph(format!(
                    "processors[{i}]: id '{}' appears twice",
                    p.id
                )));
            }
            specs.push(spec.with_id(p.id.clone()));
        }
        let mut connections = Vec::with_capacity(graph.connections.len());
        for (i, c) in graph.connections.iter().enumerate() {
            let from = OutputLinkPortRef::parse(&c.from)
                .map_err(|e| graph_error(format!("connections[{i}].from"), e))?;
            let to = InputLinkPortRef::parse(&c.to)
                .map_err(|e| graph_error(format!("connections[{i}].to"), e))?;
            let options = LinkOptions {
                capacity: c.capacity,
                overflow: c.overflow,
                read_mode: c.read_mode,
            };
            connections.push((from, to, options));
        }

        let mut added = Vec::new();
        let mut result = Ok(());
        for (i, spec) in specs.into_iter().enumerate() {
            match self.add_processor(spec) {
                Ok(id) => added.push(id),
                Err(e) => {
                    result = Err(graph_error(
                        format!("processors[{i}] ('{}')", graph.processors[i].id),
                        e,
                    ));
                    break;
                }
            }
        }
        let mut linked = Vec::new();
        if result.is_ok() {
            for (i, (from, to, options)) in connections.into_iter().enumerate() {
                match self.connect_with(from, to, options) {
                    Ok(link) => linked.push(link.id()),
                    Err(e) => {
                        result = Err(graph_error(format!("connections[{i}]"), e));
                        break;
                    }
                }
            }
        }
        if let Err(e) = result {
            for link in linked.iter().rev() {
                // Also links between processors that existed before the graph was applied.
                let _ = self.disconnect(link);
            }
            for id in added.iter().rev() {
                // Removing also removes the links made so far; the ids are ours, so this only
                // fails if the processor is already gone.
                let _ = self.remove_processor(id);
            }
            return Err(e);
        }
        Ok(added)
    }

    // ----------------------------------------------------------------------------------------
    // Lifecycle

    /// Starts every processor: all are set up (in parallel, each on its thread), then all are
    /// released at once. A processor whose setup fails becomes `Failed`; the others run.
    pub fn start(&mut self) -> Result<()> {
        if self.status == RuntimeStatus::Running {
            return Ok(());
        }
        self.reclaim_finished_workers();
        self.status = RuntimeStatus::Running;
        let env = &self.env;
        let mut launched = Vec::new();
        for (id, entry) in self.processors.iter_mut() {
            if !matches!(entry.slot, Slot::Idle(_)) {
                continue;
            }
            match env.spawn_worker(id, entry) {
                Ok(()) => launched.push(id.clone()),
                Err(message) => entry.shared.fail(&env.events, "setup", message),
            }
        }
        // All setups run in parallel; collect them, then release everyone at once.
        let mut ready = Vec::new();
        for id in launched {
            let Some(entry) = self.processors.get_mut(&id) else {
                continue;
            };
            match env.await_setup(entry) {
                Ok(()) => ready.push(entry.shared.clone()),
                Err(message) => entry.shared.fail(&env.events, "setup", message),
            }
        }
        // Published here, before the release, so that `start()` returns with every processor
        // `Running` and a failure in its first `process()` can only come after this event.
        for shared in ready {
            shared.set_state(&env.events, ProcessorState::Running);
            shared.signal.release();
        }
        self.env.events.publish(RuntimeEventKind::RuntimeStarted);
        tracing::info!(processors = self.processors.len(), "runtime started");
        Ok(())
    }

    /// Stops every processor except control-plane ones, sources first: each reader is stopped
    /// only after the frames queued for it have been processed (up to [`DRAIN_TIMEOUT`]), so a
    /// pipeline ends without losing what was already produced.
    pub fn stop(&mut self) -> Result<()> {
        if self.status != RuntimeStatus::Running {
            return Ok(());
        }
        let order = self.stop_order();
        let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
        for id in order {
            self.wait_inputs_drained(&id, drain_deadline);
            if let Some(entry) = self.processors.get_mut(&id) {
                self.env.stop_worker(entry);
            }
        }
        self.status = RuntimeStatus::Stopped;
        self.env.events.publish(RuntimeEventKind::RuntimeStopped);
        tracing::info!("runtime stopped");
        Ok(())
    }

    /// Stops everything, control-plane processors included. `run()` ends with this, and so
    /// does dropping the runtime.
    pub fn shutdown(&mut self) -> Result<()> {
        self.stop()?;
        // Requests waiting for this thread would keep the API server's connections open while
        // it tries to stop: answer them now.
        self.refuse_queued_commands("the runtime is shutting down");
        let control: Vec<ProcessorUniqueId> = self
            .processors
            .iter()
            .rev()
            .filter(|(_, e)| matches!(e.slot, Slot::Running(_)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in control {
            if let Some(entry) = self.processors.get_mut(&id) {
                self.env.stop_worker(entry);
            }
        }
        Ok(())
    }

    /// Runs the runtime on this thread until shutdown is requested ([`ShutdownHandle`]) or the
    /// process gets SIGINT/SIGTERM; then stops every processor cleanly and returns.
    ///
    /// Starts the runtime first if needed. While waiting it uses no CPU: it sleeps until a
    /// command, main-thread work or the shutdown request arrives, and handles each at once.
    ///
    /// Note: SIGINT/SIGTERM handlers stay installed (and do nothing) after `run()` returns; a
    /// second signal during shutdown exits the process at once.
    pub fn run(&mut self) -> Result<()> {
        thread_role::set(self.env.id, Role::Main);
        // A shutdown requested before run() (e.g. by a very short timer) is honoured at once:
        // the flag is only reset when run() returns.
        let signals = SignalWatcher::install(self.shutdown.clone())?;
        self.start()?;
        tracing::info!("runtime running; waiting for commands");
        'serve: while !self.shutdown.is_requested() {
            let mut wake = self.next_wake();
            let mut yields = 0;
            // Reads share a snapshot only if they were already queued when it was taken and no
            // event has been published since: each then sees every change made before its
            // request. Any other work clears it.
            let mut shared_state: Option<(Arc<RuntimeState>, usize)> = None;
            loop {
                match wake {
                    Wake::Command(RuntimeCommand::GetState, reply) => {
                        let seq_now = self.env.events.snapshot(|seq| seq);
                        let state = match shared_state.take() {
                            Some((state, queued_before))
                                if queued_before > 0 && state.seq == seq_now =>
                            {
                                shared_state = Some((state.clone(), queued_before - 1));
                                state
                            }
                            _ => {
                                let state = Arc::new(self.state());
                                shared_state = Some((state.clone(), self.command_rx.len()));
                                state
                            }
                        };
                        // The caller may have given up (timeout, dropped future); nothing to do.
                        let _ = reply.send(CommandResult::State(state));
                    }
                    Wake::Command(command, reply) => {
                        shared_state = None;
                        let result = self.execute_command(command);
                        // The caller may have given up (timeout, dropped future); nothing to do.
                        let _ = reply.send(result);
                    }
                    Wake::Task(task) => {
                        shared_state = None;
                        main_thread::execute(task);
                    }
                    Wake::Shutdown => break 'serve,
                }
                // Drain what is queued, then stay responsive for a moment before sleeping.
                wake = loop {
                    if let Some(next) = self.try_next_wake() {
                        yields = 0;
                        break next;
                    }
                    if yields >= BUSY_YIELDS || self.shutdown.is_requested() {
                        continue 'serve;
                    }
                    // Time passes while yielding: the next read gets a fresh snapshot.
                    shared_state = None;
                    yields += 1;
                    std::thread::yield_now();
                };
            }
        }
        tracing::info!("shutting down");
        let result = self.shutdown();
        // Dropped only now, so a second Ctrl-C during a slow shutdown still exits at once.
        drop(signals);
        self.shutdown.requested.store(false, Ordering::Release);
        while self.shutdown_rx.try_recv().is_ok() {}
        result
    }

    /// Poll and execute pending commands. Called from main thread event loop.
    pub fn poll_commands(&mut self) {
        while let Ok((command, response_tx)) = self.command_rx.try_recv() {
            let result = self.execute_command(command);
            // The caller may have given up (timeout, dropped future); nothing to do.
            let _ = response_tx.send(result);
        }
    }

    /// Answers every queued command with `runtime_unavailable` without executing it.
    fn refuse_queued_commands(&self, why: &str) {
        while let Ok((command, reply)) = self.command_rx.try_recv() {
            let error = StreamError::RuntimeUnavailable(format!(
                "{why} before executing {}",
                command.name()
            ));
            // The caller may be gone too; nothing to do then.
            let _ = reply.send(CommandResult::Error(error));
        }
    }

    /// Runs work other threads posted to this thread, without waiting for more.
    pub fn poll_main_thread_tasks(&mut self) {
        while let Ok(task) = self.env.main_task_rx.try_recv() {
            main_thread::execute(task);
        }
    }

    fn execute_command(&mut self, command: RuntimeCommand) -> CommandResult {
        let name = command.name();
        let result = match command {
            RuntimeCommand::AddProcessor { spec } => {
                self.add_processor(spec).map(CommandResult::ProcessorAdded)
            }
            RuntimeCommand::RemoveProcessor { id } => self
                .remove_processor(&id)
                .map(|()| CommandResult::ProcessorRemoved),
            RuntimeCommand::Connect { from, to, options } => self
                .connect_with(from, to, options)
                .map(|link| CommandResult::Connected(link.id())),
            RuntimeCommand::Disconnect { link_id } => self
                .disconnect(&link_id)
                .map(|()| CommandResult::Disconnected),
            RuntimeCommand::Start => self.start().map(|()| CommandResult::Started),
            RuntimeCommand::Stop => self.stop().map(|()| CommandResult::Stopped),
            RuntimeCommand::GetState => Ok(CommandResult::State(Arc::new(self.state()))),
            RuntimeCommand::GetProcessor { id } => self
                .processor_info(&id)
                .map(|info| CommandResult::Processor(Box::new(info))),
        };
        result.unwrap_or_else(|e| {
            tracing::debug!(command = name, error = %e, "command failed");
            CommandResult::Error(e)
        })
    }

    // ----------------------------------------------------------------------------------------
    // Reports

    /// A snapshot of the whole runtime, consistent with the event sequence number it carries.
    pub fn state(&self) -> RuntimeState {
        self.env.events.snapshot(|seq| {
            let processors: Vec<ProcessorInfo> = self
                .processors
                .iter()
                .map(|(id, e)| self.info_of(id, e))
                .collect();
            let links: Vec<LinkInfo> = self.links.iter().map(|(id, l)| link_info(id, l)).collect();
            RuntimeState {
                status: self.status,
                seq,
                processor_count: processors.len(),
                link_count: links.len(),
                processors,
                links,
            }
        })
    }

    /// One processor's details.
    pub fn processor_info(&self, id: &ProcessorUniqueId) -> Result<ProcessorInfo> {
        self.processors
            .get(id)
            .map(|e| self.info_of(id, e))
            .ok_or_else(|| StreamError::ProcessorNotFound(id.to_string()))
    }

    /// Every link's details.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.links.iter().map(|(id, l)| link_info(id, l)).collect()
    }

    fn info_of(&self, id: &ProcessorUniqueId, e: &ProcessorEntry) -> ProcessorInfo {
        let (state, error) = e.shared.state();
        let inputs = e
            .ports
            .inputs
            .iter()
            .map(|p| PortInfo {
                name: p.name().to_string(),
                frame_type: p.frame_type(),
                description: p.description().to_string(),
                links: p.connected_link().into_iter().collect(),
            })
            .collect();
        let outputs = e
            .ports
            .outputs
            .iter()
            .map(|p| PortInfo {
                name: p.name().to_string(),
                frame_type: p.frame_type(),
                description: p.description().to_string(),
                links: self
                    .links
                    .iter()
                    .filter(|(_, l)| l.from.processor == *id && l.from.port == p.name())
                    .map(|(link_id, _)| link_id.clone())
                    .collect(),
            })
            .collect();
        ProcessorInfo {
            id: id.clone(),
            processor_type: e.type_name.to_string(),
            config: e.config.clone(),
            state,
            error,
            execution: e.execution,
            control_plane: e.control_plane,
            inputs,
            outputs,
            counters: e.shared.counters(),
            metrics: e.shared.metrics(),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Internals

    fn generate_processor_id(&self, type_name: &str) -> ProcessorUniqueId {
        let prefix = id_prefix_for_type(type_name);
        loop {
            let id = ProcessorUniqueId::new(format!("{prefix}-{}", random_suffix()));
            if !self.processors.contains_key(&id) {
                return id;
            }
        }
    }

    fn generate_link_id(&self) -> LinkUniqueId {
        loop {
            let id = LinkUniqueId::new(format!("link-{}", random_suffix()));
            if !self.links.contains_key(&id) {
                return id;
            }
        }
    }

    /// Joins threads of processors that failed while running, so the next start can retry them.
    fn reclaim_finished_workers(&mut self) {
        let finished: Vec<ProcessorUniqueId> = self
            .processors
            .iter()
            .filter(|(_, e)| matches!(&e.slot, Slot::Running(w) if w.is_finished()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in finished {
            if let Some(entry) = self.processors.get_mut(&id) {
                self.env.join_worker(entry);
            }
        }
    }

    /// Running non-control-plane processors, upstream before downstream (cycles last).
    fn stop_order(&self) -> Vec<ProcessorUniqueId> {
        let candidates: Vec<&ProcessorUniqueId> = self
            .processors
            .iter()
            .filter(|(_, e)| !e.control_plane && matches!(e.slot, Slot::Running(_)))
            .map(|(id, _)| id)
            .collect();
        let mut indegree: IndexMap<&ProcessorUniqueId, usize> =
            candidates.iter().map(|id| (*id, 0)).collect();
        for l in self.links.values() {
            if indegree.contains_key(&l.from.processor) {
                if let Some(d) = indegree.get_mut(&l.to.processor) {
                    *d += 1;
                }
            }
        }
        let mut order = Vec::with_capacity(candidates.len());
        let mut ready: Vec<&ProcessorUniqueId> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(id, _)| *id)
            .collect();
        while let Some(id) = ready.pop() {
            order.push(id.clone());
            indegree.shift_remove(id);
            for l in self.links.values().filter(|l| l.from.processor == *id) {
                if let Some(d) = indegree.get_mut(&l.to.processor) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(&l.to.processor);
                    }
                }
            }
        }
        order.extend(indegree.keys().map(|id| (*id).clone()));
        order
    }

    /// Lets the frames queued for `id` be processed before it is stopped: returns when its
    /// input links are empty, when it stops reading (no progress for `DRAIN_STALL`), when it is
    /// not running, or at `deadline`.
    fn wait_inputs_drained(&self, id: &ProcessorUniqueId, deadline: Instant) {
        let Some(entry) = self.processors.get(id) else {
            return;
        };
        let inputs: Vec<&Arc<dyn AnyLink>> = self
            .links
            .values()
            .filter(|l| l.to.processor == *id)
            .map(|l| &l.link)
            .collect();
        let mut last_reads: u64 = u64::MAX;
        let mut last_progress = Instant::now();
        loop {
            let running = entry.shared.state().0 == ProcessorState::Running
                && matches!(&entry.slot, Slot::Running(w) if !w.is_finished());
            if !running || inputs.iter().all(|l| l.is_empty()) {
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
            if let Ok(task) = self.env.main_task_rx.recv_timeout(Duration::from_millis(1)) {
                main_thread::execute(task);
            }
        }
    }

    /// The next command, main-thread task or shutdown request, if one is already queued.
    fn try_next_wake(&self) -> Option<Wake> {
        if self.shutdown_rx.try_recv().is_ok() {
            return Some(Wake::Shutdown);
        }
        if let Ok(task) = self.env.main_task_rx.try_recv() {
            return Some(Wake::Task(task));
        }
        self.command_rx
            .try_recv()
            .ok()
            .map(|(command, reply)| Wake::Command(command, reply))
    }

    /// Sleeps until the next command, main-thread task or shutdown request.
    fn next_wake(&self) -> Wake {
        flume::Selector::new()
            .recv(&self.shutdown_rx, |_| Wake::Shutdown)
            .recv(&self.command_rx, |r| match r {
                Ok((command, reply)) => Wake::Command(command, reply),
                // Unreachable while `self.env.runtime_service` holds a sender; treat as shutdown.
                Err(_) => Wake::Shutdown,
            })
            .recv(&self.env.main_task_rx, |r| match r {
                Ok(task) => Wake::Task(task),
                Err(_) => Wake::Shutdown,
            })
            .wait()
    }
}

impl RuntimeEnv {
    fn context_for(&self, id: &ProcessorUniqueId, shared: &Arc<ProcessorShared>) -> RuntimeContext {
        RuntimeContext {
            processor_id: id.clone(),
            runtime_service: self.runtime_service.clone(),
            shared: shared.clone(),
            main_thread: self.main_thread.clone(),
            events: self.events.clone(),
        }
    }

    /// Puts the instance on a new thread, which runs `setup` and then waits to be released.
    fn spawn_worker(
        &self,
        id: &ProcessorUniqueId,
        entry: &mut ProcessorEntry,
    ) -> Result<(), String> {
        let node = match std::mem::replace(&mut entry.slot, Slot::Lost) {
            Slot::Idle(node) => node,
            other => {
                entry.slot = other;
                return Err("the processor is already running".to_string());
            }
        };
        for input in &entry.ports.inputs {
            input.set_reader_running(true);
        }
        let ctx = self.context_for(id, &entry.shared);
        match worker::spawn(node, ctx, self.id) {
            Ok(worker) => {
                entry.slot = Slot::Running(worker);
                Ok(())
            }
            Err((node, e)) => {
                entry.slot = Slot::Idle(node);
                Err(format!("cannot start its thread: {e}"))
            }
        }
    }

    /// Waits for the worker's setup result. On failure the thread is joined and the instance is
    /// back in the entry, idle.
    fn await_setup(&self, entry: &mut ProcessorEntry) -> Result<(), String> {
        let Slot::Running(worker) = &entry.slot else {
            return Err("the processor has no thread".to_string());
        };
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let outcome = match self.wait_servicing(&worker.messages, deadline) {
            Waited::Value(WorkerMsg::SetupDone(result)) => result,
            Waited::Value(WorkerMsg::Exited) | Waited::Closed => {
                Err("its thread ended during setup".to_string())
            }
            Waited::TimedOut => {
                entry.shared.signal.request_stop();
                // Its producers must not wait for a processor that is not processing.
                for input in &entry.ports.inputs {
                    input.set_reader_running(false);
                }
                return Err(format!(
                    "setup did not finish within {}s; the processor was asked to stop",
                    SETUP_TIMEOUT.as_secs()
                ));
            }
        };
        if outcome.is_err() {
            self.join_worker(entry);
        }
        outcome
    }

    /// Asks the processor to stop and waits for its thread (at most [`STOP_TIMEOUT`]).
    fn stop_worker(&self, entry: &mut ProcessorEntry) {
        if let Slot::Running(_) = entry.slot {
            entry.shared.signal.request_stop();
            self.join_worker(entry);
        }
    }

    fn join_worker(&self, entry: &mut ProcessorEntry) {
        let Slot::Running(worker) = std::mem::replace(&mut entry.slot, Slot::Lost) else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let exited = loop {
            match self.wait_servicing(&worker.messages, deadline) {
                Waited::Value(WorkerMsg::SetupDone(_)) => continue,
                Waited::Value(WorkerMsg::Exited) | Waited::Closed => break true,
                Waited::TimedOut => break false,
            }
        };
        if !exited {
            let message = format!(
                "did not stop within {}s; its thread was abandoned",
                STOP_TIMEOUT.as_secs()
            );
            entry.shared.fail(&self.events, "teardown", message);
            for input in &entry.ports.inputs {
                input.set_reader_running(false);
            }
            return; // The JoinHandle is dropped: the thread is detached.
        }
        match worker.handle.join() {
            Ok(Some(node)) => entry.slot = Slot::Idle(node),
            Ok(None) | Err(_) => {
                entry.shared.fail(
                    &self.events,
                    "teardown",
                    "its thread ended without returning the processor".to_string(),
                );
            }
        }
    }

    /// Waits for a message on `rx` until `deadline`, running main-thread work meanwhile (a
    /// processor's setup or teardown may be waiting for it).
    fn wait_servicing<T>(&self, rx: &flume::Receiver<T>, deadline: Instant) -> Waited<T> {
        // A new processor thread usually answers within microseconds: yield a few times before
        // paying for a sleep and a wake-up.
        for _ in 0..BUSY_YIELDS {
            match rx.try_recv() {
                Ok(value) => return Waited::Value(value),
                Err(flume::TryRecvError::Disconnected) => return Waited::Closed,
                Err(flume::TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        loop {
            let woke = flume::Selector::new()
                .recv(rx, |r| r.map(Some).map_err(|_| ()))
                .recv(&self.main_task_rx, |r| {
                    if let Ok(task) = r {
                        main_thread::execute(task);
                    }
                    Ok(None)
                })
                .wait_deadline(deadline);
            match woke {
                Ok(Ok(Some(value))) => return Waited::Value(value),
                Ok(Ok(None)) => continue,
                Ok(Err(())) => return Waited::Closed,
                Err(_) => return Waited::TimedOut,
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
        thread_role::clear(self.env.id);
    }
}

enum Wake {
    Command(RuntimeCommand, oneshot::Sender<CommandResult>),
    Task(MainTask),
    Shutdown,
}

enum Waited<T> {
    Value(T),
    Closed,
    TimedOut,
}

fn link_info(id: &LinkUniqueId, l: &LinkEntry) -> LinkInfo {
    let options = l.link.options();
    LinkInfo {
        id: id.clone(),
        from: l.from.clone(),
        to: l.to.clone(),
        frame_type: l.frame_type,
        capacity: options.capacity,
        overflow: options.overflow,
        read_mode: options.read_mode,
        counters: l.link.counters(),
    }
}

fn graph_error(context: String, e: StreamError) -> StreamError {
    match e {
        StreamError::InvalidGraph(m) => StreamError::InvalidGraph(format!("{context}: {m}")),
        other => StreamError::InvalidGraph(format!("{context}: {other}")),
    }
}

fn check_unique_port_names(type_name: &str, ports: &PortSet) -> Result<()> {
    for (direction, names) in [
        (
            "input",
            ports.inputs.iter().map(|p| p.name()).collect::<Vec<_>>(),
        ),
        (
            "output",
            ports.outputs.iter().map(|p| p.name()).collect::<Vec<_>>(),
        ),
    ] {
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(StreamError::InvalidConfig {
                    processor_type: type_name.to_string(),
                    field: None,
                    message: format!("two {direction} ports are named '{name}'"),
                });
            }
        }
    }
    Ok(())
}
