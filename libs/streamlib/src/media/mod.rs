//! Media files through FFmpeg (feature `ffmpeg`): `FileSourceProcessor` decodes any file
//! FFmpeg reads; `Mp4WriterProcessor` encodes H.264 + AAC into MP4.

mod ffmpeg_util;
mod file_source;
mod mp4_writer;

pub use file_source::{FileSourceConfig, FileSourceProcessor};
pub use mp4_writer::{Mp4WriterConfig, Mp4WriterProcessor, X264Preset};
