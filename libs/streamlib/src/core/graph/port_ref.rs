use serde::{Deserialize, Serialize};

use super::ProcessorUniqueId;
use crate::core::error::{Result, StreamError};

macro_rules! port_ref {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        pub struct $name {
            /// The processor that owns the port.
            pub processor: ProcessorUniqueId,
            /// The port's name on that processor.
            pub port: String,
        }

        impl $name {
            /// Refers to `port` on `processor`.
            pub fn new(processor: impl Into<ProcessorUniqueId>, port: impl Into<String>) -> Self {
                Self { processor: processor.into(), port: port.into() }
            }

            /// Parses `processor.port` (the graph file notation).
            pub fn parse(text: &str) -> Result<Self> {
                match text.rsplit_once('.') {
                    Some((processor, port)) if !processor.is_empty() && !port.is_empty() => {
                        Ok(Self::new(processor, port))
                    }
                    _ => Err(StreamError::InvalidPortRef {
                        text: text.to_string(),
                        reason: "a port reference is written processor.port, e.g. src.video".to_string(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}.{}", self.processor, self.port)
            }
        }
    };
}

port_ref!(
    /// Names an output port: where a link takes frames from.
    OutputLinkPortRef
);
port_ref!(
    /// Names an input port: where a link delivers frames.
    InputLinkPortRef
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dotted_refs() {
        let r = OutputLinkPortRef::parse("src.video").unwrap();
        assert_eq!(r.processor.as_str(), "src");
        assert_eq!(r.port, "video");
        assert_eq!(r.to_string(), "src.video");
        assert!(InputLinkPortRef::parse("novideo").is_err());
        assert!(InputLinkPortRef::parse(".video").is_err());
        assert!(InputLinkPortRef::parse("src.").is_err());
    }
}
