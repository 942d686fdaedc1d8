//! Request bodies are read whole, up to the body limit, before anything else looks at the
//! request: a declared `Content-Length` over the limit is answered `413` at once (no
//! `100 Continue`, nothing read), and no answer — an early `401`/`403`/`429`, a `404`, a route
//! that takes no body — leaves unread bytes on a keep-alive connection (they would end it
//! under a client that does not know). A body that takes longer than the header timeout to
//! arrive is answered `408`; those error answers say `Connection: close`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::ApiState;
use super::error::ApiError;

/// The middleware (outermost layer of the router).
pub(crate) async fn guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let max_body = state.inner.options.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > max_body as u64) {
        return closing(too_large(len.to_string(), max_body));
    }
    let has_body = declared.is_some_and(|len| len > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let wait = state.inner.options.header_timeout;
    let capacity = declared.map_or(0, |len| len as usize).min(max_body);
    let read = tokio::time::timeout(wait, read_whole(body, max_body, capacity)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return closing(too_large(format!("over {max_body}"), max_body));
        }
        Ok(Err(e)) => {
            return closing(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("the request body could not be read: {e}"),
            ));
        }
        Err(_) => {
            return closing(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} ms (--header-timeout-ms)",
                    wait.as_millis()
                ),
            ));
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Reads a body of at most `max` bytes into one buffer. Each chunk is copied and dropped at
/// once: kept, a chunk would pin the read buffer it was cut from, and a client trickling one
/// byte per packet could make a 64 KiB body hold hundreds of megabytes.
async fn read_whole(
    body: Body,
    max: usize,
    capacity: usize,
) -> Result<axum::body::Bytes, axum::BoxError> {
    let mut body = Limited::new(body, max);
    let mut buf = bytes::BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn too_large(size: String, max_body: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the request body is {size} bytes; this server takes at most {max_body} (--max-body-bytes)"
        ),
    )
}

/// The error as a response that closes the connection (part of the body may be unread).
fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
