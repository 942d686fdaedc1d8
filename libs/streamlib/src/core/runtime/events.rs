//! Runtime events: what happened to the graph, in order, for logs and WebSocket clients.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::lifecycle::ProcessorStatus;
use crate::core::error::Stage;
use crate::core::graph::{LinkUniqueId, ProcessorUniqueId};

/// How many events a slow subscriber may fall behind before it is told it lagged.
pub(crate) const EVENT_CHANNEL_CAPACITY: usize = 256;

/// One thing that happened, numbered.
///
/// `seq` increases by one per event across the whole runtime, so a client that holds a state
/// snapshot taken at `seq = n` applies exactly the events with `seq > n`.
/// JSON: `{"seq": 7, "timestamp_ms": 1764196092123, "type": "processor_added", ...}`.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuntimeEvent {
    /// Position in the runtime's event sequence (first event is 1).
    pub seq: u64,
    /// Wall-clock time of the event, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: RuntimeEventKind,
}

/// The kinds of [`RuntimeEvent`], tagged by `type` in JSON.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuntimeEventKind {
    /// `start()` finished: every processor has been set up.
    RuntimeStarted,
    /// `stop()` finished: every (non control-plane) processor has been torn down.
    RuntimeStopped,
    /// A processor joined the graph.
    ProcessorAdded {
        /// Its id.
        processor_id: ProcessorUniqueId,
        /// Its registered type.
        processor_type: String,
    },
    /// A processor left the graph (after its links).
    ProcessorRemoved {
        /// Its id.
        processor_id: ProcessorUniqueId,
    },
    /// A processor moved to a new lifecycle state.
    ProcessorStateChanged {
        /// Its id.
        processor_id: ProcessorUniqueId,
        /// The new state.
        state: ProcessorStatus,
    },
    /// A processor's stream ended: a source reached its end, or every input of a processor
    /// ended and it finished (`on_end_of_stream`); its outputs are ended.
    ProcessorEnded {
        /// Its id.
        processor_id: ProcessorUniqueId,
    },
    /// Every processor of the running graph (but control-plane ones) has ended or failed:
    /// nothing left can produce. `streamlib run` exits on it; `serve` keeps serving.
    GraphFinished,
    /// A processor failed in setup, process or teardown and stopped; the rest keeps running.
    ProcessorFailed {
        /// Its id.
        processor_id: ProcessorUniqueId,
        /// `setup`, `process` or `teardown`.
        stage: Stage,
        /// The error or panic message.
        error: String,
    },
    /// A processor's config changed (`PATCH`/`PUT /api/processors/{id}/config`).
    ConfigChanged {
        /// Its id.
        processor_id: ProcessorUniqueId,
        /// The top-level fields whose value changed.
        changed: Vec<String>,
        /// How it took effect: `live`, `restarted` or `stored`.
        applied: super::live::ConfigApplied,
    },
    /// A processor was torn down and set up again, its links kept
    /// (`POST /api/processors/{id}/restart`, or a config change that needs it).
    ProcessorRestarted {
        /// Its id.
        processor_id: ProcessorUniqueId,
    },
    /// A link was created.
    LinkCreated {
        /// Its id.
        link_id: LinkUniqueId,
        /// `processor.port` of the output.
        from: String,
        /// `processor.port` of the input.
        to: String,
    },
    /// A link was removed.
    LinkRemoved {
        /// Its id.
        link_id: LinkUniqueId,
        /// `processor.port` of the output it read from.
        from: String,
        /// `processor.port` of the input it fed.
        to: String,
    },
    /// Processors are drawn elsewhere (the graph document's `ui` section changed, through
    /// `PATCH /api/graph/ui` or an applied document): a dashboard re-reads the positions.
    LayoutChanged {
        /// The processors placed, moved or unplaced.
        processors: Vec<ProcessorUniqueId>,
    },
    /// A processor reported something of its own (end of stream, window closed, ...).
    ProcessorEvent {
        /// Its id.
        processor_id: ProcessorUniqueId,
        /// What happened, e.g. `end_of_stream`.
        name: String,
        /// Details.
        #[serde(default)]
        data: serde_json::Value,
    },
}

impl RuntimeEventKind {
    /// The `type` tag of this kind, e.g. `processor_added`.
    pub fn type_name(&self) -> &'static str {
        match self {
            RuntimeEventKind::RuntimeStarted => "runtime_started",
            RuntimeEventKind::RuntimeStopped => "runtime_stopped",
            RuntimeEventKind::ProcessorAdded { .. } => "processor_added",
            RuntimeEventKind::ProcessorRemoved { .. } => "processor_removed",
            RuntimeEventKind::ProcessorStateChanged { .. } => "processor_state_changed",
            RuntimeEventKind::ProcessorEnded { .. } => "processor_ended",
            RuntimeEventKind::GraphFinished => "graph_finished",
            RuntimeEventKind::ConfigChanged { .. } => "config_changed",
            RuntimeEventKind::ProcessorRestarted { .. } => "processor_restarted",
            RuntimeEventKind::ProcessorFailed { .. } => "processor_failed",
            RuntimeEventKind::LinkCreated { .. } => "link_created",
            RuntimeEventKind::LinkRemoved { .. } => "link_removed",
            RuntimeEventKind::ProcessorEvent { .. } => "processor_event",
            RuntimeEventKind::LayoutChanged { .. } => "layout_changed",
        }
    }

    /// Every `type` tag, for validating client filters.
    pub const TYPE_NAMES: &'static [&'static str] = &[
        "runtime_started",
        "runtime_stopped",
        "processor_added",
        "processor_removed",
        "processor_state_changed",
        "processor_ended",
        "graph_finished",
        "processor_failed",
        "link_created",
        "link_removed",
        "processor_event",
        "config_changed",
        "processor_restarted",
        "layout_changed",
    ];

    /// The processor this event is about, if any.
    pub fn processor_id(&self) -> Option<&ProcessorUniqueId> {
        match self {
            RuntimeEventKind::ProcessorAdded { processor_id, .. }
            | RuntimeEventKind::ProcessorRemoved { processor_id }
            | RuntimeEventKind::ProcessorStateChanged { processor_id, .. }
            | RuntimeEventKind::ProcessorFailed { processor_id, .. }
            | RuntimeEventKind::ProcessorEnded { processor_id }
            | RuntimeEventKind::ProcessorEvent { processor_id, .. }
            | RuntimeEventKind::ConfigChanged { processor_id, .. }
            | RuntimeEventKind::ProcessorRestarted { processor_id } => Some(processor_id),
            _ => None,
        }
    }
}

/// Numbers and publishes events.
///
/// The counter sits in a std `Mutex` held across the broadcast send: events come from the main
/// thread and from processor threads, and without the lock two threads could send `seq` 6 before
/// 5. Events are rare (graph changes, failures), so the lock is never hot.
pub(crate) struct EventBus {
    tx: broadcast::Sender<RuntimeEvent>,
    seq: Mutex<u64>,
}

impl EventBus {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        Self {
            tx,
            seq: Mutex::new(0),
        }
    }

    pub(crate) fn sender(&self) -> broadcast::Sender<RuntimeEvent> {
        self.tx.clone()
    }

    /// Publishes an event.
    pub(crate) fn publish(&self, kind: RuntimeEventKind) {
        self.publish_with(|| kind);
    }

    /// Applies a state change and publishes the event describing it as one step, so a snapshot
    /// taken with [`EventBus::snapshot`] never sees the change without its `seq` or vice versa.
    pub(crate) fn publish_with(&self, change: impl FnOnce() -> RuntimeEventKind) {
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        let kind = change();
        *seq += 1;
        let event = RuntimeEvent {
            seq: *seq,
            timestamp_ms: unix_ms(),
            kind,
        };
        tracing::debug!(
            seq = event.seq,
            event = event.kind.type_name(),
            "runtime event"
        );
        // No subscribers is normal (nobody watching); the event is then just dropped.
        let _ = self.tx.send(event);
    }

    /// Runs `read` with the current `seq`, with no event published meanwhile.
    pub(crate) fn snapshot<R>(&self, read: impl FnOnce(u64) -> R) -> R {
        let seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        read(*seq)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_and_tagged() {
        let bus = EventBus::new();
        let mut rx = bus.sender().subscribe();
        bus.publish(RuntimeEventKind::RuntimeStarted);
        bus.publish(RuntimeEventKind::LinkRemoved {
            link_id: LinkUniqueId::new("link-abc123"),
            from: "a.video".to_string(),
            to: "b.video".to_string(),
        });
        let a = rx.try_recv().unwrap();
        let b = rx.try_recv().unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["type"], "link_removed");
        assert_eq!(json["link_id"], "link-abc123");
        assert_eq!(json["seq"], 2);
        assert!(json["timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000);
        let back: RuntimeEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, b);
        assert!(RuntimeEventKind::TYPE_NAMES.contains(&b.kind.type_name()));
    }
}
