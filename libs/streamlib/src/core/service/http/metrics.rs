//! `GET /metrics`: the runtime's and the API server's figures in the Prometheus text format
//! (0.0.4, what Prometheus, promtool and every agent read), and the API's own counters behind
//! them.
//!
//! Nothing here runs unless scraped: the runtime's counters and histograms are read on the
//! runtime thread in one pass (`RuntimeCommand::GetMetrics`, a read that never waits), and
//! turned into text here, on the server's threads. The API's counters are recorded per request
//! by [`count_requests`] (a short lock per request, off the runtime and frame paths).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use super::ApiState;
use super::error::ApiError;
use crate::core::metrics::{
    COMMAND_KINDS, CommandOutcome, CommandStats, DurationHistogram, HistogramSnapshot,
    MetricsReport,
};
use crate::core::runtime::{ProcessorStatus, RuntimeStatus};

/// The scrape route.
pub(crate) const METRICS_PATH: &str = "/metrics";

/// The API server's own figures (requests, WebSocket clients and events).
#[derive(Default)]
pub(crate) struct ApiMetrics {
    /// By route template and method: answers by status, and their latency. The keys are
    /// bounded: the router's templates (or `unmatched`), nine methods, HTTP's statuses.
    requests: Mutex<HashMap<(String, &'static str), RouteStats>>,
    /// WebSocket clients connected now.
    pub(crate) ws_clients: AtomicI64,
    /// Events written to WebSocket clients.
    pub(crate) events_sent: AtomicU64,
    /// Events WebSocket clients missed because they fell behind (each was told, and sent a
    /// fresh snapshot).
    pub(crate) events_missed: AtomicU64,
}

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    latency: DurationHistogram,
}

impl ApiMetrics {
    fn record(&self, route: String, method: &'static str, status: u16, started: Instant) {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let stats = requests.entry((route, method)).or_default();
        *stats.by_status.entry(status).or_default() += 1;
        stats.latency.record(ns);
    }
}

/// Counts every request by route template, method and status, and times it (outermost layer,
/// so refusals by the guards are counted too).
pub(super) async fn count_requests(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .inner
        .metrics
        .record(route, method, response.status().as_u16(), started);
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The runtime's and the API server's figures in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4: per processor (state, process calls, errors, restarts, process() duration histogram), per link (frames written/read/dropped, queued frames and bytes, frame age at read histogram), the runtime (processors, links, commands by kind and their latency) and the API (requests by route and status, latency, WebSocket clients, events sent and missed)", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "Token required (unless the server serves /metrics to loopback without one)", body = super::error::ErrorBody),
    )
)]
pub(super) async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let report = state.service().metrics_report().await?;
    let families = families(
        &report,
        state.service().command_stats(),
        &state.inner.metrics,
    );
    let mut text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&families, &mut text)
        .map_err(|e| {
            tracing::error!(error = %e, "encoding the metrics failed");
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "encoding the metrics failed; the server's log has the details",
            )
        })?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

/// Metric families being built, in the order they are added.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

type Labels<'a> = Vec<(&'a str, String)>;

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

    fn counter<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let metrics = samples
            .into_iter()
            .map(|(labels, value)| {
                let mut counter = Counter::default();
                counter.set_value(value);
                let mut m = metric(labels);
                m.set_counter(counter);
                m
            })
            .collect();
        self.add(name, help, MetricType::COUNTER, metrics);
    }

    fn gauge<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let metrics = samples
            .into_iter()
            .map(|(labels, value)| {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                let mut m = metric(labels);
                m.set_gauge(gauge);
                m
            })
            .collect();
        self.add(name, help, MetricType::GAUGE, metrics);
    }

    fn histogram<'a>(
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

/// Every family of a scrape.
fn families(
    report: &MetricsReport,
    commands: &CommandStats,
    api: &ApiMetrics,
) -> Vec<MetricFamily> {
    let mut f = Families::default();
    runtime_families(&mut f, report, commands);
    processor_families(&mut f, report);
    link_families(&mut f, report);
    api_families(&mut f, api);
    f.0
}

fn runtime_families(f: &mut Families, report: &MetricsReport, commands: &CommandStats) {
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

/// A route's key (template, method), answers by status, and latency.
type RouteFigures = (
    (String, &'static str),
    BTreeMap<u16, u64>,
    HistogramSnapshot,
);

fn api_families(f: &mut Families, api: &ApiMetrics) {
    // Copied out so the lock is not held while building text.
    let routes: Vec<RouteFigures> = {
        let requests = api.requests.lock().unwrap_or_else(|e| e.into_inner());
        let mut routes: Vec<_> = requests
            .iter()
            .map(|(key, stats)| {
                (
                    key.clone(),
                    stats.by_status.clone(),
                    stats.latency.snapshot(),
                )
            })
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        routes
    };
    f.counter(
        "streamlib_http_requests_total",
        "HTTP requests answered, by route template, method and status.",
        routes.iter().flat_map(|((route, method), by_status, _)| {
            by_status.iter().map(move |(status, n)| {
                (
                    vec![
                        ("route", route.clone()),
                        ("method", (*method).to_string()),
                        ("status", status.to_string()),
                    ],
                    *n as f64,
                )
            })
        }),
    );
    f.histogram(
        "streamlib_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template and method.",
        routes.iter().map(|((route, method), _, latency)| {
            (
                vec![("route", route.clone()), ("method", (*method).to_string())],
                latency.clone(),
            )
        }),
    );
    f.gauge(
        "streamlib_websocket_clients",
        "WebSocket event clients connected now.",
        [(vec![], api.ws_clients.load(Ordering::Relaxed) as f64)],
    );
    f.counter(
        "streamlib_websocket_events_sent_total",
        "Events written to WebSocket clients.",
        [(vec![], api.events_sent.load(Ordering::Relaxed) as f64)],
    );
    f.counter(
        "streamlib_websocket_events_missed_total",
        "Events WebSocket clients missed because they fell behind (each was told, and sent a fresh snapshot).",
        [(vec![], api.events_missed.load(Ordering::Relaxed) as f64)],
    );
}
