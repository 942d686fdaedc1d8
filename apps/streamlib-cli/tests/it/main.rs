//! The `streamlib` binary's integration tests, one test binary with a module per area.

mod common;

mod cli;
mod ctl;
mod dashboard;
mod display;
mod graph_files;
mod limits;
mod media;
