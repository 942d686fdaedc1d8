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
    /// An estimate from the JSON tree (strings and each node's own size): data frames are
    /// small records, and walking one costs far less than making it.
    fn payload_bytes(&self) -> u64 {
        fn size(v: &serde_json::Value) -> u64 {
            const NODE: u64 = std::mem::size_of::<serde_json::Value>() as u64;
            NODE + match v {
                serde_json::Value::String(s) => s.len() as u64,
                serde_json::Value::Array(items) => items.iter().map(size).sum(),
                serde_json::Value::Object(fields) => {
                    fields.iter().map(|(k, v)| k.len() as u64 + size(v)).sum()
                }
                _ => 0,
            }
        }
        self.name.len() as u64 + size(&self.payload)
    }
    fn into_any(self) -> super::AnyFrame {
        super::AnyFrame::Data(self)
    }
}
