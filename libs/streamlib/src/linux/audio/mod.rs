//! `AudioOutputProcessor` and `AudioCaptureProcessor`: sound through ALSA (cpal).

mod alsa_messages;
mod capture;
mod device;
mod output;

pub use capture::{AudioCaptureConfig, AudioCaptureProcessor};
pub use device::{DeviceDirection, list_devices};
pub use output::{AudioOutputConfig, AudioOutputProcessor};
