//! What most users of streamlib need, in one import: `use streamlib::prelude::*;`.

pub use crate::core::{
    AudioFrame, DataFrame, Frame, FrameType, InputLinkPortRef, LinkInput, LinkOptions, LinkOutput,
    LinkUniqueId, OutputLinkPortRef, OverflowPolicy, PROCESSOR_REGISTRY, PixelFormat, Processor,
    ProcessorSpec, ProcessorUniqueId, ReadMode, Result, RuntimeContext, RuntimeEvent,
    RuntimeService, StreamError, StreamRuntime, VideoFrame,
};
