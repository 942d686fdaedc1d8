//! What the runtime measures about itself beyond plain counters: durations as histograms
//! (`process()` times, frame ages on links, command latencies), rates and percentiles over a
//! recent window, and the figures the Prometheus endpoint exposes.
//!
//! Recording is lock-free and costs a few relaxed atomic operations where it happens; nothing
//! is computed until somebody asks (a JSON read, a scrape).

mod commands;
mod exposition;
mod histogram;
mod window;

pub use exposition::PROMETHEUS_TEXT_FORMAT;
pub(crate) use exposition::{Families, runtime_families};

pub(crate) use commands::{COMMAND_KINDS, CommandOutcome, CommandStats};

pub(crate) use histogram::{DurationHistogram, HistogramSnapshot};
pub(crate) use window::{
    GraphSample, LinkSample, MetricsReport, ProcessorSample, StatsWindow, link_rates,
    processor_rates,
};
pub use window::{LinkRates, ProcessorRates};
