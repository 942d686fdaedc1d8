//! `GET /api/processors/{id}/ports/{port}/snapshot`: a look at what passes a port — the next
//! video frame as a JPEG or PNG image (scaled if asked), an audio frame's levels (peak and RMS
//! per channel, dBFS), a data frame whole. The port is watched only for the request
//! (`links::PortWatch`): nothing is copied while nobody looks. At most `max_snapshots` are in
//! progress (each holds one frame), images are at most 4096 pixels on a side, and encoding
//! runs on the blocking pool, [`SNAPSHOT_ENCODERS`] at a time.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::core::dsp::{ChannelLevel, channel_levels};
use crate::core::frames::{AnyFrame, FrameType, PixelFormat, VideoFrame};
use crate::core::graph::ProcessorUniqueId;
use crate::core::processors::video::{ScaleAlgorithm, VideoScaleConfig, scale_frame, scaled_size};
use tokio::sync::OwnedSemaphorePermit;

/// How long a snapshot waits for a frame unless told otherwise.
pub const DEFAULT_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a snapshot may be told to wait.
const MAX_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;
/// The largest width or height a snapshot is scaled to.
pub(super) const MAX_SNAPSHOT_SIDE: u32 = 4096;
/// Images encoded at once; more requests wait their turn (within the request timeout).
pub(crate) const SNAPSHOT_ENCODERS: usize = 2;
/// JPEG quality (1–100).
const JPEG_QUALITY: u8 = 85;

/// The image format of a video snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// JPEG, quality 85: small, lossy.
    #[default]
    Jpeg,
    /// PNG: exact pixels, larger.
    Png,
}

/// Query of `GET /api/processors/{id}/ports/{port}/snapshot`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// For a video port: `jpeg` (default) or `png`.
    #[param(inline)]
    pub format: Option<ImageFormat>,
    /// For a video port: scale to this width (1–4096); the height follows the aspect ratio
    /// unless given too.
    pub width: Option<u32>,
    /// For a video port: scale to this height (1–4096).
    pub height: Option<u32>,
    /// How long to wait for a frame to pass, in milliseconds (1–10000; default 2000).
    pub timeout_ms: Option<u64>,
}

/// A snapshot of an audio port: the levels of the next frame that passed it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AudioSnapshot {
    /// Always `audio`.
    pub frame_type: FrameType,
    /// Samples per second.
    pub sample_rate: u32,
    /// Samples per channel in the frame measured.
    pub samples_per_channel: usize,
    /// The frame's presentation time on the media clock, ns.
    pub timestamp_ns: u64,
    /// The frame's sequence number.
    pub frame_number: u64,
    /// Peak and RMS of each channel, dBFS (silence reads -120).
    pub channels: Vec<ChannelLevel>,
}

/// A snapshot of a data port: the next frame that passed it, whole.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataSnapshot {
    /// Always `data`.
    pub frame_type: FrameType,
    /// The record's name.
    pub name: String,
    /// The record.
    pub payload: serde_json::Value,
    /// Its presentation time on the media clock, ns.
    pub timestamp_ns: u64,
    /// Its sequence number.
    pub frame_number: u64,
}

/// The JSON answer of a snapshot of an audio or a data port.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PortSnapshot {
    /// An audio port's levels.
    Audio(AudioSnapshot),
    /// A data port's frame.
    Data(DataSnapshot),
}

/// The bytes of a snapshot image (JPEG or PNG), for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ImageBytes(pub Vec<u8>);

fn internal(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("{what}; the server's log has the details"),
    )
}

/// Snapshot of a port
///
/// The next frame that passes the port (an output's, or an input's: what its link carries):
/// video as an image, audio as levels, data whole. Waits up to `timeout_ms` for one.
#[utoipa::path(
    get,
    path = "/api/processors/{id}/ports/{port}/snapshot",
    tag = "processors",
    params(
        ("id" = String, Path, description = "Processor id"),
        ("port" = String, Path, description = "Port name (input or output)"),
        SnapshotQuery,
    ),
    responses(
        (status = 200, description = "Video: the frame as image/jpeg or image/png. Audio: its levels; data: the frame (PortSnapshot).",
            headers(
                ("X-Frame-Number" = u64, description = "The frame's sequence number"),
                ("X-Timestamp-Ns" = u64, description = "The frame's presentation time on the media clock, ns"),
            ),
            content(
                (ImageBytes = "image/jpeg"),
                (ImageBytes = "image/png"),
                (PortSnapshot = "application/json"),
            )
        ),
        (status = 400, description = "invalid_query: a size out of range (also a frame over 4096 pixels on a side without a size that brings it under), an image format or size for a port that is not video, an unknown parameter", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "processor_not_found, port_not_found", body = ErrorBody),
        (status = 409, description = "no_frame: nothing passed the port in time (a stopped runtime, an idle source), or its processor was removed meanwhile; conflict: an input that is not connected", body = ErrorBody),
        (status = 503, description = "too_many_snapshots (see Retry-After), runtime_unavailable", body = ErrorBody),
        (status = 504, description = "timeout", body = ErrorBody),
    )
)]
pub(super) async fn snapshot(
    State(state): State<ApiState>,
    ApiPath((id, port)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let timeout = match query.timeout_ms {
        None => DEFAULT_SNAPSHOT_TIMEOUT,
        Some(ms @ 1..=MAX_SNAPSHOT_TIMEOUT_MS) => Duration::from_millis(ms),
        Some(ms) => {
            return Err(ApiError::invalid_query(format!(
                "timeout_ms is {ms}; it must be 1 to {MAX_SNAPSHOT_TIMEOUT_MS}"
            )));
        }
    };
    for (name, side) in [("width", query.width), ("height", query.height)] {
        if let Some(side) = side {
            if !(1..=MAX_SNAPSHOT_SIDE).contains(&side) {
                return Err(ApiError::invalid_query(format!(
                    "{name} is {side}; it must be 1 to {MAX_SNAPSHOT_SIDE}"
                )));
            }
        }
    }
    // A slot first: a snapshot in progress holds a frame until it is answered.
    let Ok(slot) = state.inner.snapshots.clone().try_acquire_owned() else {
        let max = state.inner.options.max_snapshots;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_snapshots",
            format!("{max} snapshots are in progress, the server's limit (--max-snapshots); retry shortly"),
        )
        .with_retry_after(1));
    };
    let mut watch = state
        .service()
        .watch_port(ProcessorUniqueId::new(id.clone()), &port)
        .await?;
    let image_asked = query.format.is_some() || query.width.is_some() || query.height.is_some();
    if image_asked && watch.frame_type() != FrameType::Video {
        return Err(ApiError::invalid_query(format!(
            "format, width and height apply to video ports; '{id}.{port}' carries {} frames, answered as JSON",
            watch.frame_type()
        )));
    }
    let frame = match tokio::time::timeout(timeout, watch.next()).await {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_frame",
                format!("port '{id}.{port}' went away while waiting: its processor was removed"),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_frame",
                format!(
                    "no frame passed port '{id}.{port}' within {} ms: is the runtime started and the processor producing? (timeout_ms waits up to {MAX_SNAPSHOT_TIMEOUT_MS})",
                    timeout.as_millis()
                ),
            ));
        }
    };
    // The watch ends here: nothing more is copied for this request.
    drop(watch);
    let json = match frame {
        AnyFrame::Video(video) => return image_response(&state, video, &query, slot).await,
        AnyFrame::Audio(audio) => PortSnapshot::Audio(AudioSnapshot {
            frame_type: FrameType::Audio,
            sample_rate: audio.sample_rate,
            samples_per_channel: audio.samples_per_channel(),
            timestamp_ns: audio.timestamp_ns,
            frame_number: audio.frame_number,
            channels: channel_levels(&audio),
        }),
        AnyFrame::Data(data) => PortSnapshot::Data(DataSnapshot {
            frame_type: FrameType::Data,
            name: data.name.to_string(),
            payload: (*data.payload).clone(),
            timestamp_ns: data.timestamp_ns,
            frame_number: data.frame_number,
        }),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(json)).into_response())
}

/// Checks the image's size, then encodes it on the blocking pool, [`SNAPSHOT_ENCODERS`] at a
/// time; `slot` (the request's place among the snapshots in progress) and the encoder's permit
/// stay with the encoding, so a client that goes away does not free them early.
async fn image_response(
    state: &ApiState,
    frame: VideoFrame,
    query: &SnapshotQuery,
    slot: OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let format = query.format.unwrap_or_default();
    let (width, height) = (query.width, query.height);
    let (w, h) = scaled_size(width, height, frame.width, frame.height);
    if w > MAX_SNAPSHOT_SIDE || h > MAX_SNAPSHOT_SIDE {
        return Err(ApiError::invalid_query(format!(
            "the image would be {w}x{h} (the frame is {}x{}); a snapshot is at most {MAX_SNAPSHOT_SIDE} pixels on a side: ask for a width or height that keeps both under it",
            frame.width, frame.height
        )));
    }
    let (number, timestamp) = (frame.frame_number, frame.timestamp_ns);
    let permit = state
        .inner
        .encoders
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| internal("the snapshot encoders are closed"))?;
    let encoded = tokio::task::spawn_blocking(move || {
        let _held = (slot, permit);
        encode_image(&frame, width, height, format)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "snapshot encoding panicked");
        internal("encoding the snapshot failed")
    })?
    .map_err(|e| {
        tracing::error!(error = %e, "snapshot encoding failed");
        internal("encoding the snapshot failed")
    })?;
    let content_type = match format {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Png => "image/png",
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (
                header::HeaderName::from_static("x-frame-number"),
                number.to_string(),
            ),
            (
                header::HeaderName::from_static("x-timestamp-ns"),
                timestamp.to_string(),
            ),
        ],
        encoded,
    )
        .into_response())
}

/// `frame` as an image in `format`, scaled to `width` and/or `height` (one alone keeps the
/// aspect ratio; neither keeps the size): what a snapshot of a video port answers.
pub fn encode_image(
    frame: &VideoFrame,
    width: Option<u32>,
    height: Option<u32>,
    format: ImageFormat,
) -> Result<Vec<u8>, String> {
    let scale = VideoScaleConfig {
        width,
        height,
        format: PixelFormat::Rgba8,
        algorithm: ScaleAlgorithm::Bilinear,
    };
    // The encoders take RGBA in tightly packed rows: a frame already so, at the size asked, is
    // encoded as it is; anything else goes through `scale_frame`, which makes exactly that.
    let packed = |f: &VideoFrame| {
        f.format == PixelFormat::Rgba8 && f.stride as usize == f.width as usize * 4
    };
    let scaled;
    let rgba = if packed(frame)
        && scaled_size(width, height, frame.width, frame.height) == (frame.width, frame.height)
    {
        frame
    } else {
        let mut resizer = fast_image_resize::Resizer::new();
        scaled = scale_frame(frame, &scale, &mut resizer).map_err(|e| e.to_string())?;
        &scaled
    };
    let (w, h) = (rgba.width, rgba.height);
    let pixels = rgba
        .data
        .get(..w as usize * h as usize * 4)
        .filter(|_| packed(rgba))
        .ok_or_else(|| format!("a {w}x{h} frame is not packed RGBA after scaling"))?;
    let mut out = Vec::new();
    match format {
        ImageFormat::Png => {
            let mut encoder = png::Encoder::new(&mut out, w, h);
            encoder.set_color(png::ColorType::Rgba);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|e| format!("PNG: {e}"))?;
            writer
                .write_image_data(pixels)
                .map_err(|e| format!("PNG: {e}"))?;
            writer.finish().map_err(|e| format!("PNG: {e}"))?;
        }
        ImageFormat::Jpeg => {
            let (w16, h16) = match (u16::try_from(w), u16::try_from(h)) {
                (Ok(w), Ok(h)) => (w, h),
                _ => {
                    return Err(format!(
                        "a {w}x{h} image is too large for JPEG (65535 at most)"
                    ));
                }
            };
            jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
                .encode(pixels, w16, h16, jpeg_encoder::ColorType::Rgba)
                .map_err(|e| format!("JPEG: {e}"))?;
        }
    }
    Ok(out)
}
