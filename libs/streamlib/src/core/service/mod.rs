//! The service layer: a thread-safe async facade over [`StreamRuntime`](crate::core::StreamRuntime).
//!
//! [`RuntimeService`] turns each call into a [`command::RuntimeCommand`] sent with a oneshot reply
//! channel to the runtime's thread, which executes it with the runtime's own methods. It holds
//! no business logic.

pub(crate) mod command;
#[cfg(feature = "api-server")]
pub mod http;
mod runtime_service;

pub use runtime_service::RuntimeService;
