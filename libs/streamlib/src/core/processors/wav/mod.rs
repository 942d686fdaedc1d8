//! WAV files: writing audio to one and playing one back.

mod source;
mod writer;

pub use source::{WavSourceConfig, WavSourceProcessor};
pub use writer::{WavSampleFormat, WavWriterConfig, WavWriterProcessor};

/// A WAV file error as a [`StreamError::Io`](crate::core::StreamError::Io): the operating
/// system's error when there is one, otherwise hound's (a malformed file) as invalid data.
pub(crate) fn wav_error(
    context: String,
    error: impl Into<hound::Error>,
) -> crate::core::StreamError {
    let io = match error.into() {
        hound::Error::IoError(io) => io,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
    };
    crate::core::StreamError::io(context, io)
}
