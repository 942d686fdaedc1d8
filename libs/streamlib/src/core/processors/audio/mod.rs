//! Audio processing: mixing, sample-rate and channel conversion, re-chunking, levels.

mod channel_converter;
mod levels;
mod mixer;
mod rechunker;
mod resampler;
mod sample_clock;

pub use channel_converter::{AudioChannelConverterConfig, AudioChannelConverterProcessor};
pub use levels::{AudioLevelsConfig, AudioLevelsProcessor};
pub use mixer::{AudioMixerConfig, AudioMixerProcessor};
pub use rechunker::{BufferRechunkerConfig, BufferRechunkerProcessor};
pub use resampler::{AudioResamplerConfig, AudioResamplerProcessor};
