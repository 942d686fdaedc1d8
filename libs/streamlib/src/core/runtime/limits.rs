//! What a runtime lets its graph spend: processors (each is a thread) and the memory of frames
//! queued in links. One value, given when the runtime is made; the `streamlib` command takes it
//! from flags (with feature `clap`), a program from [`StreamRuntime::with_limits`].
//!
//! [`StreamRuntime::with_limits`]: super::StreamRuntime::with_limits

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default most processors in one graph: each is a thread, and a 2-core machine still answers
/// promptly with a thousand idle ones (RELIABILITY.md).
pub const DEFAULT_MAX_PROCESSORS: usize = 1000;
/// Default budget, in MiB, for the frames queued in all links of a runtime together.
pub const DEFAULT_MAX_QUEUED_MIB: u64 = 1024;
/// Default budget, in MiB, for the frames queued in one link.
pub const DEFAULT_MAX_LINK_MIB: u64 = 256;

/// Default longest time a processor's `setup` may take.
pub const DEFAULT_SETUP_TIMEOUT_MS: u64 = 30_000;

/// What a runtime lets its graph spend. Beyond a limit a change is refused with
/// `limit_reached` (processors), or a frame is dropped and counted (memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default)]
pub struct RuntimeLimits {
    /// Most processors in the graph (each runs on a thread of its own).
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PROCESSORS))]
    pub max_processors: usize,
    /// Most MiB of frames queued in all links together. A write that would exceed it drops
    /// frames (oldest of that link first) instead of allocating more.
    #[cfg_attr(feature = "clap", arg(long = "max-queued-mib", value_name = "MIB", default_value_t = DEFAULT_MAX_QUEUED_MIB))]
    pub max_queued_mib: u64,
    /// Most MiB of frames queued in one link (a link always holds at least its newest frame
    /// if the runtime-wide budget has room for it).
    #[cfg_attr(feature = "clap", arg(long = "max-link-mib", value_name = "MIB", default_value_t = DEFAULT_MAX_LINK_MIB))]
    pub max_link_mib: u64,
    /// Longest a processor's `setup` may take, in milliseconds; beyond it the processor is
    /// asked to stop and reported failed (a create request is answered with the timeout).
    #[cfg_attr(feature = "clap", arg(long = "setup-timeout-ms", value_name = "MS", default_value_t = DEFAULT_SETUP_TIMEOUT_MS))]
    pub setup_timeout_ms: u64,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        Self {
            max_processors: DEFAULT_MAX_PROCESSORS,
            max_queued_mib: DEFAULT_MAX_QUEUED_MIB,
            max_link_mib: DEFAULT_MAX_LINK_MIB,
            setup_timeout_ms: DEFAULT_SETUP_TIMEOUT_MS,
        }
    }
}

impl RuntimeLimits {
    /// Checks the ranges: at least one processor, budgets of at least 1 MiB, a setup timeout
    /// from 10 ms to 10 min.
    pub fn validate(&self) -> crate::core::error::Result<()> {
        let invalid = |what: String| {
            Err(crate::core::error::StreamError::InvalidConfig {
                processor_type: "runtime limits".into(),
                field: None,
                message: what,
            })
        };
        if self.max_processors == 0 {
            return invalid("max_processors must be at least 1".into());
        }
        if self.max_queued_mib == 0 || self.max_link_mib == 0 {
            return invalid("max_queued_mib and max_link_mib must be at least 1".into());
        }
        if !(10..=600_000).contains(&self.setup_timeout_ms) {
            return invalid(format!(
                "setup_timeout_ms must be between 10 and 600000, got {}",
                self.setup_timeout_ms
            ));
        }
        Ok(())
    }

    /// The runtime-wide budget in bytes.
    pub fn max_queued_bytes(&self) -> u64 {
        self.max_queued_mib.saturating_mul(1 << 20)
    }

    /// The setup timeout.
    pub fn setup_timeout(&self) -> Duration {
        Duration::from_millis(self.setup_timeout_ms)
    }

    /// The per-link budget in bytes.
    pub fn max_link_bytes(&self) -> u64 {
        self.max_link_mib.saturating_mul(1 << 20)
    }
}
