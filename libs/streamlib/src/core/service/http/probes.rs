//! `GET /api/health` and `GET /api/ready`: answers for supervisors and container probes.
//!
//! - **Health** says the API server answers, and nothing else: it does not ask the runtime, so
//!   a busy runtime does not make a liveness probe restart the process. It needs **no token**
//!   (Host and Origin are still checked): it tells a caller only what any answer, a 401 too,
//!   already tells, that a streamlib server is listening there.
//! - **Readiness** asks the runtime: ready when it answers, is running, every processor is set
//!   up, and none has failed; else `503 not_ready` naming why (stopped, still starting, or the
//!   failed processors with their errors). It needs
//!   the token like every other route, because it names processors and their errors; probes
//!   can send headers (`httpHeaders` in Kubernetes).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use crate::core::runtime::{ProcessorStatus, RuntimeStatus};

/// Most failed processors a `not_ready` message names.
const MAX_NAMED: usize = 8;

/// Path of the health route (the access guard lets it through without a token).
pub(crate) const HEALTH_PATH: &str = "/api/health";

/// Answer of `GET /api/health`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`: the server answered.
    pub status: String,
}

/// Answer of `GET /api/ready` when ready.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `true`.
    pub ready: bool,
    /// Processors in the graph (none of them failed).
    pub processor_count: usize,
}

/// Server health
///
/// Whether the API server answers (no runtime call, no token needed).
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "The server answers", body = Health),
    )
)]
pub(super) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
    })
}

/// Runtime readiness
///
/// Ready when the runtime answers, is running, every processor is set up, and none has failed.
#[utoipa::path(
    get,
    path = "/api/ready",
    tag = "meta",
    responses(
        (status = 200, description = "Running, no processor failed", body = Ready),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 503, description = "not_ready (stopped, or processors failed: named with their errors) or runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn ready(State(state): State<ApiState>) -> Result<Json<Ready>, ApiError> {
    let snapshot = state.service().get_state_shared().await?;
    if snapshot.status != RuntimeStatus::Running {
        let status = serde_json::to_value(snapshot.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(not_ready(format!(
            "the runtime is {status}; POST /api/runtime/start runs it"
        )));
    }
    let starting = snapshot
        .processors
        .iter()
        .filter(|p| p.state == ProcessorStatus::Pending)
        .count();
    if starting > 0 {
        return Err(not_ready(format!(
            "starting: {starting} processor(s) still setting up"
        )));
    }
    let failed: Vec<String> = snapshot
        .processors
        .iter()
        .filter(|p| p.state == ProcessorStatus::Failed)
        .map(|p| match &p.error {
            Some(error) => format!("'{}' ({error})", p.id),
            None => format!("'{}'", p.id),
        })
        .collect();
    if !failed.is_empty() {
        let more = failed.len().saturating_sub(MAX_NAMED);
        let named = failed[..failed.len().min(MAX_NAMED)].join("; ");
        let more = if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        };
        return Err(not_ready(format!(
            "{} processor(s) failed: {named}{more}",
            failed.len()
        )));
    }
    Ok(Json(Ready {
        ready: true,
        processor_count: snapshot.processor_count,
    }))
}

fn not_ready(message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
}
