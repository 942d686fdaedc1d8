//! The runtime's figures in the Prometheus text format (0.0.4, what Prometheus, promtool and
//! every agent read), through the `prometheus` crate's encoder: built from a
//! [`MetricsReport`] and the command counts on every scrape, nothing kept between scrapes.
//! The API server adds its own families (requests, WebSocket clients) to these.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use super::{COMMAND_KINDS, CommandOutcome, CommandStats, HistogramSnapshot, MetricsReport};
use crate::core::runtime::{ProcessorStatus, RuntimeStatus};

/// The content type of the Prometheus text format these families are written in.
pub const PROMETHEUS_TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// Metric families being built, in the order they are added.
#[derive(Default)]
pub(crate) struct Families(Vec<MetricFamily>);

pub(crate) type Labels<'a> = Vec<(&'a str, String)>;

impl Families {
    fn add(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        // The text encoder refuses a family without samples (a graph with no links, say).
        if metrics.is_empty() {
            return;
        }
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        family.set_metric(metrics);
        self.0.push(family);
    }

    pub(crate) fn counter<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        self.scalars(name, help, MetricType::COUNTER, samples);
    }

    pub(crate) fn gauge<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        self.scalars(name, help, MetricType::GAUGE, samples);
    }

    /// A family of counters or gauges: one value per label set.
    fn scalars<'a>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let metrics = samples
            .into_iter()
            .map(|(labels, value)| {
                let mut m = metric(labels);
                if kind == MetricType::COUNTER {
                    let mut counter = Counter::default();
                    counter.set_value(value);
                    m.set_counter(counter);
                } else {
                    let mut gauge = Gauge::default();
                    gauge.set_value(value);
                    m.set_gauge(gauge);
                }
                m
            })
            .collect();
        self.add(name, help, kind, metrics);
    }

    pub(crate) fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, HistogramSnapshot)>,
    ) {
        let metrics = samples
            .into_iter()
            .map(|(labels, snapshot)| {
                let mut h = Histogram::default();
                h.set_sample_count(snapshot.count());
                h.set_sample_sum(snapshot.sum_ns() as f64 / 1e9);
                h.set_bucket(
                    snapshot
                        .prometheus_buckets()
                        .into_iter()
                        // The encoder writes `+Inf` itself (from the count).
                        .filter(|(le, _)| le.is_finite())
                        .map(|(le, cumulative)| {
                            let mut b = Bucket::default();
                            b.set_upper_bound(le);
                            b.set_cumulative_count(cumulative);
                            b
                        })
                        .collect(),
                );
                let mut m = metric(labels);
                m.set_histogram(h);
                m
            })
            .collect();
        self.add(name, help, MetricType::HISTOGRAM, metrics);
    }
}

fn metric(labels: Labels<'_>) -> Metric {
    Metric::from_label(
        labels
            .into_iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.to_string());
                pair.set_value(value);
                pair
            })
            .collect(),
    )
}

/// A status's name as the JSON API spells it (`running`, `failed`, ...).
fn label_of(status: impl serde::Serialize) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The runtime's families of a scrape: runtime, processors, links.
pub(crate) fn runtime_families(report: &MetricsReport, commands: &CommandStats) -> Families {
    let mut f = Families::default();
    runtime_status_families(&mut f, report, commands);
    processor_families(&mut f, report);
    link_families(&mut f, report);
    f
}

impl Families {
    /// The text of every family. (The encoder refuses only a family without samples or name;
    /// `add` keeps those out, so this cannot fail: if it ever did, the log says so.)
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&self.0, &mut text) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        text
    }

    /// Appends `other`'s families (the API server's to the runtime's).
    #[cfg(feature = "api-server")]
    pub(crate) fn extend(&mut self, other: Families) {
        self.0.extend(other.0);
    }
}

fn runtime_status_families(f: &mut Families, report: &MetricsReport, commands: &CommandStats) {
    let state = &report.state;
    f.gauge(
        "streamlib_runtime_status",
        "The runtime's lifecycle state: 1 for the current one.",
        [
            RuntimeStatus::Idle,
            RuntimeStatus::Running,
            RuntimeStatus::Stopped,
        ]
        .into_iter()
        .map(|s| {
            (
                vec![("status", label_of(s))],
                f64::from(u8::from(s == state.status)),
            )
        }),
    );
    f.gauge(
        "streamlib_processors",
        "Processors in the graph.",
        [(vec![], state.processor_count as f64)],
    );
    f.gauge(
        "streamlib_links",
        "Links in the graph.",
        [(vec![], state.link_count as f64)],
    );
    f.gauge(
        "streamlib_queued_bytes",
        "Bytes of frames queued in all links together.",
        [(vec![], state.queued_bytes as f64)],
    );
    f.gauge(
        "streamlib_reserved_bytes",
        "Bytes the links hold reserved in the runtime's memory budget (--max-queued-mib).",
        [(vec![], state.reserved_bytes as f64)],
    );
    f.counter(
        "streamlib_events_published_total",
        "Runtime events published (the sequence number of the last one).",
        [(vec![], state.seq as f64)],
    );
    let by_kind = commands.snapshot();
    f.counter(
        "streamlib_commands_total",
        "Commands the service layer sent the runtime thread, by kind and how they ended (ok, error, abandoned: the caller stopped waiting).",
        by_kind.iter().flat_map(|(name, ended, _)| {
            CommandOutcome::ALL.iter().zip(ended).map(move |(outcome, n)| {
                (
                    vec![("command", (*name).to_string()), ("result", outcome.label().to_string())],
                    *n as f64,
                )
            })
        }),
    );
    debug_assert_eq!(by_kind.len(), COMMAND_KINDS.len());
    f.histogram(
        "streamlib_command_duration_seconds",
        "Time from a command being sent to its answer (queueing on the runtime thread included), by kind.",
        // Kinds never sent are left out (their counts above say 0): 27 lines each.
        by_kind
            .iter()
            .filter(|(_, _, latency)| latency.count() > 0)
            .map(|(name, _, latency)| (vec![("command", (*name).to_string())], latency.clone())),
    );
}

fn processor_families(f: &mut Families, report: &MetricsReport) {
    let processors = &report.state.processors;
    let labels = |p: &crate::core::graph::ProcessorInfo| -> Labels<'static> {
        vec![
            ("processor", p.id.to_string()),
            ("type", p.processor_type.clone()),
        ]
    };
    const STATES: [ProcessorStatus; 4] = [
        ProcessorStatus::Pending,
        ProcessorStatus::Running,
        ProcessorStatus::Stopped,
        ProcessorStatus::Failed,
    ];
    f.gauge(
        "streamlib_processor_state",
        "A processor's lifecycle state: 1 for the current one.",
        processors.iter().flat_map(|p| {
            STATES.iter().map(move |s| {
                let mut l = labels(p);
                l.push(("state", label_of(s)));
                (l, f64::from(u8::from(*s == p.state)))
            })
        }),
    );
    f.counter(
        "streamlib_processor_process_calls_total",
        "Calls of the processor's process().",
        processors
            .iter()
            .map(|p| (labels(p), p.counters.process_calls as f64)),
    );
    f.counter(
        "streamlib_processor_errors_total",
        "Errors and panics in the processor's setup, process and teardown.",
        processors
            .iter()
            .map(|p| (labels(p), p.counters.errors as f64)),
    );
    f.counter(
        "streamlib_processor_restarts_total",
        "Restarts of the processor begun (a restart request, a config change that needed one, a graph apply).",
        processors.iter().map(|p| (labels(p), p.counters.restarts as f64)),
    );
    f.histogram(
        "streamlib_processor_process_duration_seconds",
        "How long each process() call took (its sum is the processor's busy time).",
        processors.iter().filter_map(|p| {
            let sample = report.sample.processors.get(&p.id)?;
            Some((labels(p), sample.busy.clone()))
        }),
    );
    f.gauge(
        "streamlib_processor_value",
        "Counters a processor publishes itself (frames, checksum, ...), by name.",
        processors.iter().flat_map(|p| {
            p.metrics.iter().map(move |(name, value)| {
                let mut l = labels(p);
                l.push(("name", name.clone()));
                (l, *value as f64)
            })
        }),
    );
}

fn link_families(f: &mut Families, report: &MetricsReport) {
    let links = &report.state.links;
    let labels = |l: &crate::core::graph::LinkInfo| -> Labels<'static> {
        vec![
            ("link", l.id.to_string()),
            ("from", l.from.to_string()),
            ("to", l.to.to_string()),
            ("frame_type", l.frame_type.to_string()),
        ]
    };
    f.counter(
        "streamlib_link_frames_written_total",
        "Frames the producer wrote into the link.",
        links.iter().map(|l| (labels(l), l.counters.written as f64)),
    );
    f.counter(
        "streamlib_link_frames_read_total",
        "Frames the consumer took out of the link.",
        links.iter().map(|l| (labels(l), l.counters.read as f64)),
    );
    f.counter(
        "streamlib_link_frames_dropped_total",
        "Frames lost: overwritten in a full ring, skipped by a latest read, or refused for want of memory.",
        links.iter().map(|l| (labels(l), l.counters.dropped as f64)),
    );
    f.gauge(
        "streamlib_link_queued_frames",
        "Frames waiting in the link now.",
        links.iter().map(|l| (labels(l), l.counters.queued as f64)),
    );
    f.gauge(
        "streamlib_link_queued_bytes",
        "Bytes of the frames waiting in the link now.",
        links
            .iter()
            .map(|l| (labels(l), l.counters.queued_bytes as f64)),
    );
    f.gauge(
        "streamlib_link_capacity_frames",
        "The link's ring size in frames.",
        links.iter().map(|l| (labels(l), l.capacity as f64)),
    );
    f.histogram(
        "streamlib_link_frame_age_seconds",
        "Age of a frame when read: time from the writer's write to the reader taking it (the link's latency). Every frame of a slow link is measured; a sample every 50 to 200 microseconds of a fast one.",
        links.iter().filter_map(|l| {
            let sample = report.sample.links.get(&l.id)?;
            Some((labels(l), sample.age.clone()))
        }),
    );
}
