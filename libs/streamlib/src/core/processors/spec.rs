use super::descriptor::ProcessorMeta;
use super::dynamic::DynProcessor;
use super::processor::Processor;

/// A processor ready to be added to a runtime: the instance (config applied, ports unconnected)
/// and, optionally, the id it should get.
///
/// Made by [`PROCESSOR_REGISTRY`](super::PROCESSOR_REGISTRY) from a type name and JSON config, or
/// from a typed config with the generated `MyProcessor::spec(config)`.
pub struct ProcessorSpec {
    pub(crate) node: Box<dyn DynProcessor>,
    pub(crate) id: Option<String>,
}

impl ProcessorSpec {
    /// Wraps a processor instance.
    pub fn new<P: Processor + ProcessorMeta>(processor: P) -> Self {
        Self {
            node: Box::new(processor),
            id: None,
        }
    }

    /// Asks for a specific id (checked when added: unique, `[A-Za-z0-9_-]{1,64}`). Without it the
    /// runtime generates one from the type name, e.g. `test-pattern-k3x9a2`.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The registered type name.
    pub fn type_name(&self) -> &'static str {
        self.node.type_name()
    }

    /// The effective config as JSON (defaults filled in).
    pub fn config(&self) -> serde_json::Value {
        self.node.config_json()
    }

    /// The id asked for with [`ProcessorSpec::with_id`], if any.
    pub fn requested_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

impl std::fmt::Debug for ProcessorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorSpec")
            .field("type_name", &self.type_name())
            .field("id", &self.id)
            .field("config", &self.config())
            .finish()
    }
}
