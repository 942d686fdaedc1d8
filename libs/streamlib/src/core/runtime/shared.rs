//! State of one processor that its thread, the runtime and reports all touch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events::{EventBus, RuntimeEventKind};
use super::lifecycle::ProcessorStatus;
use super::wake::ProcessorSignal;
use crate::core::context::Counter;
use crate::core::error::{Stage, StreamError};
use crate::core::files::OpenedFiles;
use crate::core::graph::{ProcessorCounters, ProcessorUniqueId};
use crate::core::metrics::{DurationHistogram, HistogramSnapshot};

pub(crate) struct ProcessorShared {
    pub(crate) id: ProcessorUniqueId,
    pub(crate) signal: Arc<ProcessorSignal>,
    /// State and last error. A std Mutex: written a few times per run, read by reports.
    state: Mutex<(ProcessorStatus, Option<String>)>,
    process_calls: AtomicU64,
    errors: AtomicU64,
    busy_ns: AtomicU64,
    /// How long each `process()` call took (written by its thread only).
    busy: DurationHistogram,
    /// Restarts begun (through the API, a graph apply or a config change).
    restarts: AtomicU64,
    /// Interval chosen in `setup` by a Continuous processor (0 = use the attribute's).
    interval_ns: AtomicU64,
    /// Named counters the processor publishes. Registered in setup (rare), read by reports.
    metrics: Mutex<BTreeMap<String, Counter>>,
    /// Its stream ended in this run (see [`RuntimeEventKind::ProcessorEnded`]).
    ended: std::sync::atomic::AtomicBool,
    /// The files it opened in its latest run.
    pub(crate) files: Arc<OpenedFiles>,
    /// Live config changes waiting for its thread.
    pub(crate) live: super::live::LiveMailbox,
    /// When it was added (its counters count from then).
    pub(crate) added: std::time::Instant,
}

impl ProcessorShared {
    pub(crate) fn new(id: ProcessorUniqueId) -> Self {
        Self {
            id,
            signal: Arc::new(ProcessorSignal::default()),
            state: Mutex::new((ProcessorStatus::Pending, None)),
            process_calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            busy: DurationHistogram::default(),
            restarts: AtomicU64::new(0),
            interval_ns: AtomicU64::new(0),
            metrics: Mutex::new(BTreeMap::new()),
            ended: std::sync::atomic::AtomicBool::new(false),
            files: Arc::default(),
            live: Default::default(),
            added: std::time::Instant::now(),
        }
    }

    /// Marks the stream ended and publishes it.
    pub(crate) fn set_ended(&self, bus: &EventBus) {
        bus.publish_with(|| {
            self.ended.store(true, Ordering::SeqCst);
            RuntimeEventKind::ProcessorEnded {
                processor_id: self.id.clone(),
            }
        });
    }

    /// Whether its stream ended in this run.
    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// A new run begins: not ended.
    pub(crate) fn reset_ended(&self) {
        self.ended.store(false, Ordering::SeqCst);
    }

    pub(crate) fn state(&self) -> (ProcessorStatus, Option<String>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Moves to `state` and publishes the change.
    pub(crate) fn set_state(&self, bus: &EventBus, state: ProcessorStatus) {
        bus.publish_with(|| {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.0 = state;
            if state != ProcessorStatus::Failed {
                s.1 = None;
            }
            RuntimeEventKind::ProcessorStateChanged {
                processor_id: self.id.clone(),
                state,
            }
        });
    }

    /// Records a failure: counts it, keeps the message, moves to `Failed`, publishes it.
    pub(crate) fn fail(&self, bus: &EventBus, stage: Stage, error: &StreamError) {
        let message = error.to_string();
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(processor = %self.id, stage = %stage, error = %message, "processor failed");
        bus.publish_with(|| {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            *s = (ProcessorStatus::Failed, Some(format!("{stage}: {message}")));
            RuntimeEventKind::ProcessorFailed {
                processor_id: self.id.clone(),
                stage,
                error: message,
            }
        });
    }

    /// Counts one `process()` call that took `busy`. Only the processor's own thread calls
    /// it, so plain loads and stores do (no locked instruction on the frame path): a restart
    /// joins the old thread, or abandons it with its instance, before a new one runs.
    #[inline]
    pub(crate) fn record_process(&self, busy: Duration) {
        let ns = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        let calls = self.process_calls.load(Ordering::Relaxed);
        self.process_calls.store(calls + 1, Ordering::Relaxed);
        let total = self.busy_ns.load(Ordering::Relaxed);
        self.busy_ns
            .store(total.saturating_add(ns), Ordering::Relaxed);
        // Its sum is `busy_ns`: one store fewer on the frame path.
        self.busy.count_owned(ns);
    }

    pub(crate) fn counters(&self) -> ProcessorCounters {
        ProcessorCounters {
            process_calls: self.process_calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// The durations of its `process()` calls so far.
    pub(crate) fn busy_histogram(&self) -> HistogramSnapshot {
        self.busy
            .snapshot()
            .with_sum(self.busy_ns.load(Ordering::Relaxed))
    }

    /// A restart of it begins.
    pub(crate) fn note_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_interval(&self, interval: Duration) {
        let ns = u64::try_from(interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.interval_ns.store(ns, Ordering::Relaxed);
    }

    pub(crate) fn interval(&self) -> Option<Duration> {
        match self.interval_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    pub(crate) fn counter(&self, name: &str) -> Counter {
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    pub(crate) fn metrics(&self) -> BTreeMap<String, u64> {
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.get()))
            .collect()
    }
}
