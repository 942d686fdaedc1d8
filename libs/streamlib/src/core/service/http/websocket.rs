//! `WS /api/events`: a snapshot of the runtime, then every event after it, in order.
//!
//! Messages from the server (JSON text):
//! - `{"type":"snapshot","seq":N,"state":{...}}` first, and again after a lag;
//! - events as published: `{"seq":N+1,"timestamp_ms":...,"type":"processor_added",...}` — every
//!   event with `seq` > the snapshot's, in order, none lost in between;
//! - `{"type":"lagged","missed":K}` when this client fell more than its queue (1024 events)
//!   behind, followed by a fresh snapshot: K is the exact number of events (of any type) the
//!   client did not see between the last one it saw and the new snapshot;
//! - `{"type":"filter_updated","types":[...],"processors":[...]}` after a filter change;
//! - `{"type":"error","error":{"code","message"}}` for a bad client message.
//!
//! Filters: query `?types=processor_added,link_created&processors=cam,display` or a message
//! `{"type":"filter","types":[...]|null,"processors":[...]|null}` (`null` = everything).
//! A processor filter keeps events about those processors (including links touching them).
//! Send `{"type":"snapshot"}` for a fresh snapshot at any time.
//!
//! A client message over 16 KiB is answered with close code 1009 (message too big), a text
//! message that is not UTF-8 with 1007 (invalid data), as RFC 6455 says; both are logged.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::ApiState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::server::ConnectionSlot;
use crate::core::error::StreamError;
use crate::core::graph::RuntimeState;
use crate::core::runtime::{RuntimeEvent, RuntimeEventKind};

/// Events a client may fall behind before it is told it lagged.
const CLIENT_QUEUE: usize = 1024;
/// Frames written per flush (one syscall) when events queue up.
const MAX_BATCH: usize = 256;

/// What the fan-out task hands every session.
#[derive(Clone)]
pub(super) enum Wire {
    /// An event and its JSON, shared by all sessions (serialized once).
    Event(Arc<(RuntimeEvent, Utf8Bytes)>),
    /// The fan-out task itself fell behind the runtime by this many events.
    Lagged(u64),
}

/// Serializes each runtime event once and re-broadcasts the bytes to every WebSocket session:
/// with 100 clients, the per-client cost is a reference count and a socket write, not a clone
/// and a serialization.
pub(super) struct FanOut {
    tx: broadcast::Sender<Wire>,
    started: Once,
}

impl FanOut {
    pub(super) fn new() -> Self {
        Self {
            tx: broadcast::channel(CLIENT_QUEUE).0,
            started: Once::new(),
        }
    }

    /// Subscribes a session, starting the fan-out task on first use (inside the server's Tokio
    /// runtime). The task subscribes to the runtime before any session takes its snapshot, so
    /// every event after a snapshot reaches the session.
    fn subscribe(&self, state: &ApiState) -> broadcast::Receiver<Wire> {
        self.started.call_once(|| {
            let mut events = state.service().subscribe_events();
            let tx = self.tx.clone();
            tokio::spawn(async move {
                loop {
                    let wire = match events.recv().await {
                        Ok(event) => match serde_json::to_string(&event) {
                            Ok(json) => Wire::Event(Arc::new((event, Utf8Bytes::from(json)))),
                            Err(_) => continue,
                        },
                        Err(RecvError::Lagged(missed)) => Wire::Lagged(missed),
                        Err(RecvError::Closed) => break,
                    };
                    // No subscribers is fine: nobody is watching right now.
                    let _ = tx.send(wire);
                }
            });
        });
        self.tx.subscribe()
    }
}

/// Largest client message accepted (filters are tiny).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// A client that answers no ping for this many intervals is disconnected.
const MISSED_PONGS_LIMIT: u32 = 3;

/// Query parameters of `/api/events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// Comma-separated event types to receive (default: all).
    types: Option<String>,
    /// Comma-separated processor ids whose events to receive (default: all).
    processors: Option<String>,
    /// Bearer token, for clients that cannot set an Authorization header (browsers).
    #[allow(dead_code)]
    token: Option<String>,
}

/// Which events a client receives. `None` means no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Event `type`s to pass.
    pub types: Option<BTreeSet<String>>,
    /// Processor ids whose events pass.
    pub processors: Option<BTreeSet<String>>,
}

impl EventFilter {
    fn parse_list(list: Option<&str>) -> Option<BTreeSet<String>> {
        list.map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
    }

    /// Checks that every type named is a known event type.
    fn validate(&self) -> Result<(), String> {
        if let Some(types) = &self.types {
            let unknown: Vec<&str> = types
                .iter()
                .map(String::as_str)
                .filter(|t| !RuntimeEventKind::TYPE_NAMES.contains(t))
                .collect();
            if !unknown.is_empty() {
                return Err(format!(
                    "unknown event type(s): {}; known types: {}",
                    unknown.join(", "),
                    RuntimeEventKind::TYPE_NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Whether `event` passes this filter.
    pub fn matches(&self, event: &RuntimeEvent) -> bool {
        if let Some(types) = &self.types {
            if !types.contains(event.kind.type_name()) {
                return false;
            }
        }
        match &self.processors {
            None => true,
            Some(ids) => match &event.kind {
                RuntimeEventKind::LinkCreated { from, to, .. }
                | RuntimeEventKind::LinkRemoved { from, to, .. } => [from, to]
                    .iter()
                    .any(|end| end.rsplit_once('.').is_some_and(|(p, _)| ids.contains(p))),
                RuntimeEventKind::LayoutChanged { processors } => {
                    processors.iter().any(|p| ids.contains(p.as_str()))
                }
                kind => kind
                    .processor_id()
                    .is_some_and(|p| ids.contains(p.as_str())),
            },
        }
    }
}

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Replace the filter.
    Filter {
        /// Event types to pass (`null`: all).
        #[serde(default)]
        types: Option<BTreeSet<String>>,
        /// Processor ids to pass (`null`: all).
        #[serde(default)]
        processors: Option<BTreeSet<String>>,
    },
    /// Send a fresh snapshot.
    Snapshot,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerMessage<'a> {
    Snapshot {
        seq: u64,
        state: &'a RuntimeState,
    },
    Lagged {
        missed: u64,
    },
    FilterUpdated {
        types: &'a Option<BTreeSet<String>>,
        processors: &'a Option<BTreeSet<String>>,
    },
    Error {
        error: super::error::ErrorDetail,
    },
}

/// Subscribe to runtime events
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    params(EventsQuery),
    responses(
        (status = 101, description = "WebSocket: a snapshot, then every event after it in order (see the module docs for the message types)"),
        (status = 400, description = "invalid_filter (unknown event type), or not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden (Host or Origin)", body = ErrorBody),
    )
)]
pub(super) async fn events(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    slot: Option<Extension<ConnectionSlot>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match accept(ws, "/api/events") {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let filter = EventFilter {
        types: EventFilter::parse_list(query.types.as_deref()),
        processors: EventFilter::parse_list(query.processors.as_deref()),
    };
    if let Err(message) = filter.validate() {
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", message).into_response();
    }
    ws.on_upgrade(move |socket| async move {
        // The session holds its connection's slot under the server's connection cap.
        let _slot = slot;
        session(socket, state, filter).await;
    })
}

/// The upgrade of a WebSocket route (`path`, for the error), with the limit on what clients
/// send; a plain HTTP request gets `400 not_websocket`.
pub(super) fn accept(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    path: &str,
) -> Result<WebSocketUpgrade, ApiError> {
    match ws {
        Ok(ws) => Ok(ws
            .max_message_size(MAX_CLIENT_MESSAGE)
            // Checked on the frame header: an oversized frame is refused before it is buffered.
            .max_frame_size(MAX_CLIENT_MESSAGE)),
        Err(rejection) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_websocket",
            format!("{path} is a WebSocket endpoint: {rejection}"),
        )),
    }
}

/// Counts a WebSocket client as connected while it lives (dropped however the session ends).
pub(super) struct ConnectedClient(ApiState);

impl ConnectedClient {
    pub(super) fn new(state: &ApiState) -> Self {
        state
            .inner
            .metrics
            .ws_clients
            .fetch_add(1, Ordering::Relaxed);
        Self(state.clone())
    }
}

impl Drop for ConnectedClient {
    fn drop(&mut self) {
        self.0
            .inner
            .metrics
            .ws_clients
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every WebSocket session does besides its own messages (events, previews, taps): ping
/// the client and drop it when it stops answering, complete its closing handshake, say why a
/// bad frame ends it, and close when the server shuts down.
pub(super) struct Keepalive {
    every: Duration,
    ping: tokio::time::Interval,
    last_pong: Instant,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// A timer of [`Keepalive`] that came due.
pub(super) enum Due {
    Ping,
    Shutdown,
}

/// A client frame, once [`Keepalive::frame`] has dealt with the ones every session handles alike.
pub(super) enum ClientFrame {
    /// A text or binary message: the session's to answer.
    Data(Message),
    /// A pong or a ping, dealt with: go on.
    Handled,
    /// The connection is over (closed by the client, gone, or refused with a close frame).
    Ended,
}

impl Keepalive {
    pub(super) fn new(state: &ApiState) -> Self {
        let every = state.inner.options.ws_ping_interval;
        Self {
            every,
            ping: tokio::time::interval_at(tokio::time::Instant::now() + every, every),
            last_pong: Instant::now(),
            shutdown: state.inner.shutdown.clone(),
        }
    }

    /// The next timer due (cancel-safe: raced against the session's other work).
    pub(super) async fn due(&mut self) -> Due {
        tokio::select! {
            _ = self.ping.tick() => Due::Ping,
            _ = self.shutdown.changed() => Due::Shutdown,
        }
    }

    /// Acts on a timer: pings the client, or closes its connection (going away: no pong, or
    /// the server shutting down). `false` when the session is over.
    pub(super) async fn answer(&mut self, due: Due, tx: &mut WsSink) -> bool {
        match due {
            Due::Ping => {
                if self.last_pong.elapsed()
                    > self.every * MISSED_PONGS_LIMIT + Duration::from_secs(1)
                {
                    close(tx, 1001, "no pong received").await;
                    return false;
                }
                tx.send(Message::Ping(axum::body::Bytes::from_static(b"streamlib")))
                    .await
                    .is_ok()
            }
            Due::Shutdown => {
                close(tx, 1001, "the API server is shutting down").await;
                false
            }
        }
    }

    /// Deals with a frame read from the client, all but its data messages.
    pub(super) async fn frame(
        &mut self,
        incoming: Option<Result<Message, axum::Error>>,
        tx: &mut WsSink,
    ) -> ClientFrame {
        match incoming {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                ClientFrame::Data(message)
            }
            Some(Ok(Message::Pong(_))) => {
                self.last_pong = Instant::now();
                ClientFrame::Handled
            }
            Some(Ok(Message::Ping(_))) => ClientFrame::Handled, // answered by the WebSocket layer
            // Complete the closing handshake: the client gets its close frame back (the
            // WebSocket layer queued the echo; flushing sends it) instead of a dropped
            // connection.
            Some(Ok(Message::Close(_))) => {
                let _ = tx.flush().await;
                ClientFrame::Ended
            }
            None => ClientFrame::Ended,
            Some(Err(e)) => {
                // The WebSocket layer sends no close frame on a read error; the sending half
                // still works, so say why.
                if let Some((code, reason)) = read_error_close(e) {
                    tracing::info!(
                        code,
                        reason,
                        "closing a WebSocket client after a bad message"
                    );
                    close(tx, code, reason).await;
                }
                ClientFrame::Ended
            }
        }
    }
}

async fn session(socket: WebSocket, state: ApiState, mut filter: EventFilter) {
    let _client = ConnectedClient::new(&state);
    // Subscribe before taking the snapshot: every event published after the snapshot is then
    // in the receiver, and the ones already reflected in it are skipped by `seq`.
    let mut wire = state.inner.fan_out.subscribe(&state);
    let (mut tx, mut rx) = socket.split();
    let Some(mut last_seq) = send_snapshot(&state, &mut tx).await else {
        return;
    };
    let mut keepalive = Keepalive::new(&state);

    loop {
        tokio::select! {
            first = wire.recv() => {
                // Write everything already queued in one flush.
                let mut next = Some(first.map_err(Missed::from));
                let mut fed = 0;
                let mut lagged = None;
                while let Some(item) = next.take() {
                    match item {
                        Ok(Wire::Event(event)) => {
                            let (event, json) = &*event;
                            if event.seq > last_seq {
                                last_seq = event.seq;
                                if filter.matches(event) {
                                    if tx.feed(Message::Text(json.clone())).await.is_err() {
                                        return;
                                    }
                                    fed += 1;
                                }
                            }
                        }
                        Ok(Wire::Lagged(missed)) | Err(Missed::Lagged(missed)) => {
                            lagged = Some(lagged.unwrap_or(0) + missed);
                        }
                        Err(Missed::Closed) => {
                            close(&mut tx, 1001, "the runtime shut down").await;
                            return;
                        }
                        Err(Missed::Empty) => break,
                    }
                    if fed < MAX_BATCH && lagged.is_none() {
                        next = Some(wire.try_recv().map_err(Missed::from));
                    }
                }
                if tx.flush().await.is_err() {
                    return;
                }
                state.inner.metrics.events_sent.fetch_add(fed as u64, Ordering::Relaxed);
                if lagged.is_some() {
                    // Snapshot first: everything up to its seq that this client did not see
                    // (dropped from its queue, or still queued and now superseded) is missed.
                    let Some(snapshot) = take_snapshot(&state, &mut tx).await else {
                        return;
                    };
                    let missed = snapshot.seq.saturating_sub(last_seq);
                    state.inner.metrics.events_missed.fetch_add(missed, Ordering::Relaxed);
                    if send_json(&mut tx, &ServerMessage::Lagged { missed }).await.is_err()
                        || send_json(&mut tx, &ServerMessage::Snapshot { seq: snapshot.seq, state: &snapshot }).await.is_err()
                    {
                        return;
                    }
                    last_seq = snapshot.seq;
                }
            },
            incoming = rx.next() => match keepalive.frame(incoming, &mut tx).await {
                ClientFrame::Data(Message::Text(text)) => {
                    let ok = match handle_client_message(&mut filter, text.as_str()) {
                        ClientReply::Snapshot => match send_snapshot(&state, &mut tx).await {
                            Some(seq) => {
                                last_seq = seq;
                                true
                            }
                            None => false,
                        },
                        ClientReply::Filter => send_json(&mut tx, &ServerMessage::FilterUpdated {
                            types: &filter.types,
                            processors: &filter.processors,
                        }).await.is_ok(),
                        ClientReply::Error(code, message) => send_json(&mut tx, &ServerMessage::Error {
                            error: super::error::ErrorDetail { code: code.to_string(), message, problems: None, field: None },
                        }).await.is_ok(),
                    };
                    if !ok {
                        return;
                    }
                }
                ClientFrame::Data(_) => {
                    let error = super::error::ErrorDetail {
                        code: "invalid_message".to_string(),
                        message: "send JSON text messages".to_string(),
                        problems: None,
                        field: None,
                    };
                    if send_json(&mut tx, &ServerMessage::Error { error }).await.is_err() {
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

/// Why no event came out of a session's queue.
enum Missed {
    Lagged(u64),
    Closed,
    Empty,
}

impl From<RecvError> for Missed {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Lagged(n) => Missed::Lagged(n),
            RecvError::Closed => Missed::Closed,
        }
    }
}

impl From<TryRecvError> for Missed {
    fn from(e: TryRecvError) -> Self {
        match e {
            TryRecvError::Lagged(n) => Missed::Lagged(n),
            TryRecvError::Closed => Missed::Closed,
            TryRecvError::Empty => Missed::Empty,
        }
    }
}

enum ClientReply {
    Snapshot,
    Filter,
    Error(&'static str, String),
}

fn handle_client_message(filter: &mut EventFilter, text: &str) -> ClientReply {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Snapshot) => ClientReply::Snapshot,
        Ok(ClientMessage::Filter { types, processors }) => {
            let next = EventFilter { types, processors };
            match next.validate() {
                Ok(()) => {
                    *filter = next;
                    ClientReply::Filter
                }
                Err(message) => ClientReply::Error("invalid_filter", message),
            }
        }
        Err(e) => ClientReply::Error(
            "invalid_message",
            format!(
                "{e}; expected {{\"type\":\"filter\",\"types\":[...],\"processors\":[...]}} or {{\"type\":\"snapshot\"}}"
            ),
        ),
    }
}

pub(super) type WsSink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Sends a snapshot; returns its `seq`, or `None` if the socket or the runtime is gone.
async fn send_snapshot(state: &ApiState, tx: &mut WsSink) -> Option<u64> {
    let snapshot = take_snapshot(state, tx).await?;
    send_json(
        tx,
        &ServerMessage::Snapshot {
            seq: snapshot.seq,
            state: &snapshot,
        },
    )
    .await
    .ok()
    .map(|()| snapshot.seq)
}

/// Gets the runtime state; on failure tells the client why and closes.
async fn take_snapshot(state: &ApiState, tx: &mut WsSink) -> Option<Arc<RuntimeState>> {
    let timeout = state.inner.options.request_timeout;
    let snapshot = match tokio::time::timeout(timeout, state.service().get_state_shared()).await {
        Ok(result) => result,
        Err(_) => Err(StreamError::Timeout(
            "the runtime did not answer with a snapshot".to_string(),
        )),
    };
    match snapshot {
        Ok(runtime_state) => Some(runtime_state),
        Err(e) => {
            let error = super::error::ErrorDetail {
                code: e.code().to_string(),
                message: e.to_string(),
                problems: None,
                field: None,
            };
            let _ = send_json(tx, &ServerMessage::Error { error }).await;
            close(tx, 1011, "no snapshot available").await;
            None
        }
    }
}

async fn send_json(tx: &mut WsSink, value: &impl Serialize) -> Result<(), ()> {
    let text = serde_json::to_string(value).map_err(|_| ())?;
    tx.send(Message::Text(Utf8Bytes::from(text)))
        .await
        .map_err(|_| ())
}

/// The close code and reason owed to a client whose message could not be read; `None` when
/// the connection itself failed (nothing can be sent).
fn read_error_close(e: axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
    match *e.into_inner().downcast::<WsError>().ok()? {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => Some((
            close_code::SIZE,
            "message too big: client messages are at most 16 KiB",
        )),
        WsError::Utf8(_) => Some((close_code::INVALID, "text message is not valid UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((close_code::PROTOCOL, "WebSocket protocol violation")),
        _ => None,
    }
}

pub(super) async fn close(tx: &mut WsSink, code: u16, reason: &'static str) {
    // The peer may already be gone; closing is best effort.
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
}
