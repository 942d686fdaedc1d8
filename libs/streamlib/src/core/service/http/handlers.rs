//! Route handlers: each turns a request into one `RuntimeService` call (or a registry read).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::core::error::StreamError;
use crate::core::graph::{
    InputLinkPortRef, LinkInfo, LinkUniqueId, OutputLinkPortRef, PortTarget, ProcessorInfo,
    ProcessorUniqueId, RuntimeState,
};
use crate::core::links::{LinkOptions, OverflowPolicy, ReadMode};
use crate::core::processors::{PROCESSOR_REGISTRY, ProcessorDescriptor};
use crate::core::runtime::{ConfigChange, ConfigUpdate};

/// Body of `POST /api/processors`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProcessorRequest {
    /// Registered type name, e.g. `TestPatternProcessor` (see `GET /api/registry`).
    pub processor_type: String,
    /// The type's config; missing, `null` or `{}` means all defaults.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Id to give the processor (`[A-Za-z0-9_-]{1,64}`); generated from the type when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Answer of `POST /api/processors`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateProcessorResponse {
    /// The new processor's id.
    pub processor_id: ProcessorUniqueId,
}

/// Body of `POST /api/connections`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectionRequest {
    /// Processor owning the output.
    pub from_processor: String,
    /// Output port name.
    pub from_port: String,
    /// Processor owning the input.
    pub to_processor: String,
    /// Input port name.
    pub to_port: String,
    /// Ring size in frames (1-1024); the frame type's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
    /// Full-ring behaviour: `drop_oldest` (default) or `backpressure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<OverflowPolicy>,
    /// `latest` or `in_order`; the frame type's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_mode: Option<ReadMode>,
}

/// Answer of `POST /api/connections`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateConnectionResponse {
    /// The new link's id.
    pub link_id: LinkUniqueId,
}

/// Create processor
#[utoipa::path(
    post,
    path = "/api/processors",
    tag = "processors",
    request_body = CreateProcessorRequest,
    responses(
        (status = 201, description = "Created (and started, if the runtime is running)", body = CreateProcessorResponse),
        (status = 400, description = "unknown_processor_type (lists the known ones), invalid_json, invalid_id", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden (Host or Origin, or a control-plane processor type)", body = ErrorBody),
        (status = 409, description = "duplicate_processor_id", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "invalid_config (names the field), invalid_request, processor_failed (setup failed)", body = ErrorBody),
        (status = 429, description = "rate_limited (see Retry-After)", body = ErrorBody),
        (status = 503, description = "runtime_unavailable, or processor_failed because what it needs is missing (a device, a display)", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn create_processor(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<CreateProcessorRequest>,
) -> Result<(StatusCode, Json<CreateProcessorResponse>), ApiError> {
    // A control-plane processor (another API server) could be opened on any address with a
    // token of the caller's choosing: those are configured at startup, not through the API.
    if PROCESSOR_REGISTRY.is_control_plane(&request.processor_type) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} is a control-plane processor and cannot be created through the API (it could expose the runtime on another address); start it with the runtime instead (streamlib serve)",
                request.processor_type
            ),
        ));
    }
    let mut spec = PROCESSOR_REGISTRY.create(&request.processor_type, request.config)?;
    if let Some(id) = request.id {
        spec = spec.with_id(id);
    }
    let processor_id = state.service().add_processor(spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateProcessorResponse { processor_id }),
    ))
}

/// List processors
#[utoipa::path(
    get,
    path = "/api/processors",
    tag = "processors",
    responses(
        (status = 200, description = "Every processor, in the order they were added", body = Vec<ProcessorInfo>),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn list_processors(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let snapshot = state.service().get_state_shared().await?;
    Ok(Json(&snapshot.processors).into_response())
}

/// Get processor details
#[utoipa::path(
    get,
    path = "/api/processors/{id}",
    tag = "processors",
    params(("id" = String, Path, description = "Processor id")),
    responses(
        (status = 200, description = "The processor: type, config, state, ports, counters, metrics", body = ProcessorInfo),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
    )
)]
pub(super) async fn get_processor(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProcessorInfo>, ApiError> {
    Ok(Json(
        state
            .service()
            .get_processor(ProcessorUniqueId::new(id))
            .await?,
    ))
}

/// Get processor config
///
/// The processor's effective config (every field, defaults filled in), as `config` in
/// `POST /api/processors` takes it.
#[utoipa::path(
    get,
    path = "/api/processors/{id}/config",
    tag = "processors",
    params(("id" = String, Path, description = "Processor id")),
    responses(
        (status = 200, description = "The effective config, a JSON object of the type's config schema", body = Object),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn get_processor_config(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let info = state
        .service()
        .get_processor(ProcessorUniqueId::new(id))
        .await?;
    Ok(Json(info.config))
}

/// Query of `PATCH`/`PUT /api/processors/{id}/config`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConfigChangeQuery {
    /// When a changed field is not live: tear the processor down and set it up again with the
    /// new config, its links kept (instead of answering 409 `config_not_live`).
    #[serde(default)]
    pub restart: bool,
}

/// Change processor config (merge)
///
/// A JSON Merge Patch (RFC 7396) onto the config in force: named fields change, `null` puts a
/// field back to its default, the rest keep their value. If every changed field is live
/// (`"x-streamlib-live": true` in the type's config schema), the running processor takes it in
/// place between two frames: nothing restarts, frames keep flowing. A change to a field that is
/// not live is refused with 409 `config_not_live` naming the fields, unless `?restart=true`.
/// An invalid value is refused with 422 naming the field; the config in force stays. Answered
/// once the change is in force, with what changed and how; emits `config_changed`.
#[utoipa::path(
    patch,
    path = "/api/processors/{id}/config",
    tag = "processors",
    params(("id" = String, Path, description = "Processor id"), ConfigChangeQuery),
    request_body(description = "A JSON Merge Patch of the config (an object)", content((Object = "application/merge-patch+json"), (Object = "application/json"))),
    responses(
        (status = 200, description = "In force: the new config, the changed fields, and how it was applied (live, restarted, stored, unchanged)", body = ConfigUpdate),
        (status = 400, description = "invalid_json, invalid_query", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found", body = ErrorBody),
        (status = 409, description = "config_not_live (names the fields and the live ones), conflict (restarting, ports would change, a control-plane processor)", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "invalid_config (names the field), invalid_request (the body is not a JSON object), processor_failed (the restart's setup failed)", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn patch_processor_config(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ConfigChangeQuery>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Json<ConfigUpdate>, ApiError> {
    let change = ConfigChange::Merge(patch);
    let id = ProcessorUniqueId::new(id);
    Ok(Json(
        state
            .service()
            .update_config(id, change, query.restart)
            .await?,
    ))
}

/// Replace processor config
///
/// The whole config (fields left out take their defaults), applied like a merge: in place if
/// every changed field is live, 409 `config_not_live` otherwise unless `?restart=true`.
#[utoipa::path(
    put,
    path = "/api/processors/{id}/config",
    tag = "processors",
    params(("id" = String, Path, description = "Processor id"), ConfigChangeQuery),
    request_body(content = Object, description = "The config, a JSON object of the type's config schema"),
    responses(
        (status = 200, description = "In force: the new config, the changed fields, and how it was applied", body = ConfigUpdate),
        (status = 400, description = "invalid_json, invalid_query", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found", body = ErrorBody),
        (status = 409, description = "config_not_live, conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "invalid_config, invalid_request (the body is not a JSON object), processor_failed", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn put_processor_config(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ConfigChangeQuery>,
    ApiJson(config): ApiJson<serde_json::Value>,
) -> Result<Json<ConfigUpdate>, ApiError> {
    let change = ConfigChange::Replace(config);
    let id = ProcessorUniqueId::new(id);
    Ok(Json(
        state
            .service()
            .update_config(id, change, query.restart)
            .await?,
    ))
}

/// Query of `POST /api/processors/{id}/restart`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RestartQuery {
    /// Once it runs again, also restart the processors downstream of it whose stream ended
    /// (after its failure, say), so they receive again. A writer among them starts its file
    /// again, replacing the one it completed.
    #[serde(default)]
    pub downstream: bool,
}

/// Restart processor
///
/// Teardown, then setup again with the config in force, its links kept; a `Failed` processor
/// comes back this way. Answered once it runs again (with the runtime stopped: at once, left
/// stopped). Frames sent to it while it is down are dropped and counted. If the setup fails it
/// stays `Failed`, still linked, and the error is returned.
#[utoipa::path(
    post,
    path = "/api/processors/{id}/restart",
    tag = "processors",
    params(("id" = String, Path, description = "Processor id"), RestartQuery),
    responses(
        (status = 200, description = "Restarted: its details now", body = ProcessorInfo),
        (status = 400, description = "invalid_query", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found", body = ErrorBody),
        (status = 409, description = "conflict: already restarting, a control-plane processor, or its instance was lost", body = ErrorBody),
        (status = 422, description = "processor_failed: its setup failed (it stays Failed)", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable, or processor_failed for a missing device", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn restart_processor(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<RestartQuery>,
) -> Result<Json<ProcessorInfo>, ApiError> {
    let id = ProcessorUniqueId::new(id);
    Ok(Json(
        state
            .service()
            .restart_processor(id, query.downstream)
            .await?,
    ))
}

/// Link targets of a port
///
/// Every port in the graph this port could be linked with (its output to their inputs, or
/// their outputs to its input), each with whether `POST /api/connections` would make the link
/// now and, if not, why (frame types differ, the input is taken, the same processor).
#[utoipa::path(
    get,
    path = "/api/processors/{id}/ports/{port}/targets",
    tag = "connections",
    params(
        ("id" = String, Path, description = "Processor id"),
        ("port" = String, Path, description = "Port name (input or output)"),
    ),
    responses(
        (status = 200, description = "The possible links, connectable or with the reason they are not", body = Vec<PortTarget>),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found, port_not_found", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn port_targets(
    State(state): State<ApiState>,
    ApiPath((id, port)): ApiPath<(String, String)>,
) -> Result<Json<Vec<PortTarget>>, ApiError> {
    Ok(Json(
        state
            .service()
            .port_targets(ProcessorUniqueId::new(id), port)
            .await?,
    ))
}

/// Remove processor
#[utoipa::path(
    delete,
    path = "/api/processors/{id}",
    tag = "processors",
    params(("id" = String, Path, description = "Processor id")),
    responses(
        (status = 204, description = "Removed, with its links: answered once its thread has ended (a writer's file is complete), or after 5 s with the thread abandoned"),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found", body = ErrorBody),
        (status = 409, description = "conflict: the API server answering this request cannot remove itself", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
    )
)]
pub(super) async fn remove_processor(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = ProcessorUniqueId::new(id);
    if state.inner.self_id.as_ref() == Some(&id) {
        return Err(StreamError::Conflict(format!(
            "'{id}' is the API server answering this request; removing it would cut off this connection and every other client. Stop it by shutting the runtime down (Ctrl-C / SIGTERM), or remove it through another API server"
        ))
        .into());
    }
    state.service().remove_processor(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create connection
#[utoipa::path(
    post,
    path = "/api/connections",
    tag = "connections",
    request_body = CreateConnectionRequest,
    responses(
        (status = 201, description = "Linked; the next frame written flows through it", body = CreateConnectionResponse),
        (status = 400, description = "invalid_json", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found, port_not_found (lists the ports)", body = ErrorBody),
        (status = 409, description = "input_already_connected", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "port_type_mismatch, self_link, invalid_link_options, invalid_request (refusals name the ports that would work)", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
    )
)]
pub(super) async fn create_connection(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<CreateConnectionRequest>,
) -> Result<(StatusCode, Json<CreateConnectionResponse>), ApiError> {
    let options = LinkOptions {
        capacity: request.capacity,
        overflow: request.overflow,
        read_mode: request.read_mode,
    };
    let link_id = state
        .service()
        .connect_with(
            OutputLinkPortRef::new(request.from_processor, request.from_port),
            InputLinkPortRef::new(request.to_processor, request.to_port),
            options,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateConnectionResponse { link_id }),
    ))
}

/// List connections
#[utoipa::path(
    get,
    path = "/api/connections",
    tag = "connections",
    responses(
        (status = 200, description = "Every link with its settings and counters", body = Vec<LinkInfo>),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
    )
)]
pub(super) async fn list_connections(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let snapshot = state.service().get_state_shared().await?;
    Ok(Json(&snapshot.links).into_response())
}

/// Remove connection
#[utoipa::path(
    delete,
    path = "/api/connections/{id}",
    tag = "connections",
    params(("id" = String, Path, description = "Link id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "link_not_found", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
    )
)]
pub(super) async fn remove_connection(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.service().disconnect(LinkUniqueId::new(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start runtime
#[utoipa::path(
    post,
    path = "/api/runtime/start",
    tag = "runtime",
    responses(
        (status = 200, description = "Running (idempotent): answered once every processor's setup has reported (or timed out) and all were released together; the state after starting", body = RuntimeState),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
    )
)]
pub(super) async fn start_runtime(State(state): State<ApiState>) -> Result<Response, ApiError> {
    state.service().start().await?;
    state_response(&state).await
}

/// Stop runtime
#[utoipa::path(
    post,
    path = "/api/runtime/stop",
    tag = "runtime",
    responses(
        (status = 200, description = "Stopped (idempotent); the API server keeps serving", body = RuntimeState),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
    )
)]
pub(super) async fn stop_runtime(State(state): State<ApiState>) -> Result<Response, ApiError> {
    state.service().stop().await?;
    state_response(&state).await
}

/// Get runtime state
#[utoipa::path(
    get,
    path = "/api/runtime/state",
    tag = "runtime",
    responses(
        (status = 200, description = "Status, counts, processors and links, at event `seq`", body = RuntimeState),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn get_state(State(state): State<ApiState>) -> Result<Response, ApiError> {
    state_response(&state).await
}

/// The current state as JSON, from the (possibly shared) snapshot without copying it.
async fn state_response(state: &ApiState) -> Result<Response, ApiError> {
    let snapshot = state.service().get_state_shared().await?;
    let json = state.state_json(&snapshot);
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Processor types
#[utoipa::path(
    get,
    path = "/api/registry",
    tag = "meta",
    responses(
        (status = 200, description = "Registered processor types with description, ports and config JSON Schema (as `streamlib types --json`)", body = Vec<ProcessorDescriptor>),
        (status = 401, description = "unauthorized", body = ErrorBody),
    )
)]
pub(super) async fn registry() -> Json<&'static [ProcessorDescriptor]> {
    Json(PROCESSOR_REGISTRY.descriptors())
}

/// OpenAPI document
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "This API as an OpenAPI 3.1 document"),
        (status = 401, description = "unauthorized", body = ErrorBody),
    )
)]
pub(super) async fn openapi_json(
    State(state): State<ApiState>,
) -> Json<Arc<utoipa::openapi::OpenApi>> {
    Json(state.inner.openapi.clone())
}

/// Unknown path.
pub(super) async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such route; GET /api/openapi.json lists them",
    )
}

/// Known path, wrong method.
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see the Allow header",
    )
}
