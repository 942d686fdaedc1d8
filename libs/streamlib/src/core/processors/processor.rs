use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::descriptor::ProcessorMeta;
use crate::core::context::RuntimeContext;
use crate::core::error::{Result, StreamError};

/// The three lifecycle calls every processor implements.
///
/// The runtime calls them on the processor's own thread: `setup` on every start (acquire
/// devices, sockets, encoders), `process` according to the [`Execution`] mode, `teardown` on every
/// stop (release them). An error or a panic in any of them makes the processor `Failed` with the
/// message; the rest of the graph keeps running.
///
/// Implement it for the `Processor` struct that `#[streamlib::processor]` generates:
///
/// ```ignore
/// impl streamlib::core::Processor for MyProcessor::Processor {
///     fn process(&mut self) -> streamlib::core::Result<()> {
///         while let Some(frame) = self.video.read() { self.out.write(frame) }
///         Ok(())
///     }
/// }
/// ```
pub trait Processor: ProcessorMeta + Send + 'static {
    /// Prepares for a run. The context gives the runtime service, metrics and the stop signal.
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Does one unit of work. When it is called depends on the [`Execution`] mode.
    fn process(&mut self) -> Result<()>;

    /// Every connected input has ended (end of stream), after the last frame before the end
    /// was offered to `process()`: flush what is held and finish (a writer completes its file
    /// here). The runtime then ends every output of the processor and calls `process()` no
    /// more in this run; `teardown` still follows at the stop. Called at most once per run.
    fn on_end_of_stream(&mut self) -> Result<()> {
        Ok(())
    }

    /// Takes a new config while running, without a restart. Called on the processor's own
    /// thread between two `process()` calls (for a `Manual` processor: while its thread waits),
    /// only when every field that changed is marked `#[streamlib(live)]` in the config type
    /// and the new config has passed [`ProcessorConfig::validate`](super::ProcessorConfig::validate).
    /// `self`'s config still holds the old values; the runtime stores `new` after this returns
    /// `Ok`. An error makes the processor `Failed`, like one from `process()`. The context is
    /// the one `setup` got (to change the interval, for instance).
    ///
    /// A processor that does not implement it has no live fields: the default refuses.
    fn reconfigure(&mut self, new: &Self::Config, ctx: &RuntimeContext) -> Result<()> {
        let _ = (new, ctx);
        Err(StreamError::processor(format!(
            "{} marks config fields live but does not implement Processor::reconfigure",
            Self::TYPE_NAME
        )))
    }

    /// Releases what `setup` acquired. Called once per successful `setup`.
    fn teardown(&mut self) -> Result<()> {
        Ok(())
    }
}

/// When the runtime calls [`Processor::process`].
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Execution {
    /// In a loop on the processor's thread, every `interval_ms` if given (drift-free schedule),
    /// else back to back (the processor paces itself, e.g. by blocking on a device).
    Continuous {
        /// Period between calls, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval_ms: Option<u64>,
    },
    /// Whenever new frames arrive on any input: the writer wakes the reader; nothing polls.
    Reactive,
    /// Once, after setup; the processor drives itself from then on (device callbacks, servers).
    Manual,
}

impl Execution {
    /// The fixed interval of a Continuous processor, if it has one.
    pub fn interval(&self) -> Option<Duration> {
        match self {
            Execution::Continuous {
                interval_ms: Some(ms),
            } => Some(Duration::from_millis(*ms)),
            _ => None,
        }
    }
}
