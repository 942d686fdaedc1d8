//! The platform-independent core: frames, links, graph, processors, runtime, service layer.

pub mod context;
pub mod dsp;
pub mod error;
pub mod files;
pub mod frames;
pub mod graph;
pub mod links;
pub mod metrics;
pub mod processors;
pub mod runtime;
pub mod service;

pub use context::{Counter, RuntimeContext};
pub use error::{ErrorKind, Result, Stage, StreamError};
pub use files::{CappedFile, FileAccess};
pub use frames::{
    AnyFrame, AudioFrame, DataFrame, Frame, FrameType, PixelFormat, VideoFrame, media_clock_ns,
};
pub use graph::{
    GraphApplied, GraphProblem, Link, LinkInfo, PlanAction, PlanActionKind, PortInfo, PortTarget,
    ProcessorCounters, ProcessorInfo, RuntimeState,
};
pub use graph::{
    GraphConnection, GraphFile, GraphProcessor, GraphUi, InputLinkPortRef, LinkUniqueId,
    OutputLinkPortRef, ProcessorUniqueId, UiPosition,
};
pub use links::{
    LinkCounters, LinkInput, LinkOptions, LinkOutput, MAX_LINK_CAPACITY, OverflowPolicy, PortWatch,
    ReadMode,
};
pub use metrics::{LinkRates, ProcessorRates};
pub use processors::audio::{
    AudioChannelConverterProcessor, AudioLevelsProcessor, AudioMixerProcessor,
    AudioResamplerProcessor, BufferRechunkerProcessor,
};
pub use processors::video::VideoScaleProcessor;
pub use processors::wav::{WavSourceProcessor, WavWriterProcessor};
pub use processors::{
    BAR_COLOURS, ChordGeneratorConfig, ChordGeneratorProcessor, CountingSinkConfig,
    CountingSinkProcessor, SimplePassthroughProcessor, TestPattern, TestPatternConfig,
    TestPatternProcessor, TestPatternRenderer,
};
pub use processors::{
    ConfigError, Execution, LIVE_KEYWORD, NoConfig, PROCESSOR_REGISTRY, PortDescriptor, Processor,
    ProcessorConfig, ProcessorDescriptor, ProcessorRegistry, ProcessorSpec,
};
pub use runtime::{
    ConfigApplied, ConfigChange, ConfigUpdate, MainThreadHandle, ProcessorStatus, RuntimeEvent,
    RuntimeEventKind, RuntimeLimits, RuntimeStatus, ShutdownHandle, StopSignal, StreamRuntime,
};
pub use service::RuntimeService;

#[cfg(feature = "api-server")]
pub use processors::{ApiServerConfig, ApiServerHandle, ApiServerProcessor};
