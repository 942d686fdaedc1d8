//! `serve --save`: every change to the graph is written back to the graph file, debounced, by
//! a thread of its own (file I/O never runs on the runtime thread). The write is atomic (see
//! `GraphFileWriter`); a TOML file keeps its comments and formatting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use streamlib::core::graph::GraphFileWriter;
use streamlib::core::{RuntimeEventKind, RuntimeService, StreamRuntime};
use tokio::sync::broadcast::error::RecvError;

/// How long the graph must stay unchanged before it is written (a burst of changes, such as an
/// apply or a client dragging a slider, is written once).
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// The longest a change waits to be written while changes keep coming.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// How often the thread looks whether it is asked to stop.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// How long the thread waits for the runtime to give it the graph (it may be shutting down).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// When a write failed, how long until it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The write-back thread.
pub struct Saver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    writer: Arc<GraphFileWriter>,
}

/// Whether an event changes what the graph file says.
fn changes_file(kind: &RuntimeEventKind) -> bool {
    matches!(
        kind,
        RuntimeEventKind::ProcessorAdded { .. }
            | RuntimeEventKind::ProcessorRemoved { .. }
            | RuntimeEventKind::LinkCreated { .. }
            | RuntimeEventKind::LinkRemoved { .. }
            | RuntimeEventKind::ConfigChanged { .. }
            | RuntimeEventKind::LayoutChanged { .. }
    )
}

impl Saver {
    /// Starts writing `writer`'s file after every change of the graph `service` drives.
    pub fn spawn(service: RuntimeService, writer: GraphFileWriter) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = Arc::new(writer);
        let (flag, file) = (stop.clone(), writer.clone());
        // Subscribed here, before the thread starts: no change made from now on is missed.
        let events = service.subscribe_events();
        let thread = std::thread::Builder::new()
            .name("graph-save".to_string())
            .spawn(move || watch(service, events, &file, &flag))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            writer,
        })
    }

    /// Stops the thread, then writes the graph as `runtime` has it now (whatever the thread had
    /// not written yet). An error if that write fails: the changes are not in the file.
    pub fn finish(mut self, runtime: &StreamRuntime) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let written = self
            .writer
            .write(&runtime.graph_document(), &runtime.graph_document_minimal());
        match written {
            Ok(changed) => {
                if changed {
                    tracing::info!(file = %self.writer.path().display(), "graph written back");
                }
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!(
                "the graph could not be written back to {}: {e}",
                self.writer.path().display()
            )),
        }
    }
}

fn watch(
    service: RuntimeService,
    mut events: tokio::sync::broadcast::Receiver<streamlib::core::RuntimeEvent>,
    writer: &GraphFileWriter,
    stop: &AtomicBool,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the graph write-back; changes will only be written at shutdown");
            return;
        }
    };
    rt.block_on(async {
        // When the pending change is due: DEBOUNCE after the last change, at most MAX_DELAY
        // after the first one not yet written.
        let mut first: Option<Instant> = None;
        let mut due: Option<Instant> = None;
        while !stop.load(Ordering::Acquire) {
            let wait = due
                .map_or(STOP_CHECK, |d| d.saturating_duration_since(Instant::now()))
                .min(STOP_CHECK);
            let dirty = match tokio::time::timeout(wait, events.recv()).await {
                Ok(Ok(event)) => changes_file(&event.kind),
                // Missed events may have changed the graph.
                Ok(Err(RecvError::Lagged(_))) => true,
                Ok(Err(RecvError::Closed)) => return,
                Err(_) => false,
            };
            let now = Instant::now();
            if dirty {
                let since = *first.get_or_insert(now);
                due = Some((now + DEBOUNCE).min(since + MAX_DELAY));
            }
            // Asked to stop meanwhile: the final write (`finish`) does it, from the runtime.
            if due.is_some_and(|d| now >= d) && !stop.load(Ordering::Acquire) {
                let read = tokio::time::timeout(READ_TIMEOUT, service.get_graph_for_file()).await;
                let saved = match read {
                    Ok(Ok((full, minimal))) => save(writer, full, minimal),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot read the graph to write it back");
                        false
                    }
                    Err(_) => false,
                };
                if saved {
                    first = None;
                    due = None;
                } else {
                    due = Some(Instant::now() + RETRY);
                }
            }
        }
    });
}

/// Writes the graph; false if it could not (tried again after [`RETRY`]).
fn save(
    writer: &GraphFileWriter,
    full: streamlib::core::GraphFile,
    minimal: streamlib::core::GraphFile,
) -> bool {
    match writer.write(&full, &minimal) {
        Ok(true) => {
            tracing::info!(file = %writer.path().display(), "graph written back");
            true
        }
        Ok(false) => true,
        // Someone else's edit kept, ours written beside it (`write` said so): done until the
        // graph changes again, not retried every second.
        Err(e @ streamlib::core::StreamError::Conflict(_)) => {
            tracing::error!(file = %writer.path().display(), error = %e, "graph not written back");
            true
        }
        Err(e) => {
            tracing::error!(file = %writer.path().display(), error = %e, "cannot write the graph back; trying again in a second");
            false
        }
    }
}
