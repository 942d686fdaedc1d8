//! The library's error type.
//!
//! Every fallible operation returns [`StreamError`]. Each variant has a stable machine-readable
//! [`StreamError::code`], which the HTTP API puts in its error body, so clients can branch on it.

use std::sync::Arc;

use crate::core::frames::FrameType;

/// Result alias used throughout streamlib.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;

/// Everything that can go wrong when building or driving a pipeline.
///
/// The messages are written for the person at the other end of an API call: they name the thing
/// that was wrong and what would have been accepted.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The registry has no processor type of that name.
    #[error("unknown processor type '{name}'; known types: {}", known.join(", "))]
    UnknownProcessorType {
        /// The name that was asked for.
        name: String,
        /// Every registered type name, sorted.
        known: Vec<String>,
    },

    /// A processor config did not deserialize or failed validation.
    #[error("invalid config for {processor_type}: {}{message}", field.as_deref().map(|f| format!("field '{f}': ")).unwrap_or_default())]
    InvalidConfig {
        /// The processor type whose config was rejected.
        processor_type: String,
        /// The path of the offending field (`width`, `frequencies[2]`), when one is known.
        field: Option<String>,
        /// What was wrong and what was expected.
        message: String,
    },

    /// No processor has that id.
    #[error("processor '{0}' not found")]
    ProcessorNotFound(String),

    /// No link has that id.
    #[error("link '{0}' not found")]
    LinkNotFound(String),

    /// The processor exists but has no port of that name in that direction.
    #[error("processor '{processor}' has no {direction} port '{port}'; its {direction} ports are: {}", if available.is_empty() { "(none)".to_string() } else { available.join(", ") })]
    PortNotFound {
        /// The processor that was addressed.
        processor: String,
        /// The port name that was asked for.
        port: String,
        /// `input` or `output`.
        direction: &'static str,
        /// The ports it does have in that direction.
        available: Vec<String>,
    },

    /// The two ports carry different frame types.
    #[error(
        "cannot connect {from} ({from_type}) to {to} ({to_type}): a link joins ports of the same frame type{alternatives}"
    )]
    PortTypeMismatch {
        /// `processor.port` of the output.
        from: String,
        /// `processor.port` of the input.
        to: String,
        /// Frame type of the output.
        from_type: FrameType,
        /// Frame type of the input.
        to_type: FrameType,
        /// "; … can be linked to: a.audio; … can take: b.video" naming what would work for
        /// either end, or empty.
        alternatives: String,
    },

    /// A link from a processor's output to its own input.
    #[error(
        "cannot connect {from} to {to}: a processor cannot be linked to itself (its output would feed its own input){alternatives}"
    )]
    SelfLink {
        /// `processor.port` of the output.
        from: String,
        /// `processor.port` of the input.
        to: String,
        /// "; … can be linked to: a.video, …" naming what would work, or empty.
        alternatives: String,
    },

    /// An input takes exactly one link.
    #[error(
        "input {input} is already connected by link '{link}'; disconnect it first{alternatives}"
    )]
    InputAlreadyConnected {
        /// `processor.port` of the input.
        input: String,
        /// The link that holds it.
        link: String,
        /// "; … can be linked to: a.video, …" naming the free inputs the output could take, or
        /// empty.
        alternatives: String,
    },

    /// A config change touches fields the running processor cannot take without a restart.
    #[error(
        "cannot change {} of processor '{processor}' ({processor_type}) while it runs: {}; ask for a restart (HTTP: ?restart=true) to tear it down and set it up again with the new config, its links kept",
        quoted_list(fields),
        if live.is_empty() { "it has no live fields".to_string() } else { format!("only its live fields can change in place ({})", live.join(", ")) }
    )]
    NotLive {
        /// The processor id.
        processor: String,
        /// Its type.
        processor_type: String,
        /// The changed fields that are not live.
        fields: Vec<String>,
        /// The fields that are.
        live: Vec<String>,
    },

    /// A graph document was refused whole: every problem, each at its place in the document.
    #[error("the graph document was refused: {}{}", problems.iter().take(10).map(|p| if p.place.is_empty() { p.message.clone() } else { format!("{}: {}", p.place, p.message) }).collect::<Vec<_>>().join("; "), if problems.len() > 10 { format!("; and more ({} listed in `problems`)", problems.len()) } else { String::new() })]
    GraphRejected {
        /// What is wrong, where.
        problems: Vec<crate::core::graph::GraphProblem>,
    },

    /// A change was made against a revision of the graph that is not the current one.
    #[error(
        "the graph has changed: it is at revision {actual}, the request expected {expected}; get it again (GET /api/graph) and redo the change on it"
    )]
    RevisionMismatch {
        /// The revision the request was made against (`If-Match`, or the document's own).
        expected: u64,
        /// The graph's revision now.
        actual: u64,
    },

    /// A processor id requested by the caller is taken.
    #[error("a processor with id '{0}' already exists")]
    DuplicateProcessorId(String),

    /// A port reference (`processor.port`) is malformed.
    #[error("invalid port reference '{text}': {reason}")]
    InvalidPortRef {
        /// The rejected text.
        text: String,
        /// What a valid one looks like.
        reason: String,
    },

    /// An id is malformed.
    #[error("invalid id '{id}': {reason}")]
    InvalidId {
        /// The rejected text.
        id: String,
        /// What a valid one looks like.
        reason: String,
    },

    /// Link options out of range (capacity, policy).
    #[error("invalid link options: {0}")]
    InvalidLinkOptions(String),

    /// A processor failed while being started (its `setup` returned an error or panicked).
    /// The processor's own error is kept whole, so its kind (a missing device is
    /// [`ErrorKind::Unavailable`]) still decides how the failure is reported.
    ///
    /// The cause is part of the message, so it is not also reported as `Error::source` (a
    /// chain printer would show it twice).
    #[error("processor '{processor}' failed in {stage}: {error}")]
    ProcessorFailed {
        /// The processor id.
        processor: String,
        /// Where in its lifecycle it failed.
        stage: Stage,
        /// The processor's error (a panic becomes [`StreamError::Processor`]).
        error: Box<StreamError>,
    },

    /// A configured limit would be exceeded; the message names the limit and how to raise it.
    #[error("{message}")]
    LimitReached {
        /// The limit's name as configured (`max_processors`, ...).
        limit: &'static str,
        /// What was refused, the limit's value and the flag that raises it.
        message: String,
    },

    /// The request is valid but conflicts with the current state (e.g. removing the API server
    /// that is serving the request).
    #[error("{0}")]
    Conflict(String),

    /// A graph file or graph description is inconsistent.
    #[error("invalid graph: {0}")]
    InvalidGraph(String),

    /// The runtime is not there to answer (shut down, or its command channel closed).
    #[error("runtime unavailable: {0}")]
    RuntimeUnavailable(String),

    /// The call would wait for the very thread that is making it.
    #[error("refused, this call would deadlock: {0}")]
    WouldDeadlock(String),

    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),

    /// An I/O operation failed (files, sockets, devices).
    /// (The operating system's message is part of this error's message, so it is not also
    /// reported as `Error::source`.)
    #[error("{context}: {error}")]
    Io {
        /// What was being done, naming the file or address.
        context: String,
        /// The operating system's error, kept whole (`error.kind()` tells not-found from
        /// permission-denied); behind an `Arc` so the error stays `Clone`.
        error: Arc<std::io::Error>,
    },

    /// A processor could not get the hardware or system service it needs.
    #[error("{0}")]
    Unavailable(String),

    /// A processor's own error, reported from `setup`/`process`/`teardown`.
    #[error("{0}")]
    Processor(String),
}

impl StreamError {
    /// The stable, machine-readable code of this error (`processor_not_found`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            StreamError::UnknownProcessorType { .. } => "unknown_processor_type",
            StreamError::InvalidConfig { .. } => "invalid_config",
            StreamError::ProcessorNotFound(_) => "processor_not_found",
            StreamError::LinkNotFound(_) => "link_not_found",
            StreamError::PortNotFound { .. } => "port_not_found",
            StreamError::PortTypeMismatch { .. } => "port_type_mismatch",
            StreamError::SelfLink { .. } => "self_link",
            StreamError::InputAlreadyConnected { .. } => "input_already_connected",
            StreamError::DuplicateProcessorId(_) => "duplicate_processor_id",
            StreamError::NotLive { .. } => "config_not_live",
            StreamError::GraphRejected { .. } => "graph_rejected",
            StreamError::RevisionMismatch { .. } => "revision_mismatch",
            StreamError::InvalidId { .. } => "invalid_id",
            StreamError::InvalidPortRef { .. } => "invalid_port_reference",
            StreamError::InvalidLinkOptions(_) => "invalid_link_options",
            StreamError::ProcessorFailed { .. } => "processor_failed",
            StreamError::LimitReached { .. } => "limit_reached",
            StreamError::Conflict(_) => "conflict",
            StreamError::InvalidGraph(_) => "invalid_graph",
            StreamError::RuntimeUnavailable(_) => "runtime_unavailable",
            StreamError::WouldDeadlock(_) => "would_deadlock",
            StreamError::Timeout(_) => "timeout",
            StreamError::Io { .. } => "io_error",
            StreamError::Unavailable(_) => "unavailable",
            StreamError::Processor(_) => "processor_error",
        }
    }

    /// What kind of failure this is, wherever it happened. The HTTP API takes its status from
    /// it, so a processor that failed because its device is missing answers 503, not 422.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StreamError::UnknownProcessorType { .. }
            | StreamError::InvalidId { .. }
            | StreamError::InvalidPortRef { .. }
            | StreamError::InvalidGraph(_) => ErrorKind::BadRequest,
            StreamError::InvalidConfig { .. }
            | StreamError::GraphRejected { .. }
            | StreamError::PortTypeMismatch { .. }
            | StreamError::SelfLink { .. }
            | StreamError::InvalidLinkOptions(_) => ErrorKind::Unprocessable,
            StreamError::ProcessorFailed { error, .. } => match error.kind() {
                ErrorKind::Unavailable => ErrorKind::Unavailable,
                _ => ErrorKind::Unprocessable,
            },
            StreamError::ProcessorNotFound(_)
            | StreamError::LinkNotFound(_)
            | StreamError::PortNotFound { .. } => ErrorKind::NotFound,
            StreamError::InputAlreadyConnected { .. }
            | StreamError::DuplicateProcessorId(_)
            | StreamError::NotLive { .. }
            | StreamError::LimitReached { .. }
            | StreamError::Conflict(_) => ErrorKind::Conflict,
            StreamError::RuntimeUnavailable(_) | StreamError::Unavailable(_) => {
                ErrorKind::Unavailable
            }
            StreamError::Timeout(_) => ErrorKind::Timeout,
            StreamError::RevisionMismatch { .. } => ErrorKind::PreconditionFailed,
            StreamError::WouldDeadlock(_) | StreamError::Io { .. } | StreamError::Processor(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// Builds an [`StreamError::Io`] from an I/O error and a description of what was attempted.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        StreamError::Io {
            context: context.into(),
            error: Arc::new(err),
        }
    }

    /// The same error with `who` (a processor type) in front of an I/O error's context, so a
    /// message from a shared helper says which processor it concerns.
    pub(crate) fn for_processor(self, who: &str) -> Self {
        match self {
            StreamError::Io { context, error } => StreamError::Io {
                context: format!("{who}: {context}"),
                error,
            },
            other => other,
        }
    }

    /// The same error as the failure of processor `processor` in `stage`.
    pub fn in_stage(self, processor: impl Into<String>, stage: Stage) -> Self {
        StreamError::ProcessorFailed {
            processor: processor.into(),
            stage,
            error: Box::new(self),
        }
    }

    /// Builds a processor's own error from any message.
    pub fn processor(message: impl Into<String>) -> Self {
        StreamError::Processor(message.into())
    }
}

/// `field 'a'` or `fields 'a', 'b'`.
fn quoted_list(fields: &[String]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| format!("'{f}'")).collect();
    match quoted.len() {
        1 => format!("field {}", quoted[0]),
        _ => format!("fields {}", quoted.join(", ")),
    }
}

/// The class of an error: what the caller did wrong, or what was missing. One per HTTP status
/// family, so every surface (HTTP, CLI) reports an error the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed: unknown type, bad id, inconsistent graph (HTTP 400).
    BadRequest,
    /// Well-formed but not acceptable: config out of range, ports that do not fit, a processor
    /// that could not start with what it was given (HTTP 422).
    Unprocessable,
    /// The processor, link or port named does not exist (HTTP 404).
    NotFound,
    /// Conflicts with the current graph: id taken, input in use, removing the caller, a limit
    /// reached (HTTP 409).
    Conflict,
    /// The request was made against a state that is no longer current (HTTP 412).
    PreconditionFailed,
    /// Something needed is not there: the runtime, a device, a system service (HTTP 503).
    Unavailable,
    /// Did not finish in time (HTTP 504).
    Timeout,
    /// A fault on our side; reported without details to remote callers (HTTP 500).
    Internal,
}

/// Where in a processor's lifecycle something happened.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// `setup()`, on the processor's thread before it is released.
    Setup,
    /// `process()` (and the execution loop around it).
    Process,
    /// `teardown()`, and the stop that leads to it.
    Teardown,
}

impl Stage {
    /// The lowercase name used in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Setup => "setup",
            Stage::Process => "process",
            Stage::Teardown => "teardown",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Stage {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Stage {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
