use serde::{Deserialize, Serialize};

use crate::core::error::{Result, StreamError};

/// The largest ring a link may have. Frames are handles, but a producer that fills a huge ring
/// with large frames pins that much memory; 1024 video frames of 8 MB are already 8 GB.
pub const MAX_LINK_CAPACITY: usize = 1024;

/// What a producer does when the link's ring is full.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Real-time default: never block the producer; drop the oldest queued frame and count it.
    #[default]
    DropOldest,
    /// Wait for room, so nothing is lost (file-to-file work). While the reader is not running
    /// nothing is queued: frames are dropped (and counted) rather than kept for nobody.
    Backpressure,
}

/// How the consumer takes frames from the ring.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// Skip to the newest frame; skipped frames count as dropped. Video default.
    Latest,
    /// One frame at a time, oldest first. Audio and data default, and the default of any
    /// `backpressure` link.
    InOrder,
}

/// Optional settings of a connect call; `None` fields take the frame type's defaults.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct LinkOptions {
    /// Ring size in frames (1..=1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
    /// Full-ring behaviour; `drop_oldest` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<OverflowPolicy>,
    /// Read behaviour; the frame type's default (`in_order` for backpressure links) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_mode: Option<ReadMode>,
}

impl LinkOptions {
    /// Options with a given ring capacity.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Options with a given overflow policy.
    pub fn with_overflow(mut self, overflow: OverflowPolicy) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Options with a given read mode.
    pub fn with_read_mode(mut self, read_mode: ReadMode) -> Self {
        self.read_mode = Some(read_mode);
        self
    }

    /// Fills the defaults for a frame type and checks the ranges; `max_bytes` is the link's
    /// memory budget (the runtime's per-link limit).
    pub(crate) fn resolve(
        &self,
        default_capacity: usize,
        default_read_mode: ReadMode,
        max_bytes: u64,
    ) -> Result<ResolvedLinkOptions> {
        let capacity = self.capacity.unwrap_or(default_capacity);
        if !(1..=MAX_LINK_CAPACITY).contains(&capacity) {
            return Err(StreamError::InvalidLinkOptions(format!(
                "capacity must be between 1 and {MAX_LINK_CAPACITY} frames, got {capacity}"
            )));
        }
        let overflow = self.overflow.unwrap_or_default();
        let read_mode = self.read_mode.unwrap_or(match overflow {
            OverflowPolicy::Backpressure => ReadMode::InOrder,
            OverflowPolicy::DropOldest => default_read_mode,
        });
        Ok(ResolvedLinkOptions {
            capacity,
            overflow,
            read_mode,
            max_bytes,
        })
    }
}

/// Link settings with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResolvedLinkOptions {
    pub capacity: usize,
    pub overflow: OverflowPolicy,
    pub read_mode: ReadMode,
    /// Most bytes of frames queued (an empty link still takes one frame of any size).
    pub max_bytes: u64,
}

/// A link's frame counts. At rest, `written = read + dropped + queued`.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct LinkCounters {
    /// Frames the producer wrote into the link.
    pub written: u64,
    /// Frames the consumer took out.
    pub read: u64,
    /// Frames lost: overwritten when the ring was full, or skipped by a `latest` read.
    pub dropped: u64,
    /// Frames waiting in the ring now.
    pub queued: u64,
    /// Bytes of the frames waiting in the ring now (payloads; counted against the link's and
    /// the runtime's memory budgets).
    #[serde(default)]
    pub queued_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backpressure_defaults_to_in_order() {
        let r = LinkOptions::default()
            .with_overflow(OverflowPolicy::Backpressure)
            .resolve(4, ReadMode::Latest, u64::MAX)
            .unwrap();
        assert_eq!(r.read_mode, ReadMode::InOrder);
        let r = LinkOptions::default()
            .resolve(4, ReadMode::Latest, u64::MAX)
            .unwrap();
        assert_eq!(r.read_mode, ReadMode::Latest);
        assert_eq!(r.overflow, OverflowPolicy::DropOldest);
    }

    #[test]
    fn capacity_is_bounded() {
        assert!(
            LinkOptions::default()
                .with_capacity(0)
                .resolve(4, ReadMode::Latest, u64::MAX)
                .is_err()
        );
        assert!(
            LinkOptions::default()
                .with_capacity(MAX_LINK_CAPACITY + 1)
                .resolve(4, ReadMode::Latest, u64::MAX)
                .is_err()
        );
    }
}
