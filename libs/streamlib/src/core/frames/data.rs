use std::sync::Arc;

use super::{Frame, FrameType};
use crate::core::links::ReadMode;

/// A named JSON record: telemetry, detections, control messages. Cloning shares the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFrame {
    /// What the record is (`"detections"`, `"stats"`...), for consumers that multiplex.
    pub name: Arc<str>,
    /// The record itself.
    pub payload: Arc<serde_json::Value>,
    /// Time on the media clock, in nanoseconds.
    pub timestamp_ns: u64,
    /// Sequence number assigned by the producer.
    pub frame_number: u64,
}

impl DataFrame {
    /// Builds a data frame from a name and a JSON value.
    pub fn new(
        name: impl Into<Arc<str>>,
        payload: serde_json::Value,
        timestamp_ns: u64,
        frame_number: u64,
    ) -> Self {
        Self {
            name: name.into(),
            payload: Arc::new(payload),
            timestamp_ns,
            frame_number,
        }
    }
}

impl Frame for DataFrame {
    const FRAME_TYPE: FrameType = FrameType::Data;
    const DEFAULT_CAPACITY: usize = 64;
    const DEFAULT_READ_MODE: ReadMode = ReadMode::InOrder;

    fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }
    fn frame_number(&self) -> u64 {
        self.frame_number
    }
}
