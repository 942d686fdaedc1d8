//! Processors that ship with the core: sources for testing and demos, a passthrough, a sink.

mod chord_generator;
mod counting_sink;
mod passthrough;
mod test_pattern;

pub use chord_generator::{ChordGeneratorConfig, ChordGeneratorProcessor};
pub use counting_sink::{CountingSinkConfig, CountingSinkProcessor};
pub use passthrough::SimplePassthroughProcessor;
pub use test_pattern::{
    BAR_COLOURS, TestPattern, TestPatternConfig, TestPatternProcessor, TestPatternRenderer,
};
