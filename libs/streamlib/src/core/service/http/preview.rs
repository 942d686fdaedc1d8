//! `WS /api/preview?port=PROC.PORT&fps=&width=`: a live view of a port, shared by everyone who
//! watches it.
//!
//! Each (port, fps, width) is one *preview stream*: one task that watches the port
//! (`links::PortWatch`), encodes a video frame as JPEG at most `fps` times a second (on the
//! blocking pool, one preview image at a time for the whole server), and puts the result in a
//! one-slot channel that every viewer of the stream reads. A port is the output whose frames
//! are watched: previews of an input and of the output feeding it are one stream (an input's
//! preview follows the output that fed it when the stream began). However many viewers, a
//! frame is encoded once; a viewer that reads slowly gets the newest result and skips the rest
//! (nothing queues for it); the pipeline never waits for anyone. When the last viewer goes, the stream ends and the port is
//! no longer watched: no viewer, no copy and no encoding.
//!
//! Messages (JSON text unless said):
//! - first `{"type":"preview","port","frame_type","fps","width"}`;
//! - video: `{"type":"frame","frame_number","timestamp_ns","width","height","bytes"}` then the
//!   JPEG as one binary message;
//! - audio: `{"type":"levels","frame_number","timestamp_ns","sample_rate","channels":[{"peak_dbfs","rms_dbfs"}]}`
//!   every 1/fps s (20 Hz by default), peak and RMS over the frames the stream took meanwhile
//!   (all of them unless the server is too busy to take each as it is written);
//! - data: `{"type":"data","name","payload","frame_number","timestamp_ns"}`, the newest frame at
//!   most `fps` times a second;
//! - `{"type":"error","error":{...}}` when a frame cannot be encoded (once per distinct error;
//!   the stream goes on);
//! - `{"type":"end","message"}` then a close frame when the port goes (its processor removed).
//!
//! At most `max_previews` streams exist at once (viewers count against the connection cap).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::ApiState;
use super::error::{ApiError, ApiQuery, ErrorBody, ErrorDetail};
use super::push::{Push, PushSource, json_message, push_session};
use super::server::ConnectionSlot;
use super::snapshot::{ImageFormat, MAX_SNAPSHOT_SIDE, encode_image};
use super::websocket::accept;
use crate::core::dsp::{ChannelLevel, LevelMeter};
use crate::core::frames::{AnyFrame, FrameType, VideoFrame};
use crate::core::graph::OutputLinkPortRef;
use crate::core::links::PortWatch;
use crate::core::processors::video::scaled_size;

/// Rates a preview may be asked for, per second.
const MAX_PREVIEW_FPS: u32 = 60;
/// Video previews at this many frames a second unless asked otherwise.
const DEFAULT_VIDEO_FPS: u32 = 10;
/// Audio meters this many times a second unless asked otherwise.
const DEFAULT_AUDIO_FPS: u32 = 20;
/// Data frames at most this many times a second unless asked otherwise.
const DEFAULT_DATA_FPS: u32 = 10;
/// Video previews are scaled to at most this width unless asked otherwise (never up).
const DEFAULT_PREVIEW_WIDTH: u32 = 640;
/// Preview images encoded at once, all streams together: previews use at most this many cores
/// for encoding whatever clients ask (streams beyond it get fewer images a second), and leave
/// the snapshots' encoders alone.
const PREVIEW_ENCODERS: usize = 1;

/// Query of `WS /api/preview`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The port to preview, `processor.port` (an output, or an input: what its link carries).
    pub port: String,
    /// Video: frames encoded a second; audio: meter readings a second; data: frames a second
    /// at most (1–60; default 10, audio 20).
    pub fps: Option<u32>,
    /// Video: the image width (1–4096, never more than the frame's; the height keeps the
    /// aspect ratio). Default: the frame's, at most 640.
    pub width: Option<u32>,
    /// Bearer token, for clients that cannot set an Authorization header (browsers).
    #[allow(dead_code)]
    pub token: Option<String>,
}

/// The streams that exist now, by what they show.
pub(super) struct PreviewHub {
    streams: Mutex<HashMap<StreamKey, Arc<PreviewStream>>>,
    /// Permits to encode (see [`PREVIEW_ENCODERS`]).
    encoders: Arc<tokio::sync::Semaphore>,
    /// Video frames encoded for previews, all streams together (what sharing saves shows here).
    pub(super) encodes: AtomicU64,
    /// Clients viewing a preview now.
    pub(super) viewers: AtomicI64,
}

impl Default for PreviewHub {
    fn default() -> Self {
        Self {
            streams: Mutex::default(),
            encoders: Arc::new(tokio::sync::Semaphore::new(PREVIEW_ENCODERS)),
            encodes: AtomicU64::new(0),
            viewers: AtomicI64::new(0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StreamKey {
    /// The output port watched (`PortWatch::port_identity`).
    port: usize,
    fps: u32,
    width: Option<u32>,
}

/// One preview stream: its newest message, read by every viewer.
struct PreviewStream {
    tx: watch::Sender<Option<Push>>,
}

impl PreviewHub {
    /// Preview streams running now.
    pub(super) fn streams(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Arc<PreviewStream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the stream if nobody views it (checked under the lock joining takes, so a
    /// viewer joining meanwhile keeps it).
    fn remove_if_unviewed(&self, key: &StreamKey, stream: &Arc<PreviewStream>) -> bool {
        let mut streams = self.lock();
        if stream.tx.receiver_count() > 0 {
            return false;
        }
        if streams.get(key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            streams.remove(key);
        }
        true
    }

    fn remove(&self, key: &StreamKey, stream: &Arc<PreviewStream>) {
        let mut streams = self.lock();
        if streams.get(key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            streams.remove(key);
        }
    }
}

#[derive(Serialize)]
struct Hello<'a> {
    r#type: &'static str,
    port: &'a str,
    frame_type: FrameType,
    fps: u32,
    width: Option<u32>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PreviewMessage<'a> {
    Frame {
        frame_number: u64,
        timestamp_ns: u64,
        width: u32,
        height: u32,
        bytes: usize,
    },
    Levels {
        frame_number: u64,
        timestamp_ns: u64,
        sample_rate: u32,
        channels: Vec<ChannelLevel>,
    },
    Data {
        name: &'a str,
        payload: &'a serde_json::Value,
        frame_number: u64,
        timestamp_ns: u64,
    },
    Error {
        error: ErrorDetail,
    },
}

/// Parses `processor.port` from a query.
pub(super) fn port_param(port: &str) -> Result<OutputLinkPortRef, ApiError> {
    OutputLinkPortRef::parse(port).map_err(|e| ApiError::invalid_query(format!("port: {e}")))
}

/// Live preview of a port (WebSocket)
///
/// Video as JPEG images, audio as level meters, data as its newest frames — encoded once per
/// port, rate and size, however many clients watch (see the module docs for the messages).
#[utoipa::path(
    get,
    path = "/api/preview",
    tag = "processors",
    params(PreviewQuery),
    responses(
        (status = 101, description = "WebSocket: a `preview` message, then the port's frames (JPEG binary messages each after a `frame` message, `levels`, or `data`), newest first, never queued"),
        (status = 400, description = "invalid_query (port not written processor.port, fps or width out of range, width for a port that is not video), not_websocket", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden (Host or Origin)", body = ErrorBody),
        (status = 404, description = "processor_not_found, port_not_found", body = ErrorBody),
        (status = 409, description = "conflict: an input that is not connected", body = ErrorBody),
        (status = 503, description = "too_many_previews (see Retry-After), runtime_unavailable", body = ErrorBody),
    )
)]
pub(super) async fn preview(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<PreviewQuery>,
    slot: Option<Extension<ConnectionSlot>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = accept(ws, "/api/preview")?;
    let port = port_param(&query.port)?;
    if let Some(fps) = query.fps {
        if !(1..=MAX_PREVIEW_FPS).contains(&fps) {
            return Err(ApiError::invalid_query(format!(
                "fps is {fps}; it must be 1 to {MAX_PREVIEW_FPS}"
            )));
        }
    }
    if let Some(width) = query.width {
        if !(1..=MAX_SNAPSHOT_SIDE).contains(&width) {
            return Err(ApiError::invalid_query(format!(
                "width is {width}; it must be 1 to {MAX_SNAPSHOT_SIDE}"
            )));
        }
    }
    // Asked of the runtime for every viewer: it checks that the port exists now and says what
    // it carries. A viewer that joins a running stream drops it again at once.
    let watch = state
        .service()
        .watch_port(port.processor.clone(), &port.port)
        .await?;
    let frame_type = watch.frame_type();
    if frame_type != FrameType::Video && query.width.is_some() {
        return Err(ApiError::invalid_query(format!(
            "width applies to video ports; '{port}' carries {frame_type} frames"
        )));
    }
    let fps = query.fps.unwrap_or(match frame_type {
        FrameType::Video => DEFAULT_VIDEO_FPS,
        FrameType::Audio => DEFAULT_AUDIO_FPS,
        FrameType::Data => DEFAULT_DATA_FPS,
    });
    let key = StreamKey {
        port: watch.port_identity(),
        fps,
        width: query.width,
    };
    let mut rx = join_or_start(&state, key, watch, query.width)?;
    // A new viewer sees the newest message at once (a slow stream may not send another soon).
    if rx.borrow().is_some() {
        rx.mark_changed();
    }
    let hello = json_message(&Hello {
        r#type: "preview",
        port: &query.port,
        frame_type,
        fps,
        width: query.width,
    });
    Ok(ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        let viewer = Viewer::new(&state, rx);
        push_session(socket, state, hello, viewer).await;
    }))
}

/// Joins the stream of `key`, or starts it with `watch` (at most `max_previews` at once).
fn join_or_start(
    state: &ApiState,
    key: StreamKey,
    watch: PortWatch,
    width: Option<u32>,
) -> Result<watch::Receiver<Option<Push>>, ApiError> {
    let hub = &state.inner.previews;
    let mut streams = hub.lock();
    if let Some(stream) = streams.get(&key) {
        return Ok(stream.tx.subscribe());
    }
    let max = state.inner.options.max_previews;
    if streams.len() >= max {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_previews",
            format!(
                "{max} previews are being encoded, the server's limit (--max-previews); watch one of them (same port, fps and width) or retry later"
            ),
        )
        .with_retry_after(5));
    }
    let (tx, rx) = watch::channel(None);
    let stream = Arc::new(PreviewStream { tx });
    streams.insert(key.clone(), stream.clone());
    drop(streams);
    tokio::spawn(run_stream(state.clone(), key, stream, watch, width));
    Ok(rx)
}

/// A stream's task: feeds its viewers until the port goes (then says so) or nobody watches.
async fn run_stream(
    state: ApiState,
    key: StreamKey,
    stream: Arc<PreviewStream>,
    mut watch: PortWatch,
    width: Option<u32>,
) {
    let end = tokio::select! {
        end = feed(&state, &stream, &mut watch, key.fps, width) => end,
        () = unviewed(&state, &key, &stream) => return,
    };
    // Out of the hub first: a viewer arriving now starts afresh (and hears the port is gone).
    state.inner.previews.remove(&key, &stream);
    // Only then the watch: while it lives no other port can have its identity (the key).
    drop(watch);
    stream.tx.send_replace(Some(end));
}

/// Returns once the stream has no viewer and is out of the hub.
async fn unviewed(state: &ApiState, key: &StreamKey, stream: &Arc<PreviewStream>) {
    loop {
        stream.tx.closed().await;
        if state.inner.previews.remove_if_unviewed(key, stream) {
            return;
        }
    }
}

/// Feeds the stream from the port; returns the end message when the port goes.
async fn feed(
    state: &ApiState,
    stream: &PreviewStream,
    watch: &mut PortWatch,
    fps: u32,
    width: Option<u32>,
) -> Push {
    let period = Duration::from_secs(1) / fps;
    let publish = |messages: Vec<Message>| {
        stream.tx.send_replace(Some(Push::Send(messages.into())));
    };
    match watch.frame_type() {
        FrameType::Audio => {
            let mut meter = LevelMeter::default();
            let mut last = None;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    frame = watch.next() => match frame {
                        Some(AnyFrame::Audio(audio)) => {
                            meter.add(&audio);
                            last = Some((audio.frame_number, audio.timestamp_ns, audio.sample_rate));
                        }
                        Some(_) => {}
                        None => return port_gone(),
                    },
                    _ = tick.tick() => {
                        if let (false, Some((frame_number, timestamp_ns, sample_rate))) = (meter.is_empty(), last) {
                            publish(vec![json_message(&PreviewMessage::Levels {
                                frame_number,
                                timestamp_ns,
                                sample_rate,
                                channels: meter.take(),
                            })]);
                        }
                    }
                }
            }
        }
        FrameType::Video | FrameType::Data => {
            let mut pace = Pace::new(period);
            // A frame that came before its time, held until then (or replaced by a newer one):
            // the last frame of a burst is shown too.
            let mut early: Option<AnyFrame> = None;
            let mut last_error = None;
            loop {
                let frame = match early.take() {
                    Some(held) => tokio::select! {
                        newer = watch.next() => match newer {
                            Some(newer) => newer,
                            None => return port_gone(),
                        },
                        () = tokio::time::sleep_until(pace.due) => held,
                    },
                    None => match watch.next().await {
                        Some(frame) => frame,
                        None => return port_gone(),
                    },
                };
                if !pace.take() {
                    early = Some(frame);
                    continue;
                }
                match frame {
                    AnyFrame::Video(video) => match encode(state, video, width).await {
                        Ok(messages) => {
                            last_error = None;
                            publish(messages);
                        }
                        // Said once, not at every frame.
                        Err(message) if last_error.as_ref() != Some(&message) => {
                            tracing::warn!(error = %message, "a preview frame could not be encoded");
                            publish(vec![json_message(&PreviewMessage::Error {
                                error: ErrorDetail {
                                    code: "encode_failed".to_string(),
                                    message: message.clone(),
                                    problems: None,
                                    field: None,
                                },
                            })]);
                            last_error = Some(message);
                        }
                        Err(_) => {}
                    },
                    AnyFrame::Data(data) => publish(vec![json_message(&PreviewMessage::Data {
                        name: &data.name,
                        payload: &data.payload,
                        frame_number: data.frame_number,
                        timestamp_ns: data.timestamp_ns,
                    })]),
                    AnyFrame::Audio(_) => {}
                }
            }
        }
    }
}

/// Takes frames at most once a period: a frame that comes early waits (see `feed`); when
/// frames come late (a slow encode, a slow port), the next period starts from the one taken
/// rather than bursting to catch up.
struct Pace {
    period: Duration,
    /// When the next frame may be taken.
    due: Instant,
}

impl Pace {
    fn new(period: Duration) -> Self {
        Self {
            period,
            due: Instant::now(),
        }
    }

    /// Whether a frame arriving now is taken. A quarter period of slack keeps a port that
    /// runs at exactly the preview's rate from being halved by jitter.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        if now + self.period / 4 < self.due {
            return false;
        }
        self.due = (self.due + self.period).max(now);
        true
    }
}

fn port_gone() -> Push {
    Push::End {
        code: 1001,
        reason: "the port went away",
        message: "the port went away: the processor writing it was removed".to_string(),
    }
}

/// Encodes a preview image on the blocking pool: the messages for the viewers, or why not.
async fn encode(
    state: &ApiState,
    frame: VideoFrame,
    width: Option<u32>,
) -> Result<Vec<Message>, String> {
    // Never scaled up: a bigger image of the same pixels costs more and shows nothing more.
    let width = width
        .unwrap_or(DEFAULT_PREVIEW_WIDTH)
        .min(frame.width)
        .max(1);
    let (w, h) = scaled_size(Some(width), None, frame.width, frame.height);
    if h > MAX_SNAPSHOT_SIDE {
        return Err(format!(
            "a {}x{} frame at width {width} would be {h} pixels high, over {MAX_SNAPSHOT_SIDE}: ask for a smaller width",
            frame.width, frame.height
        ));
    }
    let permit = state
        .inner
        .previews
        .encoders
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| "the preview encoder is closed".to_string())?;
    let (number, timestamp) = (frame.frame_number, frame.timestamp_ns);
    let encoded = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        encode_image(&frame, Some(width), None, ImageFormat::Jpeg)
    })
    .await;
    match encoded {
        Ok(Ok(jpeg)) => {
            state.inner.previews.encodes.fetch_add(1, Ordering::Relaxed);
            Ok(vec![
                json_message(&PreviewMessage::Frame {
                    frame_number: number,
                    timestamp_ns: timestamp,
                    width: w,
                    height: h,
                    bytes: jpeg.len(),
                }),
                Message::Binary(jpeg.into()),
            ])
        }
        Ok(Err(e)) => Err(format!("the frame could not be encoded: {e}")),
        Err(e) => {
            tracing::error!(error = %e, "preview encoding panicked");
            Err("the frame could not be encoded; the server's log has the details".into())
        }
    }
}

/// One client viewing a stream: its read end of the stream's channel, counted while it lives.
struct Viewer {
    rx: watch::Receiver<Option<Push>>,
    state: ApiState,
}

impl Viewer {
    fn new(state: &ApiState, rx: watch::Receiver<Option<Push>>) -> Self {
        state.inner.previews.viewers.fetch_add(1, Ordering::Relaxed);
        Self {
            rx,
            state: state.clone(),
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.state
            .inner
            .previews
            .viewers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl PushSource for Viewer {
    async fn next(&mut self) -> Push {
        loop {
            if self.rx.changed().await.is_err() {
                return Push::End {
                    code: 1011,
                    reason: "the preview ended",
                    message: "the preview ended unexpectedly; the server's log may say why"
                        .to_string(),
                };
            }
            if let Some(newest) = self.rx.borrow_and_update().clone() {
                return newest;
            }
        }
    }
}
