//! The `CameraProcessor`: frames from a V4L2 camera, as RGBA.

use std::time::Duration;

use rustix::event::PollFlags;
use serde::{Deserialize, Serialize};
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture as _;
use v4l::video::capture::Parameters;

use super::convert::{mjpeg_to_rgba, yuyv_to_rgba};
use super::device::{self, MJPG, OpenedCamera, YUYV};
use crate::core::context::{Counter, RuntimeContext};
use crate::core::error::{Result, StreamError};
use crate::core::frames::{VideoFrame, media_clock_ns};
use crate::core::links::LinkOutput;
use crate::core::processors::{ConfigError, ProcessorConfig};

/// How long one `process` call waits for a frame before returning (so stop stays prompt).
const FRAME_WAIT: Duration = Duration::from_millis(250);
/// How long the camera may take to deliver its first frame (UVC cameras take up to a second).
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(5);
/// Driver buffers queued for capture.
const BUFFERS: u32 = 4;

/// Config of [`CameraProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    /// Which camera: `null` for the first capture device, a path (`/dev/video2`), an index
    /// (`"2"`), or the card name the driver reports (`"Integrated Camera"`).
    pub device_id: Option<String>,
    /// Requested width in pixels (16 to 7680); the nearest size the camera offers is used.
    pub width: u32,
    /// Requested height in pixels (16 to 4320).
    pub height: u32,
    /// Requested frames per second (1 to 240); the camera may deliver fewer.
    pub fps: u32,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            device_id: None,
            width: 640,
            height: 480,
            fps: 30,
        }
    }
}

impl ProcessorConfig for CameraConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.device_id.as_deref() == Some("") {
            return Err(ConfigError::new(
                "device_id",
                "must be null (first camera), a path, an index or a card name; got an empty string",
            ));
        }
        // A path names a video device node, nothing else: the API must not open (or probe for)
        // arbitrary files or devices through the camera.
        if let Some(path) = self.device_id.as_deref().filter(|id| id.starts_with('/')) {
            let video_node = path
                .strip_prefix("/dev/video")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let v4l_link = path.starts_with("/dev/v4l/") && !path.contains("..");
            if !(video_node || v4l_link) || path.contains('\0') {
                return Err(ConfigError::new(
                    "device_id",
                    format!(
                        "a path must be a video device node, /dev/videoN or under /dev/v4l/; got '{path}'"
                    ),
                ));
            }
        }
        ConfigError::check_range("width", self.width, 16, 7680)?;
        ConfigError::check_range("height", self.height, 16, 4320)?;
        ConfigError::check_range("fps", self.fps, 1, 240)
    }
}

/// A capture in progress.
struct ActiveCapture {
    /// Declared before the device so it stops streaming first.
    stream: Stream<'static>,
    camera: OpenedCamera,
    fourcc: v4l::FourCC,
    width: u32,
    height: u32,
    stride: u32,
    /// Media-clock time minus the kernel's monotonic clock, to restamp driver timestamps.
    clock_offset_ns: i128,
    /// Whether the first frame has arrived (streaming is on).
    streaming: bool,
    /// Frames sent this run.
    frame_number: u64,
    /// Frames that could not be converted (torn or empty), counted and skipped.
    bad_frames: Counter,
}

/// Captures from a V4L2 camera (YUYV or Motion-JPEG, whichever the camera offers at the
/// requested size) and emits RGBA frames stamped with the driver's capture time. Without a
/// camera, or with a busy one or one whose formats are not supported, `setup` fails naming the
/// device and what is missing.
#[streamlib::processor(
    execution = Continuous,
    description = "Captures video from a V4L2 camera (YUYV or MJPG) as RGBA frames with capture timestamps"
)]
pub struct CameraProcessor {
    #[streamlib::output(description = "RGBA frames from the camera")]
    video: LinkOutput<VideoFrame>,
    #[streamlib::config]
    config: CameraConfig,
    /// The run's state, `Some` between `setup` and `teardown`.
    capture: Option<ActiveCapture>,
}

impl crate::core::Processor for CameraProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let unavailable = |e: String| StreamError::Unavailable(format!("CameraProcessor: {e}"));
        let camera = device::open(self.config.device_id.as_deref()).map_err(unavailable)?;
        let format = device::negotiate(&camera, self.config.width, self.config.height)
            .map_err(unavailable)?;
        if let Err(e) = camera
            .device
            .set_params(&Parameters::with_fps(self.config.fps))
        {
            tracing::warn!(camera = %camera.path.display(), error = %e, "the camera did not take the frame rate");
        }
        let mut stream = Stream::with_buffers(&camera.device, Type::VideoCapture, BUFFERS)
            .map_err(|e| unavailable(device::busy_or(e, &camera, "cannot map capture buffers")))?;
        stream.set_timeout(FIRST_FRAME_WAIT);
        tracing::info!(
            camera = %camera.path.display(),
            card = %camera.card,
            format = %format.fourcc,
            width = format.width,
            height = format.height,
            "camera opened"
        );
        self.capture = Some(ActiveCapture {
            stream,
            fourcc: format.fourcc,
            width: format.width,
            height: format.height,
            // Some drivers leave bytesperline 0 for packed formats.
            stride: if format.stride == 0 {
                format.width * 2
            } else {
                format.stride
            },
            camera,
            clock_offset_ns: i128::from(media_clock_ns()) - i128::from(monotonic_ns()),
            streaming: false,
            frame_number: 0,
            bad_frames: ctx.counter("bad_frames"),
        });
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        let Some(capture) = &mut self.capture else {
            return Ok(());
        };
        // v4l's own timeout leaves a buffer queued twice when it expires, so once streaming,
        // wait here and only dequeue a buffer that is ready.
        if capture.streaming {
            let readable = capture
                .stream
                .handle()
                .poll(PollFlags::IN.bits() as i16, FRAME_WAIT.as_millis() as i32);
            match readable {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
                Err(e) => {
                    return Err(StreamError::Unavailable(format!(
                        "CameraProcessor: {}",
                        device::busy_or(e, &capture.camera, "waiting for a frame failed")
                    )));
                }
            }
        }
        let (buffer, meta) = match capture.stream.next() {
            Ok(next) => next,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(StreamError::Unavailable(format!(
                    "CameraProcessor: camera '{}' ({}) delivered no frame within {} s",
                    capture.camera.path.display(),
                    capture.camera.card,
                    FIRST_FRAME_WAIT.as_secs()
                )));
            }
            Err(e) => {
                return Err(StreamError::Unavailable(format!(
                    "CameraProcessor: {}",
                    device::busy_or(e, &capture.camera, "capture failed")
                )));
            }
        };
        let data = buffer.get(..meta.bytesused as usize).unwrap_or(buffer);
        let converted = if capture.fourcc == YUYV {
            yuyv_to_rgba(data, capture.width, capture.height, capture.stride)
                .map(|pixels| (capture.width, capture.height, pixels))
        } else if capture.fourcc == MJPG {
            mjpeg_to_rgba(data)
        } else {
            Err(format!("unexpected format {}", capture.fourcc))
        };
        let (width, height, pixels) = match converted {
            Ok(picture) => picture,
            Err(e) => {
                // A torn or empty frame is common on USB; count it and go on.
                tracing::debug!(error = %e, "dropping a camera frame");
                capture.bad_frames.add(1);
                return Ok(());
            }
        };
        let captured_ns = i128::from(meta.timestamp.sec) * 1_000_000_000
            + i128::from(meta.timestamp.usec) * 1_000;
        // A driver stamping with another clock (or not at all) gives a time far from now:
        // then the dequeue time is the best estimate.
        let now = media_clock_ns();
        let timestamp = u64::try_from(captured_ns + capture.clock_offset_ns)
            .ok()
            .filter(|t| captured_ns > 0 && t.abs_diff(now) < 5_000_000_000)
            .unwrap_or(now);
        let frame = VideoFrame::from_rgba(width, height, pixels, timestamp, capture.frame_number)?;
        self.video.write(frame);
        capture.frame_number += 1;
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        self.capture = None;
        Ok(())
    }
}

/// The kernel's monotonic clock, which V4L2 stamps buffers with.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}
