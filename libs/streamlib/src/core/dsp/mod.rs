//! Audio signal processing shared by processors: channel conversion and streaming
//! sample-rate conversion.

mod channels;
mod resample;

pub use channels::convert_channels;
pub use resample::StreamResampler;
