//! Audio signal processing shared by processors: channel conversion, streaming sample-rate
//! conversion, and levels.

mod channels;
mod levels;
mod resample;

pub use channels::convert_channels;
pub use levels::{ChannelLevel, LevelMeter, SILENCE_DBFS, channel_levels};
pub use resample::StreamResampler;
