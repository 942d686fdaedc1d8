//! The object-safe face of a processor, so the runtime can hold any of them in one map.

use super::config::ProcessorConfig;
use super::descriptor::ProcessorMeta;
use super::processor::{Execution, Processor};
use super::registry::parse_config;
use crate::core::context::RuntimeContext;
use crate::core::error::Result;
use crate::core::links::PortSet;

pub(crate) trait DynProcessor: Send {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()>;
    fn process(&mut self) -> Result<()>;
    fn on_end_of_stream(&mut self) -> Result<()>;
    fn teardown(&mut self) -> Result<()>;
    fn type_name(&self) -> &'static str;
    fn execution(&self) -> Execution;
    fn control_plane(&self) -> bool;
    fn ports(&self) -> PortSet;
    fn config_json(&self) -> serde_json::Value;
    fn validate(&self) -> Result<()>;
    /// Applies a new config (checked) to the running processor, then stores it.
    fn reconfigure(&mut self, config: serde_json::Value, ctx: &RuntimeContext) -> Result<()>;
    /// Stores a new config (checked) without telling the processor: it is not running, and
    /// its next `setup` reads it.
    fn replace_config(&mut self, config: serde_json::Value) -> Result<()>;
}

impl<P: Processor + ProcessorMeta> DynProcessor for P {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        Processor::setup(self, ctx)
    }
    fn process(&mut self) -> Result<()> {
        Processor::process(self)
    }
    fn on_end_of_stream(&mut self) -> Result<()> {
        Processor::on_end_of_stream(self)
    }
    fn teardown(&mut self) -> Result<()> {
        Processor::teardown(self)
    }
    fn type_name(&self) -> &'static str {
        P::TYPE_NAME
    }
    fn execution(&self) -> Execution {
        P::EXECUTION
    }
    fn control_plane(&self) -> bool {
        P::CONTROL_PLANE
    }
    fn ports(&self) -> PortSet {
        ProcessorMeta::ports(self)
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(ProcessorMeta::config(self)).unwrap_or(serde_json::Value::Null)
    }
    fn validate(&self) -> Result<()> {
        ProcessorMeta::config(self)
            .validate()
            .map_err(|e| e.for_type(P::TYPE_NAME))
    }
    fn reconfigure(&mut self, config: serde_json::Value, ctx: &RuntimeContext) -> Result<()> {
        let new: P::Config = parse_config(P::TYPE_NAME, config)?;
        Processor::reconfigure(self, &new, ctx)?;
        store_config::<P>(self, new)
    }
    fn replace_config(&mut self, config: serde_json::Value) -> Result<()> {
        let new: P::Config = parse_config(P::TYPE_NAME, config)?;
        store_config::<P>(self, new)
    }
}

fn store_config<P: ProcessorMeta>(processor: &mut P, new: P::Config) -> Result<()> {
    match ProcessorMeta::config_mut(processor) {
        Some(config) => {
            *config = new;
            Ok(())
        }
        // A type without a config: only `{}` parses, and there is nothing to store.
        None => Ok(()),
    }
}
