//! `WS /api/tap?port=PROC.PORT&limit=&every=`: the frames passing a port, as JSON, like
//! `vector tap` — data frames whole, video and audio frames as what describes them (size,
//! format, timestamp, number; an audio frame's levels).
//!
//! Messages (JSON text):
//! - first `{"type":"tap","port","frame_type","every","limit"}`;
//! - a frame: `{"type":"video"|"audio"|"data", ..., "missed"}`, where `missed` counts the frames
//!   this client should have been sent since its first one (one in `every`) but was not,
//!   because it read more slowly than the port wrote (the tap sends the newest; it never
//!   queues). Frames left out on purpose by `every` are not counted;
//! - `{"type":"end","message"}` then a close frame when `limit` frames were sent (code 1000) or
//!   the port went away (1001).
//!
//! Each tap watches the port for itself; at most `max_taps` are open at once.

use serde::{Deserialize, Serialize};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use tokio::sync::OwnedSemaphorePermit;

use super::ApiState;
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::preview::port_param;
use super::push::{Push, PushSource, json_message, push_session};
use super::server::ConnectionSlot;
use super::websocket::accept;
use crate::core::dsp::{ChannelLevel, channel_levels};
use crate::core::frames::{AnyFrame, FrameType, PixelFormat};
use crate::core::links::PortWatch;

/// The most frames one tap may be asked for.
const MAX_TAP_LIMIT: u64 = 1_000_000_000;
/// The largest `every`.
const MAX_TAP_EVERY: u64 = 1_000_000;

/// Query of `WS /api/tap`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TapQuery {
    /// The port to tap, `processor.port` (an output, or an input: what its link carries).
    pub port: String,
    /// Close after sending this many frames (1–1000000000; default: until the client closes).
    pub limit: Option<u64>,
    /// Send one frame in this many that pass the port (1–1000000; default 1: every frame the
    /// client keeps up with).
    pub every: Option<u64>,
    /// Bearer token, for clients that cannot set an Authorization header (browsers).
    #[allow(dead_code)]
    pub token: Option<String>,
}

#[derive(Serialize)]
struct Hello<'a> {
    r#type: &'static str,
    port: &'a str,
    frame_type: FrameType,
    every: u64,
    limit: Option<u64>,
}

/// One frame as a tap sends it.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum TapFrame<'a> {
    Video {
        frame_number: u64,
        timestamp_ns: u64,
        width: u32,
        height: u32,
        format: PixelFormat,
        stride: u32,
        bytes: usize,
        missed: u64,
    },
    Audio {
        frame_number: u64,
        timestamp_ns: u64,
        sample_rate: u32,
        channels: u16,
        samples_per_channel: usize,
        levels: Vec<ChannelLevel>,
        missed: u64,
    },
    Data {
        frame_number: u64,
        timestamp_ns: u64,
        name: &'a str,
        payload: &'a serde_json::Value,
        missed: u64,
    },
}

/// Tap the frames of a port (WebSocket)
///
/// The frames passing a port as JSON: data whole, video and audio described (see the module
/// docs for the messages). A client slower than the port is sent the newest frame and told how
/// many it missed.
#[utoipa::path(
    get,
    path = "/api/tap",
    tag = "processors",
    params(TapQuery),
    responses(
        (status = 101, description = "WebSocket: a `tap` message, then one message per frame (`video`, `audio` or `data`, each with `missed`), then `end` at the limit"),
        (status = 400, description = "invalid_query (port not written processor.port, limit or every out of range), not_websocket", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden (Host or Origin)", body = ErrorBody),
        (status = 404, description = "processor_not_found, port_not_found", body = ErrorBody),
        (status = 409, description = "conflict: an input that is not connected", body = ErrorBody),
        (status = 503, description = "too_many_taps (see Retry-After), runtime_unavailable", body = ErrorBody),
    )
)]
pub(super) async fn tap(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<TapQuery>,
    slot: Option<Extension<ConnectionSlot>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = accept(ws, "/api/tap")?;
    let port = port_param(&query.port)?;
    if let Some(limit) = query.limit {
        if !(1..=MAX_TAP_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_query(format!(
                "limit is {limit}; it must be 1 to {MAX_TAP_LIMIT}"
            )));
        }
    }
    let every = query.every.unwrap_or(1);
    if !(1..=MAX_TAP_EVERY).contains(&every) {
        return Err(ApiError::invalid_query(format!(
            "every is {every}; it must be 1 to {MAX_TAP_EVERY}"
        )));
    }
    let watch = state
        .service()
        .watch_port(port.processor.clone(), &port.port)
        .await?;
    let Ok(permit) = state.inner.taps.clone().try_acquire_owned() else {
        let max = state.inner.options.max_taps;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_taps",
            format!("{max} taps are open, the server's limit (--max-taps); retry when one closes"),
        )
        .with_retry_after(5));
    };
    let hello = json_message(&Hello {
        r#type: "tap",
        port: &query.port,
        frame_type: watch.frame_type(),
        every,
        limit: query.limit,
    });
    let tap = Tap {
        watch,
        limit: query.limit,
        returned: 0,
        pick: Pick {
            every,
            ..Pick::default()
        },
        _permit: permit,
    };
    Ok(ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        push_session(socket, state, hello, tap).await;
    }))
}

/// One open tap: its watch on the port and how far it got.
struct Tap {
    watch: PortWatch,
    limit: Option<u64>,
    /// Frames the watch returned.
    returned: u64,
    /// Which frames are sent, and what was owed but not.
    pick: Pick,
    /// The tap's place under `max_taps`.
    _permit: OwnedSemaphorePermit,
}

/// One frame in `every`, counting every frame that passed the port (those seen and those
/// skipped), and the frames owed but not sent.
#[derive(Debug, Default)]
struct Pick {
    every: u64,
    /// Frames sent.
    sent: u64,
    /// Frames that had passed the port when the first one was sent: the client is owed one
    /// frame in `every` from there.
    first_sent_at: Option<u64>,
    /// Frames that had passed the port when the last one was sent.
    last_sent_at: Option<u64>,
}

impl Pick {
    /// Whether the frame seen when `passed` frames had passed the port is sent; if so, with
    /// the count of frames owed so far but not sent.
    fn take(&mut self, passed: u64) -> Option<u64> {
        if self
            .last_sent_at
            .is_some_and(|last| passed.saturating_sub(last) < self.every)
        {
            return None;
        }
        self.last_sent_at = Some(passed);
        let first = *self.first_sent_at.get_or_insert(passed);
        self.sent += 1;
        // Owed: one frame in `every` since the first, this one included. Sends are at least
        // `every` apart, so never more were sent than owed.
        let owed = (passed - first) / self.every.max(1) + 1;
        Some(owed.saturating_sub(self.sent))
    }
}

impl PushSource for Tap {
    async fn next(&mut self) -> Push {
        loop {
            if let Some(limit) = self.limit.filter(|&limit| self.pick.sent >= limit) {
                return Push::End {
                    code: 1000,
                    reason: "limit reached",
                    message: format!("sent the {limit} frames asked for (limit)"),
                };
            }
            // Cancel-safe: nothing below changes until a frame is in hand.
            let Some(frame) = self.watch.next().await else {
                return Push::End {
                    code: 1001,
                    reason: "the port went away",
                    message: "the port went away: the processor writing it was removed".to_string(),
                };
            };
            self.returned += 1;
            // Every frame written since the watch began: those returned and those skipped.
            let passed = self.returned + self.watch.missed();
            let Some(missed) = self.pick.take(passed) else {
                continue;
            };
            let message = match &frame {
                AnyFrame::Video(v) => json_message(&TapFrame::Video {
                    frame_number: v.frame_number,
                    timestamp_ns: v.timestamp_ns,
                    width: v.width,
                    height: v.height,
                    format: v.format,
                    stride: v.stride,
                    bytes: v.data.len(),
                    missed,
                }),
                AnyFrame::Audio(a) => json_message(&TapFrame::Audio {
                    frame_number: a.frame_number,
                    timestamp_ns: a.timestamp_ns,
                    sample_rate: a.sample_rate,
                    channels: a.channels,
                    samples_per_channel: a.samples_per_channel(),
                    levels: channel_levels(a),
                    missed,
                }),
                AnyFrame::Data(d) => json_message(&TapFrame::Data {
                    frame_number: d.frame_number,
                    timestamp_ns: d.timestamp_ns,
                    name: &d.name,
                    payload: &d.payload,
                    missed,
                }),
            };
            return Push::Send(std::sync::Arc::new([message]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pick;

    #[test]
    fn one_in_every_and_what_was_owed_but_not_sent() {
        // A client that keeps up: one in three, nothing missed.
        let mut pick = Pick {
            every: 3,
            ..Pick::default()
        };
        let sent: Vec<(u64, u64)> = (1..=10)
            .filter_map(|passed| pick.take(passed).map(|missed| (passed, missed)))
            .collect();
        assert_eq!(sent, [(1, 0), (4, 0), (7, 0), (10, 0)]);
        // A client that sees one frame in five (the rest skipped while it was busy): owed
        // 1, 4, 7, 10, 13, 16 — sent 4 of the 6.
        let mut pick = Pick {
            every: 3,
            ..Pick::default()
        };
        let missed: Vec<Option<u64>> = [1, 6, 11, 16].iter().map(|&p| pick.take(p)).collect();
        assert_eq!(missed, [Some(0), Some(0), Some(1), Some(2)]);
        // Every frame: each gap is missed frames.
        let mut pick = Pick {
            every: 1,
            ..Pick::default()
        };
        assert_eq!(pick.take(5), Some(0));
        assert_eq!(pick.take(6), Some(0));
        assert_eq!(pick.take(9), Some(2));
    }
}
