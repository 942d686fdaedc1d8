//! Audio processing: mixing, sample-rate and channel conversion, re-chunking.

mod channel_converter;
mod mixer;
mod rechunker;
mod resampler;
mod sample_clock;

pub use channel_converter::{AudioChannelConverterConfig, AudioChannelConverterProcessor};
pub use mixer::{AudioMixerConfig, AudioMixerProcessor};
pub use rechunker::{BufferRechunkerConfig, BufferRechunkerProcessor};
pub use resampler::{AudioResamplerConfig, AudioResamplerProcessor};
