//! `CameraProcessor`: V4L2 capture to RGBA video frames.

mod convert;
mod device;
mod processor;

pub use convert::{mjpeg_to_rgba, yuyv_to_rgba};
pub use processor::{CameraConfig, CameraProcessor};
