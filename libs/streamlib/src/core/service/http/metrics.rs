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

use super::ApiState;
use super::error::ApiError;
use crate::core::metrics::{
    DurationHistogram, Families, HistogramSnapshot, PROMETHEUS_TEXT_FORMAT,
};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
        (status = 200, description = "Prometheus text format 0.0.4: per processor (state, process calls, errors, restarts, process() duration histogram), per link (frames written/read/dropped, queued frames and bytes, frame age at read histogram), the runtime (processors, links, commands by kind and their latency) and the API (requests by route and status, latency, WebSocket clients, events sent and missed, live previews, their viewers and encodes)", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "Token required (unless the server serves /metrics to loopback without one)", body = super::error::ErrorBody),
    )
)]
pub(super) async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let mut families = state.service().metrics_families().await?;
    families.extend(api_families(&state.inner.metrics, &state.inner.previews));
    // The text of a large graph takes milliseconds to write: off the async threads.
    let text = tokio::task::spawn_blocking(move || families.encode())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "encoding the metrics panicked");
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "encoding the metrics failed; the server's log has the details",
            )
        })?;
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT_FORMAT)], text).into_response())
}

/// A route's key (template, method), answers by status, and latency.
type RouteFigures = (
    (String, &'static str),
    BTreeMap<u16, u64>,
    HistogramSnapshot,
);

fn api_families(api: &ApiMetrics, previews: &super::preview::PreviewHub) -> Families {
    let mut families = Families::default();
    let f = &mut families;
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
        "WebSocket clients connected now (events, previews and taps).",
        [(vec![], api.ws_clients.load(Ordering::Relaxed) as f64)],
    );
    f.gauge(
        "streamlib_preview_streams",
        "Live previews being encoded now (one per port, rate and size, however many viewers).",
        [(vec![], previews.streams() as f64)],
    );
    f.gauge(
        "streamlib_preview_viewers",
        "Clients viewing a live preview now.",
        [(vec![], previews.viewers.load(Ordering::Relaxed) as f64)],
    );
    f.counter(
        "streamlib_preview_encodes_total",
        "Video frames encoded for live previews (once per frame, however many viewers).",
        [(vec![], previews.encodes.load(Ordering::Relaxed) as f64)],
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
    families
}
