//! The HTTP/WebSocket API over [`RuntimeService`] (feature `api-server`).
//!
//! Routes (all JSON; errors are `{"error": {"code", "message"}}`):
//!
//! | method | path | does |
//! |---|---|---|
//! | POST | `/api/processors` | create a processor from `{"processor_type", "config", "id"?}` → 201 `{"processor_id"}` |
//! | GET | `/api/processors` | list processors |
//! | GET | `/api/processors/{id}` | one processor |
//! | GET | `/api/processors/{id}/config` | its effective config |
//! | PATCH | `/api/processors/{id}/config` | merge-patch its config: live fields in place, others 409 unless `?restart=true` |
//! | PUT | `/api/processors/{id}/config` | replace its config, the same way |
//! | POST | `/api/processors/{id}/restart` | teardown + setup, links kept (a failed one comes back) |
//! | GET | `/api/graph` | the graph as a document with its `revision` (also `ETag`) |
//! | PUT | `/api/graph` | make the graph match a document: a plan, all or nothing; `?dry_run`, `If-Match` |
//! | PATCH | `/api/graph/ui` | move processors in the drawing (the document's `ui.positions`) |
//! | GET | `/api/processors/{id}/ports/{port}/targets` | the ports it could be linked with, or why not |
//! | DELETE | `/api/processors/{id}` | remove a processor (and its links) → 204 |
//! | POST | `/api/connections` | link two ports → 201 `{"link_id"}` |
//! | GET | `/api/connections` | list links |
//! | DELETE | `/api/connections/{id}` | remove a link → 204 |
//! | POST | `/api/runtime/start` | start the runtime |
//! | POST | `/api/runtime/stop` | stop the runtime (the API keeps serving) |
//! | GET | `/api/runtime/state` | the runtime state with counts |
//! | GET (WS) | `/api/events` | snapshot, then every event in order |
//! | GET | `/api/processors/{id}/ports/{port}/snapshot` | the next frame: an image, levels, or data |
//! | GET (WS) | `/api/preview` | a port live: JPEG images, level meters or data, encoded once for all viewers |
//! | GET (WS) | `/api/tap` | the frames passing a port, as JSON |
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/` | the dashboard (a web page; `dashboard.rs`) |
//! | GET | `/api/registry` | processor types with ports and config schema |
//! | GET | `/api/openapi.json` | this API as OpenAPI 3.1 |
//! | GET | `/api/health` | the server answers (no token needed) |
//! | GET | `/api/ready` | 200 when running, set up, nothing failed; else 503 `not_ready` saying why |
//!
//! [`router`] builds the axum router (tests call it directly); [`serve`] runs it on a listener.

mod dashboard;
mod error;
mod graph_routes;
mod handlers;
mod metrics;
mod openapi;
mod options;
mod preview;
mod probes;
mod push;
mod request_body;
mod security;
mod server;
mod snapshot;
mod tap;
mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ApiJson, ErrorBody, ErrorDetail, status_of};
pub use handlers::{
    CreateConnectionRequest, CreateConnectionResponse, CreateProcessorRequest,
    CreateProcessorResponse,
};
pub use openapi::{openapi, openapi_for};
pub use options::{
    ApiOptions, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PREVIEWS, DEFAULT_MAX_SNAPSHOTS, DEFAULT_MAX_TAPS, DEFAULT_RATE_LIMIT_BURST,
    DEFAULT_RATE_LIMIT_PER_SECOND, DEFAULT_REQUEST_TIMEOUT, DEFAULT_WRITE_TIMEOUT,
    DEFAULT_WS_PING_INTERVAL, Secret,
};
pub use preview::PreviewQuery;
pub use snapshot::{
    AudioSnapshot, DEFAULT_SNAPSHOT_TIMEOUT, DataSnapshot, ImageBytes, ImageFormat, PortSnapshot,
    SnapshotQuery, encode_image,
};
pub use tap::TapQuery;
pub use websocket::{ClientMessage, EventFilter};

use crate::core::graph::ProcessorUniqueId;
use crate::core::graph::RuntimeState;
use crate::core::service::RuntimeService;
use security::AccessPolicy;

/// What every handler shares: the service, the access policy, and the shutdown signal.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<ApiInner>,
}

struct ApiInner {
    service: RuntimeService,
    /// The processor serving this API, which must not be removed through it.
    self_id: Option<ProcessorUniqueId>,
    policy: Arc<AccessPolicy>,
    options: ApiOptions,
    /// Flips to true when the server shuts down; WebSocket sessions watch it (axum's graceful
    /// shutdown does not end upgraded connections).
    shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    /// The OpenAPI document of this server (security only when it has a token).
    openapi: Arc<utoipa::openapi::OpenApi>,
    /// Events serialized once for every WebSocket client (see `websocket::FanOut`).
    fan_out: websocket::FanOut,
    /// The last state snapshot served and its JSON: concurrent reads share one snapshot (the
    /// runtime coalesces them), so it is serialized once. A std Mutex: held only to swap.
    state_json: std::sync::Mutex<Option<(Arc<RuntimeState>, axum::body::Bytes)>>,
    /// Requests, WebSocket clients and events, for `GET /metrics`.
    metrics: metrics::ApiMetrics,
    /// Snapshots in progress (`max_snapshots`) and images being encoded at once
    /// (`snapshot.rs`).
    snapshots: Arc<tokio::sync::Semaphore>,
    encoders: Arc<tokio::sync::Semaphore>,
    /// Live previews being encoded, and their viewers (`preview.rs`).
    previews: preview::PreviewHub,
    /// Taps open (`max_taps`, `tap.rs`).
    taps: Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    /// State for a server bound to `bound` (used for the Host/Origin checks).
    pub fn new(
        service: RuntimeService,
        bound: SocketAddr,
        options: ApiOptions,
        self_id: Option<ProcessorUniqueId>,
    ) -> Self {
        let policy = Arc::new(AccessPolicy::new(bound, &options));
        let openapi = Arc::new(openapi_for(policy.requires_token()));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let snapshots = Arc::new(tokio::sync::Semaphore::new(options.max_snapshots));
        let taps = Arc::new(tokio::sync::Semaphore::new(options.max_taps));
        Self {
            inner: Arc::new(ApiInner {
                service,
                self_id,
                policy,
                options,
                openapi,
                shutdown,
                shutdown_tx,
                fan_out: websocket::FanOut::new(),
                state_json: std::sync::Mutex::new(None),
                metrics: metrics::ApiMetrics::default(),
                snapshots,
                encoders: Arc::new(tokio::sync::Semaphore::new(snapshot::SNAPSHOT_ENCODERS)),
                previews: preview::PreviewHub::default(),
                taps,
            }),
        }
    }

    pub(crate) fn service(&self) -> &RuntimeService {
        &self.inner.service
    }

    /// `snapshot` as JSON, reusing the bytes when the same snapshot was just served.
    pub(crate) fn state_json(&self, snapshot: &Arc<RuntimeState>) -> axum::body::Bytes {
        let cache = &self.inner.state_json;
        if let Some((served, json)) = &*cache.lock().unwrap_or_else(|e| e.into_inner()) {
            if Arc::ptr_eq(served, snapshot) {
                return json.clone();
            }
        }
        let json = axum::body::Bytes::from(serde_json::to_vec(&**snapshot).unwrap_or_default());
        *cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((snapshot.clone(), json.clone()));
        json
    }

    /// Tells WebSocket sessions to close.
    pub fn begin_shutdown(&self) {
        // Only fails without receivers, and the state itself holds one.
        let _ = self.inner.shutdown_tx.send(true);
    }
}

/// Every documented route. The same table builds the router and the OpenAPI document, so the
/// two cannot drift apart.
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(
            handlers::create_processor,
            handlers::list_processors
        ))
        .routes(routes!(handlers::get_processor, handlers::remove_processor))
        .routes(routes!(
            handlers::create_connection,
            handlers::list_connections
        ))
        .routes(routes!(handlers::remove_connection))
        .routes(routes!(handlers::port_targets))
        .routes(routes!(snapshot::snapshot))
        .routes(routes!(
            handlers::get_processor_config,
            handlers::patch_processor_config,
            handlers::put_processor_config
        ))
        .routes(routes!(handlers::restart_processor))
        .routes(routes!(graph_routes::get_graph, graph_routes::put_graph))
        .routes(routes!(graph_routes::patch_graph_ui))
        .routes(routes!(handlers::start_runtime))
        .routes(routes!(handlers::stop_runtime))
        .routes(routes!(handlers::get_state))
        .routes(routes!(websocket::events))
        .routes(routes!(preview::preview))
        .routes(routes!(tap::tap))
        .routes(routes!(handlers::registry))
        .routes(routes!(handlers::openapi_json))
        .routes(routes!(probes::health))
        .routes(routes!(probes::ready))
        .routes(routes!(metrics::metrics))
}

/// The API router: every route, the access guard, body limit, timeout and JSON fallbacks.
///
/// Needs `ConnectInfo<SocketAddr>` ([`serve`] inserts it; tests add `MockConnectInfo`).
pub fn router(state: ApiState) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    let routes = routes.merge(dashboard::routes());
    let options = &state.inner.options;
    let timeout = options.request_timeout;
    let router = routes
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .fallback(handlers::no_route)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            with_timeout(timeout, req, next)
        }))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::guard,
        ))
        // Outermost: bodies are read whole (up to the limit) before anything else, so no
        // answer leaves unread bytes on a keep-alive connection.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_body::guard,
        ));
    // Browsers call another origin's API only after a CORS preflight, which carries no token:
    // answer it (for allow-listed origins only) before the guard.
    let router = match cors(&options.allowed_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // Outermost of all: every answer is counted, refusals by the layers above included.
    router
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .with_state(state)
}

/// CORS for the allow-listed origins; `None` when there are none (same-origin only).
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
            ])
            .expose_headers([
                header::ETAG,
                header::HeaderName::from_static("x-frame-number"),
                header::HeaderName::from_static("x-timestamp-ns"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

async fn with_timeout(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the runtime did not answer within {} ms; the change may still complete, check GET /api/runtime/state",
                timeout.as_millis()
            ),
        )
        .into_response(),
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then closes WebSocket sessions and
/// finishes in-flight requests. Connections are capped and time out (`server.rs`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let policy = state.inner.policy.clone();
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            policy.housekeeping();
        }
    });
    let result = server::run(listener, app, state, shutdown).await;
    housekeeping.abort();
    result
}
