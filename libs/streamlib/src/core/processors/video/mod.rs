//! Video processing.

mod scale;

pub use scale::{ScaleAlgorithm, VideoScaleConfig, VideoScaleProcessor, scale_frame, scaled_size};
