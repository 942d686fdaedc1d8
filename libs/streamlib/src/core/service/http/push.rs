//! The WebSocket session of the routes that only send — `WS /api/preview` and `WS /api/tap`:
//! a first message saying what the client will get, then whatever its [`PushSource`] yields,
//! with the pings, the closing handshake and the shutdown every session shares
//! (`websocket::Keepalive`).
//!
//! A source yields only when the client has taken the previous messages (the socket write
//! returned): a client that reads slowly is sent less, never queued for. One that stops reading
//! is closed by the server's write timeout.

use std::future::Future;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;

use super::ApiState;
use super::error::ErrorDetail;
use super::websocket::{ClientFrame, ConnectedClient, Keepalive, close};

/// What a push source has next. Cheap to clone: a preview hands the same one to every viewer.
#[derive(Clone)]
pub(super) enum Push {
    /// Messages to write, in order (flushed together); shared, not copied, between viewers.
    Send(std::sync::Arc<[Message]>),
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
    let mut keepalive = Keepalive::new(&state);
    loop {
        tokio::select! {
            push = source.next() => match push {
                Push::Send(messages) => {
                    for message in messages.iter() {
                        if tx.feed(message.clone()).await.is_err() {
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
            incoming = rx.next() => match keepalive.frame(incoming, &mut tx).await {
                ClientFrame::Data(_) => {
                    let error = ErrorDetail {
                        code: "invalid_message".to_string(),
                        message: "this route only sends; it takes no messages (close the connection to stop)".to_string(),
                        problems: None,
                        field: None,
                    };
                    if tx.send(json_message(&Notice::Error { error })).await.is_err() {
                        return;
                    }
                }
                ClientFrame::Handled => {}
                ClientFrame::Ended => return,
            },
            due = keepalive.due() => {
                if !keepalive.answer(due, &mut tx).await {
                    return;
                }
            }
        }
    }
}
