//! The one HTTP error type: every failure becomes `{"error": {"code", "message"}}` with a
//! fitting status. Client mistakes keep their message; internal faults are logged in full and
//! answered with a generic 500.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::core::error::{ErrorKind, StreamError};

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// Machine-readable code and human-readable message of an error.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `processor_not_found`, `invalid_config`, `rate_limited`.
    pub code: String,
    /// What was wrong and what would have been accepted.
    pub message: String,
    /// For `graph_rejected`: every problem of the document, each at its place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<crate::core::graph::GraphProblem>>,
    /// For `invalid_config`: the config field at fault (`width`, `frequencies[2]`), when one
    /// is known, so a form can show the message beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An HTTP error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
    problems: Option<Vec<crate::core::graph::GraphProblem>>,
    field: Option<String>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            problems: None,
            field: None,
        }
    }

    /// 429 with a `Retry-After` header; `what` says what was counted ("changes",
    /// "failed authentication attempts").
    pub fn rate_limited(what: &str, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many {what} from this address; retry in {retry_after_secs}s (the server's limit is set with --rate-limit and --rate-limit-burst)"
                ),
            )
        }
    }

    /// `400 invalid_query`: a query parameter out of range or not for this route.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// The same error with a `Retry-After` header of `secs`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        let status = status_of(e.kind());
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = e.code(), error = %e, "internal error answering an API request");
            return ApiError::new(
                status,
                "internal",
                "internal error; the server log has the details",
            );
        }
        let problems = match &e {
            StreamError::GraphRejected { problems } => Some(problems.clone()),
            _ => None,
        };
        let field = match &e {
            StreamError::InvalidConfig { field, .. } => field.clone(),
            _ => None,
        };
        ApiError {
            problems,
            field,
            ..ApiError::new(status, e.code(), e.to_string())
        }
    }
}

/// The HTTP status of each kind of error: the one place statuses come from.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::BAD_REQUEST => "invalid_json",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_request",
        };
        // axum's texts lead with its own phrasing ("Failed to deserialize the JSON body into
        // the target type: ..."); say what is wrong in ours, keeping serde's precise detail.
        let text = r.body_text();
        let detail = |prefix: &str| text.strip_prefix(prefix).map(str::to_string);
        let message = match &r {
            JsonRejection::JsonDataError(_) => {
                detail("Failed to deserialize the JSON body into the target type: ")
                    .map(|d| format!("the JSON body does not fit this route: {d}"))
            }
            JsonRejection::JsonSyntaxError(_) => {
                detail("Failed to parse the request body as JSON: ")
                    .map(|d| format!("the body is not valid JSON: {d}"))
            }
            JsonRejection::MissingJsonContentType(_) => Some(
                "send the body as JSON, with the header 'Content-Type: application/json'"
                    .to_string(),
            ),
            _ => None,
        }
        .unwrap_or(text);
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                problems: self.problems,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A JSON request body: `axum::Json` whose rejections are [`ApiError`]s (so a bad body gets our
/// JSON error), and which takes only a JSON object. Every body of this API is one; serde would
/// otherwise also build a struct from an array (`[]` as an empty graph document, which would
/// remove every processor) and a config from `null`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!(
                    "the JSON body must be an object, got {}",
                    crate::core::processors::json_kind(&value)
                ),
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| {
                let path = e.path().to_string();
                let detail = e.into_inner();
                let at = if path == "." {
                    String::new()
                } else {
                    format!("{path}: ")
                };
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    format!("the JSON body does not fit this route: {at}{detail}"),
                )
            })
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
