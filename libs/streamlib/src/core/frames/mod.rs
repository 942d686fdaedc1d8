//! The frames that travel over links.
//!
//! Frames are cheap to clone: their payload sits behind a reference count ([`bytes::Bytes`] or
//! [`std::sync::Arc`]), so a link and a fan-out only ever copy a handle, never pixels or samples.

mod audio;
mod clock;
mod data;
mod video;

pub use audio::AudioFrame;
pub use clock::media_clock_ns;
pub use data::DataFrame;
pub use video::{PixelFormat, VideoFrame};

use serde::{Deserialize, Serialize};

use crate::core::links::ReadMode;

/// The kinds of frame a port can carry. A link joins two ports of the same kind.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FrameType {
    /// [`VideoFrame`]
    Video,
    /// [`AudioFrame`]
    Audio,
    /// [`DataFrame`]
    Data,
}

impl std::fmt::Display for FrameType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameType::Video => "video",
            FrameType::Audio => "audio",
            FrameType::Data => "data",
        })
    }
}

/// A value that can travel over a link.
///
/// The constants give each frame kind its link defaults: video keeps few frames and reads the
/// newest (a late frame is worthless), audio and data keep more and read in order (a gap is
/// audible or a lost record).
pub trait Frame: Clone + Send + Sync + 'static {
    /// Which port kind carries this frame.
    const FRAME_TYPE: FrameType;
    /// Ring capacity of a link when the connect call does not give one.
    const DEFAULT_CAPACITY: usize;
    /// Read mode of a link when the connect call does not give one (drop-oldest links).
    const DEFAULT_READ_MODE: ReadMode;

    /// Presentation time on the media clock, in nanoseconds.
    fn timestamp_ns(&self) -> u64;
    /// Sequence number assigned by the producer.
    fn frame_number(&self) -> u64;
    /// Bytes of payload this frame holds: what a link queueing it counts against its memory
    /// budgets (a payload shared by a fan-out is counted in every link that queues it).
    fn payload_bytes(&self) -> u64;
    /// The frame as one of the three kinds, for code that handles any port (a watch).
    fn into_any(self) -> AnyFrame;
}

/// A frame of any kind: what a watch on a port whose type is not known statically yields.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyFrame {
    /// From a video port.
    Video(VideoFrame),
    /// From an audio port.
    Audio(AudioFrame),
    /// From a data port.
    Data(DataFrame),
}
