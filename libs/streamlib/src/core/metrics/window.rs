//! Rates and percentiles over a recent window, computed when somebody asks.
//!
//! Nothing samples in the background: each read of the runtime's figures (a snapshot, one
//! processor, a scrape) takes the counters and histograms of every processor and link as they
//! are ([`GraphSample`]), keeps one such sample a second for [`WINDOW`] (and the newest for up
//! to a minute), and computes the rates against the oldest kept one. So a client that looks
//! every second or so (`streamlib top`, a scraper) sees the last ~10 s, one that looks every
//! 15 s the time since its last look; a first look, or one after more than a minute of quiet,
//! sees the figures since each processor or link was added, and `window_s` says which.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::HistogramSnapshot;
use crate::core::graph::{LinkUniqueId, ProcessorCounters, ProcessorUniqueId};
use crate::core::links::LinkCounters;

/// How far back rates look.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// How long the newest sample is kept even past [`WINDOW`], so a client that looks less often
/// (every 15 s, say) still gets the rates since its last look.
const NEWEST_KEPT: Duration = Duration::from_secs(60);
/// How often a sample is kept (at most).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The shortest span rates are computed over; a baseline younger than this is not used.
const MIN_SPAN: Duration = Duration::from_millis(500);

/// One processor's figures at one moment.
#[derive(Debug, Clone)]
pub(crate) struct ProcessorSample {
    pub(crate) counters: ProcessorCounters,
    /// Durations of its `process()` calls.
    pub(crate) busy: HistogramSnapshot,
    /// When it was added (its counters count from then).
    pub(crate) added: Instant,
}

/// One link's figures at one moment.
#[derive(Debug, Clone)]
pub(crate) struct LinkSample {
    pub(crate) counters: LinkCounters,
    /// Ages of the sampled frames when read.
    pub(crate) age: HistogramSnapshot,
    /// When it was created (its counters count from then).
    pub(crate) added: Instant,
}

/// Every processor's and link's figures at one moment.
#[derive(Debug)]
pub(crate) struct GraphSample {
    pub(crate) at: Instant,
    pub(crate) processors: HashMap<ProcessorUniqueId, ProcessorSample>,
    pub(crate) links: HashMap<LinkUniqueId, LinkSample>,
}

/// What a Prometheus scrape is built from: the runtime's state (with rates) and the histograms
/// read in the same pass as its counters.
#[derive(Debug)]
pub(crate) struct MetricsReport {
    pub(crate) state: crate::core::graph::RuntimeState,
    pub(crate) sample: Arc<GraphSample>,
}

/// The samples kept for the window (see the module docs): at most one a second for
/// [`WINDOW`], plus the newest for up to [`NEWEST_KEPT`].
#[derive(Default)]
pub(crate) struct StatsWindow {
    samples: Mutex<VecDeque<Arc<GraphSample>>>,
}

impl StatsWindow {
    /// Notes `current` (kept if the newest kept sample is a second old or more; samples older
    /// than [`WINDOW`] are forgotten) and returns the samples to compute rates against, oldest
    /// first: those at least [`MIN_SPAN`] older than `current` (a processor or link takes the
    /// oldest that has it).
    pub(crate) fn observe(&self, current: &Arc<GraphSample>) -> Vec<Arc<GraphSample>> {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let now = current.at;
        // Past the window, only the newest is kept (for up to a minute).
        while samples.front().is_some_and(|s| {
            let age = now.saturating_duration_since(s.at);
            age > NEWEST_KEPT || (age > WINDOW && samples.len() > 1)
        }) {
            samples.pop_front();
        }
        let baselines = samples
            .iter()
            .take_while(|s| now.saturating_duration_since(s.at) >= MIN_SPAN)
            .cloned()
            .collect();
        if samples
            .back()
            .is_none_or(|s| now.saturating_duration_since(s.at) >= SAMPLE_EVERY)
        {
            samples.push_back(current.clone());
        }
        baselines
    }
}

/// A processor's work over a recent window (see `window_s`).
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProcessorRates {
    /// Seconds the figures cover: about the last 10 s when the runtime's figures were read
    /// earlier in that time (e.g. by a client refreshing every second), else the time since
    /// the processor was added.
    pub window_s: f64,
    /// `process()` calls per second.
    pub process_calls_per_s: f64,
    /// Frames read from its inputs per second (all inputs together).
    pub frames_in_per_s: f64,
    /// Frames written per second (each output port once, however many links it feeds).
    pub frames_out_per_s: f64,
    /// Share of the time spent inside `process()`, in percent of one core (a long call counts
    /// in the window it ends in, so this can pass 100 briefly).
    pub busy_percent: f64,
    /// Median `process()` duration in the window, in milliseconds (null: no call in it).
    pub process_p50_ms: Option<f64>,
    /// 99th percentile of the `process()` duration in the window, in milliseconds.
    pub process_p99_ms: Option<f64>,
    /// Errors in the window.
    pub errors: u64,
}

/// A link's traffic over a recent window (see `window_s`).
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinkRates {
    /// Seconds the figures cover (as for a processor's rates; since the link was created when
    /// there is no recent baseline).
    pub window_s: f64,
    /// Frames written into the link per second.
    pub written_per_s: f64,
    /// Frames read out per second.
    pub read_per_s: f64,
    /// Frames dropped per second.
    pub dropped_per_s: f64,
    /// Median age of a frame when read (the link's latency: from the writer's `write` to the
    /// reader taking it), in milliseconds (null: no sampled frame read in the window).
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile of the age at read, in milliseconds.
    pub latency_p99_ms: Option<f64>,
    /// Frames the percentiles come from: every frame of a slow link, a sample every 50–200 µs
    /// of a fast one.
    pub latency_samples: u64,
}

/// The span between `base` (or `added`, without one) and `now`, in seconds (never 0).
fn span_s(now: Instant, base_at: Option<Instant>, added: Instant) -> f64 {
    let from = base_at.unwrap_or(added);
    now.saturating_duration_since(from).as_secs_f64().max(1e-3)
}

fn per_s(now: u64, before: u64, span: f64) -> f64 {
    now.saturating_sub(before) as f64 / span
}

fn ms(ns: Option<f64>) -> Option<f64> {
    ns.map(|ns| ns / 1e6)
}

/// A link's rates between `base` (a sample from the window's start, if it has the link) and
/// `now`.
pub(crate) fn link_rates(
    at: Instant,
    now: &LinkSample,
    base: Option<(Instant, &LinkSample)>,
) -> LinkRates {
    let span = span_s(at, base.map(|b| b.0), now.added);
    let zero = LinkCounters::default();
    let (before, age) = match base {
        Some((_, b)) => (&b.counters, now.age.since(&b.age)),
        None => (&zero, now.age.clone()),
    };
    let c = &now.counters;
    LinkRates {
        window_s: span,
        written_per_s: per_s(c.written, before.written, span),
        read_per_s: per_s(c.read, before.read, span),
        dropped_per_s: per_s(c.dropped, before.dropped, span),
        latency_p50_ms: ms(age.quantile_ns(0.5)),
        latency_p99_ms: ms(age.quantile_ns(0.99)),
        latency_samples: age.count(),
    }
}

/// A processor's rates between `base` and `now`; `frames_in_per_s` and `frames_out_per_s` come
/// from its links' rates (the caller adds them).
pub(crate) fn processor_rates(
    at: Instant,
    now: &ProcessorSample,
    base: Option<(Instant, &ProcessorSample)>,
) -> ProcessorRates {
    let span = span_s(at, base.map(|b| b.0), now.added);
    let zero = ProcessorCounters::default();
    let (before, busy) = match base {
        Some((_, b)) => (&b.counters, now.busy.since(&b.busy)),
        None => (&zero, now.busy.clone()),
    };
    let c = &now.counters;
    let busy_s = c.busy_ns.saturating_sub(before.busy_ns) as f64 / 1e9;
    ProcessorRates {
        window_s: span,
        process_calls_per_s: per_s(c.process_calls, before.process_calls, span),
        frames_in_per_s: 0.0,
        frames_out_per_s: 0.0,
        busy_percent: 100.0 * busy_s / span,
        process_p50_ms: ms(busy.quantile_ns(0.5)),
        process_p99_ms: ms(busy.quantile_ns(0.99)),
        errors: c.errors.saturating_sub(before.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant) -> Arc<GraphSample> {
        Arc::new(GraphSample {
            at,
            processors: HashMap::new(),
            links: HashMap::new(),
        })
    }

    #[test]
    fn the_window_keeps_a_sample_a_second_for_ten_seconds() {
        let w = StatsWindow::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let times = |v: Vec<Arc<GraphSample>>| v.iter().map(|s| s.at).collect::<Vec<_>>();
        // The first look has no baseline; nor does one 300 ms later (too short a span).
        assert!(w.observe(&sample(at(0))).is_empty());
        assert!(w.observe(&sample(at(300))).is_empty());
        // From 500 ms on, the first sample is a baseline.
        assert_eq!(times(w.observe(&sample(at(600)))), [at(0)]);
        assert_eq!(times(w.observe(&sample(at(1000)))), [at(0)]);
        // Kept: 0 and 1000 (300 and 600 were within a second of the newest kept).
        assert_eq!(w.samples.lock().unwrap().len(), 2);
        assert_eq!(times(w.observe(&sample(at(1400)))), [at(0)]);
        assert_eq!(times(w.observe(&sample(at(2000)))), [at(0), at(1000)]);
        // At 10.5 s, 0 is past the window: 1000 is the oldest baseline.
        assert_eq!(times(w.observe(&sample(at(10_500))))[0], at(1000));
        // A look 15 s later is measured from the last one (kept past the window, alone).
        assert_eq!(times(w.observe(&sample(at(25_500)))), [at(10_500)]);
        // A look after more than a minute of quiet starts again from nothing.
        assert!(w.observe(&sample(at(90_000))).is_empty());
    }

    #[test]
    fn rates_use_the_baseline_or_the_time_since_added() {
        let t0 = Instant::now();
        let added = t0;
        let link = |written: u64, read: u64| LinkSample {
            counters: LinkCounters {
                written,
                read,
                ..Default::default()
            },
            age: HistogramSnapshot::default(),
            added,
        };
        let now = link(1000, 900);
        // With a baseline 2 s back that had 600/500: 200 frames/s each way.
        let base = link(600, 500);
        let r = link_rates(
            t0 + Duration::from_secs(4),
            &now,
            Some((t0 + Duration::from_secs(2), &base)),
        );
        assert_eq!(
            (r.window_s, r.written_per_s, r.read_per_s),
            (2.0, 200.0, 200.0)
        );
        assert_eq!((r.latency_p50_ms, r.latency_samples), (None, 0));
        // Without one: since it was added, 4 s ago.
        let r = link_rates(t0 + Duration::from_secs(4), &now, None);
        assert_eq!(
            (r.window_s, r.written_per_s, r.read_per_s),
            (4.0, 250.0, 225.0)
        );
    }
}
