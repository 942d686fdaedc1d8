//! The library's integration tests, one binary (one build of the test helpers, one link) with a
//! module per area. `tests/registry.rs` stays a binary of its own: it checks exactly what the
//! library registers, and the helpers here register test processors of their own.

mod common;

mod api_defaults;
mod api_events;
mod api_limits;
mod api_routes;
mod api_server;
mod audio_devices;
mod audio_processing;
mod camera;
mod dashboard;
mod end_of_stream;
mod graph;
mod graph_apply;
mod lifecycle;
mod live_config;
mod media_files;
mod media_root;
mod metrics;
mod preview;
mod service;
mod snapshot;
