//! Linux device processors: V4L2 cameras, X11 windows and ALSA sound.
//!
//! Each family sits behind a cargo feature (`camera`, `display`, `audio-devices`) because each
//! needs a system library; without them the crate builds on any platform. Every processor is
//! implemented for real: where the hardware is missing, `setup` fails with a message naming
//! the device and what is absent.

#[cfg(feature = "audio-devices")]
pub mod audio;
#[cfg(feature = "camera")]
pub mod camera;
#[cfg(feature = "display")]
pub mod display;
