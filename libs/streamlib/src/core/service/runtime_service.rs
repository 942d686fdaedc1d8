use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{broadcast, oneshot};

use super::command::{CommandResult, RuntimeCommand};
use crate::core::error::{Result, StreamError};
use crate::core::graph::{GraphApplied, GraphFile, PortTarget, ProcessorInfo, RuntimeState};
use crate::core::graph::{InputLinkPortRef, LinkUniqueId, OutputLinkPortRef, ProcessorUniqueId};
use crate::core::links::LinkOptions;
use crate::core::links::PortWatch;
use crate::core::metrics::{CommandOutcome, CommandStats, Families, runtime_families};
use crate::core::processors::ProcessorSpec;
use crate::core::runtime::RuntimeEvent;
use crate::core::runtime::thread_role::{self, Role};
use crate::core::runtime::{ConfigChange, ConfigUpdate};

/// Thread-safe async facade for StreamRuntime operations.
///
/// Obtained from `RuntimeContext::runtime_service()` in processor setup (or
/// `StreamRuntime::runtime_service()`). All methods are async and safe to call from Tokio
/// threads; they need no particular async runtime.
///
/// A call never hangs on a runtime that is gone: it fails with `runtime_unavailable` at once. A
/// call that would wait on its own thread (made from the runtime thread, or from a processor's
/// `setup`/`teardown`, which the runtime thread waits for) is refused with `would_deadlock`.
/// Callers that need a deadline (the HTTP API) wrap calls in their own timeout.
#[derive(Clone)]
pub struct RuntimeService {
    /// Commands to the runtime thread, each with the channel for its reply. flume, because the
    /// runtime thread blocks on it without an async runtime while senders are async.
    command_tx: flume::Sender<(RuntimeCommand, oneshot::Sender<CommandResult>)>,
    /// The runtime's event channel, held only to hand out subscriptions.
    event_tx: broadcast::Sender<RuntimeEvent>,
    /// Which runtime this is, to recognise its threads (deadlock guard).
    runtime_id: u64,
    /// Set by the runtime as it goes away. A command queued after its last drain would never be
    /// answered (other senders keep the channel alive), so senders check this after queueing.
    closed: Arc<AtomicBool>,
    /// Every command's kind, outcome and latency (for `GET /metrics`).
    command_stats: Arc<CommandStats>,
}

impl RuntimeService {
    pub(crate) fn new(
        command_tx: flume::Sender<(RuntimeCommand, oneshot::Sender<CommandResult>)>,
        event_tx: broadcast::Sender<RuntimeEvent>,
        runtime_id: u64,
        closed: Arc<AtomicBool>,
    ) -> Self {
        Self {
            command_tx,
            event_tx,
            runtime_id,
            closed,
            command_stats: Arc::default(),
        }
    }

    /// Add a processor to the runtime.
    pub async fn add_processor(&self, spec: ProcessorSpec) -> Result<ProcessorUniqueId> {
        match self.send(RuntimeCommand::AddProcessor { spec }).await? {
            CommandResult::ProcessorAdded(id) => Ok(id),
            other => unexpected("add_processor", other),
        }
    }

    /// Remove a processor from the runtime.
    pub async fn remove_processor(&self, id: ProcessorUniqueId) -> Result<()> {
        match self.send(RuntimeCommand::RemoveProcessor { id }).await? {
            CommandResult::ProcessorRemoved => Ok(()),
            other => unexpected("remove_processor", other),
        }
    }

    /// Connect two ports.
    pub async fn connect(
        &self,
        from: OutputLinkPortRef,
        to: InputLinkPortRef,
    ) -> Result<LinkUniqueId> {
        self.connect_with(from, to, LinkOptions::default()).await
    }

    /// Connect two ports with link options (capacity, overflow policy, read mode).
    pub async fn connect_with(
        &self,
        from: OutputLinkPortRef,
        to: InputLinkPortRef,
        options: LinkOptions,
    ) -> Result<LinkUniqueId> {
        match self
            .send(RuntimeCommand::Connect { from, to, options })
            .await?
        {
            CommandResult::Connected(id) => Ok(id),
            other => unexpected("connect", other),
        }
    }

    /// Disconnect a link.
    pub async fn disconnect(&self, link_id: LinkUniqueId) -> Result<()> {
        match self.send(RuntimeCommand::Disconnect { link_id }).await? {
            CommandResult::Disconnected => Ok(()),
            other => unexpected("disconnect", other),
        }
    }

    /// Start the runtime.
    pub async fn start(&self) -> Result<()> {
        match self.send(RuntimeCommand::Start).await? {
            CommandResult::Started => Ok(()),
            other => unexpected("start", other),
        }
    }

    /// Stop the runtime.
    pub async fn stop(&self) -> Result<()> {
        match self.send(RuntimeCommand::Stop).await? {
            CommandResult::Stopped => Ok(()),
            other => unexpected("stop", other),
        }
    }

    /// Get current runtime state.
    pub async fn get_state(&self) -> Result<RuntimeState> {
        self.get_state_shared().await.map(Arc::unwrap_or_clone)
    }

    /// The current runtime state, shared with the other readers that asked at the same moment
    /// (no copy): for servers answering many reads.
    pub async fn get_state_shared(&self) -> Result<Arc<RuntimeState>> {
        match self.send(RuntimeCommand::GetState).await? {
            CommandResult::State(state) => Ok(state),
            other => unexpected("get_state", other),
        }
    }

    /// The runtime's figures in the Prometheus text format (content type
    /// [`PROMETHEUS_TEXT_FORMAT`](crate::core::metrics::PROMETHEUS_TEXT_FORMAT)): per processor,
    /// per link, and the commands sent to the runtime; for an embedder that serves metrics its
    /// own way (the API server's `GET /metrics` adds its request figures to these).
    pub async fn metrics_text(&self) -> Result<String> {
        Ok(self.metrics_families().await?.encode())
    }

    /// The runtime's metric families (see [`RuntimeService::metrics_text`]).
    pub(crate) async fn metrics_families(&self) -> Result<Families> {
        match self.send(RuntimeCommand::GetMetrics).await? {
            CommandResult::Metrics(report) => Ok(runtime_families(&report, &self.command_stats)),
            other => unexpected("get_metrics", other),
        }
    }

    /// Starts watching the frames that pass processor `id`'s port `port` (an output's, or for
    /// an input those of the output feeding it): [`PortWatch::next`] then yields the next frame
    /// written. Nothing is copied for it until then, and nothing once it is dropped. Waiting is
    /// the caller's: give it a deadline (a stopped runtime writes nothing).
    pub async fn watch_port(&self, id: ProcessorUniqueId, port: &str) -> Result<PortWatch> {
        match self
            .send(RuntimeCommand::WatchPort {
                id,
                port: port.to_string(),
            })
            .await?
        {
            CommandResult::Watch(watch) => Ok(watch),
            other => unexpected("watch_port", other),
        }
    }

    /// Get one processor's details.
    pub async fn get_processor(&self, id: ProcessorUniqueId) -> Result<ProcessorInfo> {
        match self.send(RuntimeCommand::GetProcessor { id }).await? {
            CommandResult::Processor(info) => Ok(*info),
            other => unexpected("get_processor", other),
        }
    }

    /// Every port `id.port` could be linked with, each saying whether the link would be made
    /// now and why not (see [`StreamRuntime::port_targets`](crate::core::StreamRuntime::port_targets)).
    pub async fn port_targets(
        &self,
        id: ProcessorUniqueId,
        port: String,
    ) -> Result<Vec<PortTarget>> {
        match self.send(RuntimeCommand::PortTargets { id, port }).await? {
            CommandResult::Targets(targets) => Ok(targets),
            other => unexpected("port_targets", other),
        }
    }

    /// Changes a processor's config: in place if every changed field is live, else (with
    /// `restart`) by tearing it down and setting it up again with its links kept; without
    /// `restart`, a change to a field that is not live is refused
    /// ([`StreamError::NotLive`]). An invalid config changes nothing
    /// ([`StreamError::InvalidConfig`], naming the field). Answered once the change is in force.
    pub async fn update_config(
        &self,
        id: ProcessorUniqueId,
        change: ConfigChange,
        restart: bool,
    ) -> Result<ConfigUpdate> {
        let command = RuntimeCommand::UpdateConfig {
            id,
            change,
            restart,
        };
        match self.send(command).await? {
            CommandResult::ConfigUpdated(update) => Ok(*update),
            other => unexpected("update_config", other),
        }
    }

    /// Tears a processor down and sets it up again, its links kept (a `Failed` one comes back
    /// this way). Answered with its details once it runs again (or, with the runtime stopped,
    /// at once). A setup that fails leaves it `Failed` and returns the error. `downstream`:
    /// once it runs, also restart the processors downstream whose stream ended (after its
    /// failure, say); a writer among them starts its file again.
    pub async fn restart_processor(
        &self,
        id: ProcessorUniqueId,
        downstream: bool,
    ) -> Result<ProcessorInfo> {
        match self
            .send(RuntimeCommand::Restart { id, downstream })
            .await?
        {
            CommandResult::Processor(info) => Ok(*info),
            other => unexpected("restart_processor", other),
        }
    }

    /// The running graph as a document, with its revision (control-plane processors are not
    /// in it).
    pub async fn get_graph(&self) -> Result<GraphFile> {
        match self
            .send(RuntimeCommand::GetGraph { minimal: false })
            .await?
        {
            CommandResult::Graph(doc) => Ok(*doc),
            other => unexpected("get_graph", other),
        }
    }

    /// The running graph as a graph file shows it best: without the revision, and without
    /// config fields and link options at their defaults (see `serve --save`).
    pub async fn get_graph_minimal(&self) -> Result<GraphFile> {
        match self
            .send(RuntimeCommand::GetGraph { minimal: true })
            .await?
        {
            CommandResult::Graph(doc) => Ok(*doc),
            other => unexpected("get_graph_minimal", other),
        }
    }

    /// [`RuntimeService::get_graph`] and [`RuntimeService::get_graph_minimal`] of the same
    /// revision: what [`GraphFileWriter::write`](crate::core::graph::GraphFileWriter::write)
    /// takes.
    pub async fn get_graph_for_file(&self) -> Result<(GraphFile, GraphFile)> {
        match self.send(RuntimeCommand::GetGraphForFile).await? {
            CommandResult::GraphForFile(docs) => Ok(*docs),
            other => unexpected("get_graph_for_file", other),
        }
    }

    /// Makes the running graph match `doc`, all of it or nothing, touching only what differs
    /// (see `core::runtime` `graph_apply`). `dry_run`: only the plan. `if_match`: refused
    /// ([`StreamError::RevisionMismatch`]) unless the graph is at that revision (the document's
    /// own `revision`, if any, is checked the same way). A document with problems is refused
    /// whole ([`StreamError::GraphRejected`], every problem at its place).
    pub async fn apply_graph(
        &self,
        doc: GraphFile,
        dry_run: bool,
        if_match: Option<u64>,
    ) -> Result<GraphApplied> {
        let command = RuntimeCommand::ApplyGraph {
            doc: Box::new(doc),
            dry_run,
            if_match,
        };
        match self.send(command).await? {
            CommandResult::Applied(applied) => Ok(*applied),
            other => unexpected("apply_graph", other),
        }
    }

    /// Moves, places or unplaces (`None`) processors in the drawing (the graph document's `ui`
    /// section); all or nothing. The graph's revision after it.
    pub async fn set_positions(
        &self,
        changes: std::collections::BTreeMap<String, Option<crate::core::graph::UiPosition>>,
    ) -> Result<u64> {
        match self.send(RuntimeCommand::SetPositions { changes }).await? {
            CommandResult::Placed(revision) => Ok(revision),
            other => unexpected("set_positions", other),
        }
    }

    /// Subscribe to runtime events (for WebSocket broadcasting).
    pub fn subscribe_events(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.event_tx.subscribe()
    }

    /// Whether the runtime still accepts commands.
    pub fn is_available(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && !self.command_tx.is_disconnected()
    }

    async fn send(&self, command: RuntimeCommand) -> Result<CommandResult> {
        self.refuse_self_wait(&command)?;
        let name = command.name();
        // Recorded when the answer comes, or as abandoned if this future is dropped first.
        let timer = self.command_stats.start(name);
        let gone = || StreamError::RuntimeUnavailable("the runtime has shut down".to_string());
        let (reply_tx, reply_rx) = oneshot::channel();
        if self.command_tx.send((command, reply_tx)).is_err() {
            timer.finish(CommandOutcome::Error);
            return Err(gone());
        }
        // Pairs with `StreamRuntime::drop`, which sets `closed` and then drains the queue: either
        // the drain saw our command (and answers it with an error), or we see the flag here.
        if self.closed.load(Ordering::SeqCst) {
            timer.finish(CommandOutcome::Error);
            return Err(gone());
        }
        let answer = match reply_rx.await {
            Ok(CommandResult::Error(e)) => Err(e),
            Ok(result) => Ok(result),
            Err(_) => Err(StreamError::RuntimeUnavailable(format!(
                "the runtime shut down before answering {name}"
            ))),
        };
        timer.finish(if answer.is_ok() {
            CommandOutcome::Ok
        } else {
            CommandOutcome::Error
        });
        answer
    }

    /// The deadlock guard: refuses commands whose reply the calling thread itself would have to
    /// produce (or that would wait for the calling thread to finish).
    fn refuse_self_wait(&self, command: &RuntimeCommand) -> Result<()> {
        let refusal = match thread_role::current(self.runtime_id) {
            None => None,
            Some(Role::Main) => Some(format!(
                "{} was called on the runtime's own thread, which is the thread that executes commands; call the StreamRuntime method directly, or call the service from another thread",
                command.name()
            )),
            Some(Role::Lifecycle(id)) => Some(format!(
                "{} was called from processor '{id}' during setup/teardown, which the runtime may have to wait for (a stop joins it); make the call from process() or from a thread of your own",
                command.name()
            )),
            Some(Role::Process(id)) => match command {
                RuntimeCommand::Stop => Some(format!(
                    "processor '{id}' asked to stop the runtime from its own thread, and stopping waits for that thread; make the call from a thread of your own"
                )),
                RuntimeCommand::RemoveProcessor { id: target } if *target == id => Some(format!(
                    "processor '{id}' asked to remove itself from its own thread, and removal waits for that thread; make the call from a thread of your own"
                )),
                RuntimeCommand::Restart { id: target, .. }
                | RuntimeCommand::UpdateConfig { id: target, .. }
                    if *target == id =>
                {
                    Some(format!(
                        "processor '{id}' asked to change or restart itself from its own thread, and that waits for the thread to get back to the runtime; make the call from a thread of your own"
                    ))
                }
                _ => None,
            },
        };
        match refusal {
            Some(message) => Err(StreamError::WouldDeadlock(message)),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for RuntimeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeService")
            .field("runtime_id", &self.runtime_id)
            .field("available", &self.is_available())
            .finish()
    }
}

fn unexpected<T>(call: &str, result: CommandResult) -> Result<T> {
    let got = match result {
        CommandResult::ProcessorAdded(_) => "ProcessorAdded",
        CommandResult::ProcessorRemoved => "ProcessorRemoved",
        CommandResult::Connected(_) => "Connected",
        CommandResult::Disconnected => "Disconnected",
        CommandResult::Started => "Started",
        CommandResult::Stopped => "Stopped",
        CommandResult::State(_) => "State",
        CommandResult::Processor(_) => "Processor",
        CommandResult::Targets(_) => "Targets",
        CommandResult::ConfigUpdated(_) => "ConfigUpdated",
        CommandResult::Graph(_) => "Graph",
        CommandResult::GraphForFile(_) => "GraphForFile",
        CommandResult::Applied(_) => "Applied",
        CommandResult::Placed(_) => "Placed",
        CommandResult::Metrics(_) => "Metrics",
        CommandResult::Watch(_) => "Watch",
        CommandResult::Error(e) => return Err(e),
    };
    Err(StreamError::RuntimeUnavailable(format!(
        "internal error: {call} was answered with {got}"
    )))
}
