//! `GET /api/graph` and `PUT /api/graph`: the running graph as a document, and applying a
//! desired one (see the runtime's `graph_apply`), with the graph's revision as `ETag` and
//! `If-Match` for optimistic concurrency.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::core::graph::{GraphApplied, GraphFile, UiPosition};

/// Query of `PUT /api/graph`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    /// Only plan: answer what would be done, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Query of `GET /api/graph`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The document as a graph file shows it best: config fields and link options at their
    /// defaults left out, no `revision` in the body (the `ETag` still says it).
    #[serde(default)]
    pub minimal: bool,
}

/// The `ETag` of a revision: a strong tag, the number quoted.
fn etag(revision: u64) -> HeaderValue {
    // Digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// What `If-Match` asks for.
enum IfMatch {
    /// No header: the document's own `revision`, if any, is the condition.
    Absent,
    /// `*`: any revision (the document's own is not checked either).
    Any,
    /// One of these revisions (a list of tags matches any of them).
    Revisions(Vec<u64>),
    /// Tags that can never match: weak ones (`W/"3"`; If-Match compares strongly).
    Never,
}

/// Parses `If-Match`: `*`, or one or more entity tags (`"12"`, `"12", "13"`).
fn if_match(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(IfMatch::Absent);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(IfMatch::Any);
    }
    let invalid = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_if_match",
            format!(
                "If-Match must be the graph's ETag (a revision number in quotes, as GET /api/graph sends it), a list of them, or *; got {text:?}"
            ),
        )
    };
    let mut revisions = Vec::new();
    let mut weak = false;
    for tag in text.split(',').map(str::trim) {
        if let Some(rest) = tag.strip_prefix("W/") {
            weak = true;
            rest.trim_matches('"')
                .parse::<u64>()
                .map_err(|_| invalid())?;
            continue;
        }
        let number = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(tag);
        revisions.push(number.parse::<u64>().map_err(|_| invalid())?);
    }
    Ok(match (revisions.is_empty(), weak) {
        (true, true) => IfMatch::Never,
        (true, false) => return Err(invalid()),
        (false, _) => IfMatch::Revisions(revisions),
    })
}

/// Export the graph
///
/// The running graph in the graph-file format `streamlib run` and `serve --graph` read:
/// processors (id, type, effective config) in the order added, connections with their link
/// options resolved, and the graph's `revision`, which every change increments (also the
/// `ETag`). Control-plane processors (the API server) are not in it: they run whatever the
/// graph is. `PUT` of the same document changes nothing. `?minimal=true` leaves out what is at
/// its default (what `serve --save` writes).
#[utoipa::path(
    get,
    path = "/api/graph",
    tag = "graph",
    params(ExportQuery),
    responses(
        (status = 200, description = "The graph document, with its revision (also as ETag; with ?minimal=true the revision is only in the ETag, a weak one: another body of the same revision)", body = GraphFile,
         headers(("ETag" = String, description = "The revision, quoted"))),
        (status = 400, description = "invalid_query", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn get_graph(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let (doc, tag) = if query.minimal {
        let (full, minimal) = state.service().get_graph_for_file().await?;
        // Weak: the same revision as the full document's tag, but not the same bytes.
        let tag = HeaderValue::from_str(&format!("W/\"{}\"", full.revision.unwrap_or(0)))
            .unwrap_or(HeaderValue::from_static("W/\"0\""));
        (minimal, tag)
    } else {
        let doc = state.service().get_graph().await?;
        let tag = etag(doc.revision.unwrap_or(0));
        (doc, tag)
    };
    Ok(([(header::ETAG, tag)], Json(doc)).into_response())
}

/// Apply a graph
///
/// Makes the running graph match the document, by processor id: adds what is new, removes
/// what is gone, applies live config changes in place, restarts (links kept) only processors
/// whose fields that are not live changed, replaces those whose type or ports change, and
/// relinks only changed connections. What did not change is not touched: frames keep flowing
/// through it. All or nothing: a document with problems is refused with every one of them at
/// its place (`processors[2].config.width`), and a setup that fails rolls back what was done.
/// Other changes wait while it runs. `If-Match` (or the document's own `revision`) makes it
/// conditional on the graph not having changed (412 otherwise).
#[utoipa::path(
    put,
    path = "/api/graph",
    tag = "graph",
    params(ApplyQuery,
        ("If-Match" = Option<String>, Header, description = "Apply only if the graph is at this revision (its ETag)")),
    request_body = GraphFile,
    responses(
        (status = 200, description = "The plan as executed (or, with dry_run, as it would be), and the new revision (also as ETag)", body = GraphApplied,
         headers(("ETag" = String, description = "The revision after the apply, quoted"))),
        (status = 400, description = "invalid_json, invalid_query, invalid_if_match", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 412, description = "revision_mismatch: the graph changed since that revision", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "graph_rejected (every problem, each at its place, in `problems`; nothing changed), invalid_request (also a revision beyond int64)", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn put_graph(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ApplyQuery>,
    headers: HeaderMap,
    ApiJson(doc): ApiJson<GraphFile>,
) -> Result<Response, ApiError> {
    let mut doc = doc;
    // Revisions count changes from 0 and are documented as int64: one beyond names no state
    // the graph was ever in (refused as a mistake, not answered 412).
    if doc.revision.is_some_and(|r| i64::try_from(r).is_err()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!(
                "revision must be between 0 and {} (a revision GET /api/graph gave)",
                i64::MAX
            ),
        ));
    }
    let expected = match if_match(&headers)? {
        IfMatch::Absent => None,
        IfMatch::Any => {
            doc.revision = None;
            None
        }
        IfMatch::Revisions(revisions) if revisions.len() == 1 => Some(revisions[0]),
        IfMatch::Revisions(revisions) => {
            // Any of them: the one the graph is at, if listed (the runtime checks it again
            // when it applies).
            let current = state.service().get_graph().await?.revision.unwrap_or(0);
            Some(if revisions.contains(&current) {
                current
            } else {
                revisions[0]
            })
        }
        IfMatch::Never => {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "revision_mismatch",
                "If-Match compares strongly, so a weak tag (W/\"…\") never matches; send the ETag as GET /api/graph gives it",
            ));
        }
    };
    let applied: GraphApplied = state
        .service()
        .apply_graph(doc, query.dry_run, expected)
        .await?;
    let tag = etag(applied.revision);
    Ok(([(header::ETAG, tag)], Json(applied)).into_response())
}

/// Body of `PATCH /api/graph/ui`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UiPatch {
    /// New positions by processor id; `null` unplaces one (it is laid out automatically).
    /// Processors not named keep theirs.
    #[schema(schema_with = positions_schema)]
    #[serde(deserialize_with = "crate::core::graph::optional_object_values")]
    pub positions: std::collections::BTreeMap<String, Option<UiPosition>>,
}

/// `positions`' schema: an object whose values are a position or null (which the derive
/// cannot say of a map of options).
fn positions_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
    let value = OneOfBuilder::new()
        .item(Ref::from_schema_name("UiPosition"))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build();
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(utoipa::openapi::RefOr::T(Schema::OneOf(value))))
        .build()
}

/// The answer to `PATCH /api/graph/ui`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UiPatched {
    /// The graph's revision after the change (unchanged if nothing moved).
    pub revision: u64,
}

/// Move processors in the drawing
///
/// Sets where the named processors are drawn: the graph document's `ui` section, kept through
/// export, apply and `serve --save`. Nothing that runs is touched. All or nothing: an unknown
/// processor (404) or a position out of range (422, at its place) changes nothing. A new
/// revision and a `layout_changed` event if anything moved.
#[utoipa::path(
    patch,
    path = "/api/graph/ui",
    tag = "graph",
    request_body = UiPatch,
    responses(
        (status = 200, description = "In force: the revision now (also as ETag)", body = UiPatched,
         headers(("ETag" = String, description = "The revision after the change, quoted"))),
        (status = 400, description = "invalid_json", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "graph_rejected: a position out of range or a control-plane processor, at its place; invalid_request", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn patch_graph_ui(
    State(state): State<ApiState>,
    ApiJson(patch): ApiJson<UiPatch>,
) -> Result<Response, ApiError> {
    let revision = state.service().set_positions(patch.positions).await?;
    Ok((
        [(header::ETAG, etag(revision))],
        Json(UiPatched { revision }),
    )
        .into_response())
}
