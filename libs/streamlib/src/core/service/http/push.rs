//! The WebSocket session of the routes that only send — `WS /api/preview` and `WS /api/tap`:
//! a first message saying what the client will get, then whatever its [`PushSource`] yields,
//! with the pings, the closing handshake and the shutdown of `WS /api/events`.
//!
//! A source yields only when the client has taken the previous messages (the socket write
//! returned): a client that reads slowly is sent less, never queued for. One that stops reading
//! is closed by the server's write timeout.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::http::StatusCode;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;

use super::ApiState;
use super::error::{ApiError, ErrorDetail};
use super::websocket::{ConnectedClient, MISSED_PONGS_LIMIT, close, read_error_close};

/// What a push source has next.
pub(super) enum Push {
    /// Messages to write, in order (flushed together).
    Send(Vec<Message>),
    /// The end: `{"type":"end","message"}` is sent, then a close frame with `code` and the
    /// short `reason` (close reasons are at most 123 bytes).
    End {
        code: u16,
        reason: &'static str,
        message: String,
    },
}

/// What a push route sends: its next messages, waited for.
pub(super) trait PushSource: Send {
    /// The next messages for the client. Must be cancel-safe: it is raced against the client's
    /// messages and the ping timer, and dropped when one of those comes first.
    fn next(&mut self) -> impl Future<Output = Push> + Send;
}

/// The answer to a plain HTTP request on a WebSocket route.
pub(super) fn websocket_required(
    path: &str,
    rejection: axum::extract::ws::rejection::WebSocketUpgradeRejection,
) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "not_websocket",
        format!("{path} is a WebSocket endpoint: {rejection}"),
    )
}

/// A message as JSON text.
pub(super) fn json_message(value: &impl Serialize) -> Message {
    // Plain structs of strings and numbers: serializing them cannot fail.
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(value).unwrap_or_default(),
    ))
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Notice<'a> {
    End { message: &'a str },
    Error { error: ErrorDetail },
}

/// Runs a push session: `hello`, then the source's messages until it ends, the client goes,
/// or the server shuts down.
pub(super) async fn push_session(
    socket: WebSocket,
    state: ApiState,
    hello: Message,
    mut source: impl PushSource,
) {
    let _client = ConnectedClient::new(&state);
    let (mut tx, mut rx) = socket.split();
    if tx.send(hello).await.is_err() {
        return;
    }
    let ping_every = state.inner.options.ws_ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_pong = Instant::now();
    let mut shutdown = state.inner.shutdown.clone();
    loop {
        tokio::select! {
            push = source.next() => match push {
                Push::Send(messages) => {
                    for message in messages {
                        if tx.feed(message).await.is_err() {
                            return;
                        }
                    }
                    if tx.flush().await.is_err() {
                        return;
                    }
                }
                Push::End { code, reason, message } => {
                    let _ = tx.send(json_message(&Notice::End { message: &message })).await;
                    close(&mut tx, code, reason).await;
                    return;
                }
            },
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                    let error = ErrorDetail {
                        code: "invalid_message".to_string(),
                        message: "this route only sends; it takes no messages (close the connection to stop)".to_string(),
                        problems: None,
                    };
                    if tx.send(json_message(&Notice::Error { error })).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(Message::Ping(_))) => {} // answered by the WebSocket layer
                Some(Ok(Message::Close(_))) => {
                    // The echo of the close frame is queued; flushing sends it.
                    let _ = tx.flush().await;
                    return;
                }
                None => return,
                Some(Err(e)) => {
                    if let Some((code, reason)) = read_error_close(e) {
                        tracing::info!(code, reason, "closing a WebSocket client after a bad message");
                        close(&mut tx, code, reason).await;
                    }
                    return;
                }
            },
            _ = ping.tick() => {
                if last_pong.elapsed() > ping_every * MISSED_PONGS_LIMIT + Duration::from_secs(1) {
                    close(&mut tx, 1001, "no pong received").await;
                    return;
                }
                if tx.send(Message::Ping(axum::body::Bytes::from_static(b"streamlib"))).await.is_err() {
                    return;
                }
            }
            _ = shutdown.changed() => {
                close(&mut tx, 1001, "the API server is shutting down").await;
                return;
            }
        }
    }
}
