//! WAV files: writing audio to one and playing one back.

mod source;
mod writer;

pub use source::{WavSourceConfig, WavSourceProcessor};
pub use writer::{WavSampleFormat, WavWriterConfig, WavWriterProcessor};
