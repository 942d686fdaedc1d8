//! `ApiServerProcessor`: the HTTP/WebSocket API as a processor (RFC).
//!
//! It binds in `setup` (so a port in use fails setup with a clear error), serves on its own
//! Tokio runtime (2 workers) on a background thread, and shuts down gracefully in `teardown`.
//! It is a control-plane processor: it runs whether or not the runtime is started, so the
//! runtime can be stopped and started again through it.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::context::RuntimeContext;
use crate::core::error::{Result, StreamError};
use crate::core::processors::registry::flattened_field_error;
use crate::core::processors::{ConfigError, ProcessorConfig, ProcessorSpec};
use crate::core::service::http::{self, ApiOptions, ApiState};

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 9000;
/// Worker threads of the server's Tokio runtime (RFC).
const WORKER_THREADS: usize = 2;
/// How long teardown lets in-flight requests finish before closing their connections; shorter
/// than the runtime's stop timeout, so teardown always completes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Config of [`ApiServerProcessor`]: `{"host", "port"}` as in the RFC, and beside them the
/// fields of [`ApiOptions`] (token, allowed hosts and origins, rate limit, limits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ApiServerConfig {
    /// Address to listen on. Anything but a loopback address requires a token.
    pub host: String,
    /// TCP port; 0 picks a free one (see [`ApiServerHandle`] and the `port` metric).
    pub port: u16,
    /// Serve even though the runtime lets processors open any file (no media directory, see
    /// [`FileAccess`](crate::core::FileAccess)): clients could then read and write every file
    /// this process can. Only for clients trusted that far.
    pub unconfined_files: bool,
    /// How the server protects and limits itself.
    #[serde(flatten, deserialize_with = "options_naming_the_field")]
    pub options: ApiOptions,
}

/// Reads the flattened options with path tracking of their own, so that an error names the
/// field: serde buffers flattened fields, which hides the path from the caller's tracking.
fn options_naming_the_field<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<ApiOptions, D::Error> {
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string();
        let message = e.into_inner().to_string();
        serde::de::Error::custom(flattened_field_error(&field, &message))
    })
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            unconfined_files: false,
            options: ApiOptions::default(),
        }
    }
}

impl ProcessorConfig for ApiServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(ConfigError::new("host", "must not be empty"));
        }
        self.options.validate()
    }
}

/// Where an API server is listening, known once its setup has run (with port 0 the system
/// picks the port). Cheap to clone; get it with [`ApiServerProcessor::Processor::spec_with_handle`].
#[derive(Debug, Clone, Default)]
pub struct ApiServerHandle(Arc<Mutex<Option<SocketAddr>>>);

impl ApiServerHandle {
    /// The bound address, or `None` before setup (or after a failed one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, addr: SocketAddr) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
    }
}

/// Serves the HTTP/WebSocket API (see [`crate::core::service::http`]) over the runtime's
/// [`RuntimeService`].
#[streamlib::processor(
    execution = Manual,
    control_plane = true,
    description = "HTTP/WebSocket API server for runtime control"
)]
pub struct ApiServerProcessor {
    #[streamlib::config]
    config: ApiServerConfig,

    /// Ends the server (graceful shutdown) when sent or dropped.
    shutdown_tx: Option<tokio::sync::oneshot::Sender<()>>,

    /// Tells the address once bound.
    handle: ApiServerHandle,

    /// The thread running the Tokio runtime, joined in teardown.
    server_thread: Option<JoinHandle<()>>,
}

impl ApiServerProcessor::Processor {
    /// A spec for `add_processor`, and a handle that tells where the server listens once its
    /// setup has run.
    pub fn spec_with_handle(config: ApiServerConfig) -> (ProcessorSpec, ApiServerHandle) {
        let processor = Self::from_config(config);
        let handle = processor.handle.clone();
        (ProcessorSpec::new(processor), handle)
    }

    /// Binds the listener, refusing an unprotected non-loopback address.
    fn bind(&self) -> Result<TcpListener> {
        let c = &self.config;
        let target = format!("{}:{}", c.host, c.port);
        let addrs: Vec<SocketAddr> = (c.host.as_str(), c.port)
            .to_socket_addrs()
            .map_err(|e| StreamError::io(format!("cannot resolve API server address {target}"), e))?
            .collect();
        if c.options.token.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(StreamError::Processor(format!(
                "refusing to serve the API on {target} without a token: anyone who can reach it could control the runtime. Set a token (--token or STREAMLIB_API_TOKEN) or listen on 127.0.0.1"
            )));
        }
        let listener = TcpListener::bind(addrs.as_slice())
            .map_err(|e| StreamError::io(format!("cannot listen on {target}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| StreamError::io("cannot make the API listener non-blocking", e))?;
        Ok(listener)
    }
}

impl crate::core::Processor for ApiServerProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        if ctx.files().media_dir().is_none() && !self.config.unconfined_files {
            return Err(StreamError::Processor(
                "refusing to serve the API: this runtime lets processors open any file, so API clients could read and write every file this process can. Use `streamlib serve` (files confined to --media-dir), give the runtime a media directory (StreamRuntime::set_file_access(FileAccess::beneath(dir))), or set `unconfined_files: true` if every client is trusted that far".into(),
            ));
        }
        let listener = self.bind()?;
        let local = listener
            .local_addr()
            .map_err(|e| StreamError::io("cannot read the API listener's address", e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("sl-api")
            .enable_all()
            .build()
            .map_err(|e| StreamError::io("cannot start the API server's Tokio runtime", e))?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(|e| StreamError::io("cannot register the API listener", e))?
        };
        let state = ApiState::new(
            ctx.runtime_service(),
            local,
            self.config.options.clone(),
            Some(ctx.processor_id().clone()),
        );
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();

        // The Tokio runtime runs on a thread of its own until teardown signals shutdown.
        let thread = std::thread::Builder::new()
            .name("sl-api-server".to_string())
            .spawn(move || {
                let served = runtime.block_on(async move {
                    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
                    let serve = http::serve(listener, state, async move {
                        // A dropped sender (processor gone) also means stop.
                        let _ = shutdown_rx.await;
                        let _ = signalled_tx.send(());
                    });
                    // Graceful shutdown waits for every connection; a client that never
                    // finishes its request must not hold the runtime's teardown hostage.
                    let grace = async move {
                        let _ = signalled_rx.await;
                        tokio::time::sleep(SHUTDOWN_GRACE).await;
                    };
                    tokio::select! {
                        served = serve => served,
                        () = grace => {
                            tracing::warn!("API connections still open after the grace period; closing them");
                            Ok(())
                        }
                    }
                });
                if let Err(e) = served {
                    tracing::error!(error = %e, "API server stopped with an error");
                }
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .map_err(|e| StreamError::io("cannot start the API server thread", e))?;

        self.shutdown_tx = Some(shutdown_tx);
        self.server_thread = Some(thread);
        ctx.counter("port").set(u64::from(local.port()));
        self.handle.set(local);
        tracing::info!(
            url = %format!("http://{local}"),
            token = self.config.options.token.is_some(),
            "API server listening"
        );
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        // Manual: the server runs on its own Tokio runtime; there is nothing to do here.
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        if let Some(tx) = self.shutdown_tx.take() {
            // The server may already have stopped on its own; then there is no receiver.
            let _ = tx.send(());
            tracing::info!("API server shutdown signal sent");
        }
        if let Some(thread) = self.server_thread.take() {
            thread.join().map_err(|_| {
                StreamError::Processor("the API server thread panicked".to_string())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PROCESSOR_REGISTRY;
    use serde_json::json;

    /// The field and message of the config error for `config`.
    fn config_error(config: serde_json::Value) -> (Option<String>, String) {
        match PROCESSOR_REGISTRY.create("ApiServerProcessor", config) {
            Ok(_) => panic!("the config was accepted"),
            Err(crate::core::StreamError::InvalidConfig { field, message, .. }) => (field, message),
            Err(other) => panic!("expected invalid_config, got {other}"),
        }
    }

    #[test]
    fn config_errors_name_the_field_also_in_the_flattened_options() {
        let (field, message) = config_error(json!({"port": "x"}));
        assert_eq!(field.as_deref(), Some("port"), "{message}");
        // In the flattened options: the same structured field as any other config.
        let (field, message) = config_error(json!({"rate_limit_per_second": "x"}));
        assert_eq!(field.as_deref(), Some("rate_limit_per_second"), "{message}");
        assert!(message.starts_with("invalid type"), "{message}");
        let (field, message) = config_error(json!({"allowed_hosts": ["a", 1]}));
        assert_eq!(field.as_deref(), Some("allowed_hosts[1]"), "{message}");
        let (field, message) = config_error(json!({"request_timeout_ms": -1}));
        assert_eq!(field.as_deref(), Some("request_timeout_ms"), "{message}");
        // An unknown key lists the accepted ones, the flattened ones included.
        let (field, message) = config_error(json!({"tokn": "12345678"}));
        assert_eq!(field, None);
        assert!(
            message.contains("unknown field `tokn`")
                && message.contains("`host`")
                && message.contains("`token`")
                && message.contains("`ws_ping_interval_ms`"),
            "{message}"
        );
        // Ranges are checked after parsing, on the whole config.
        let (field, message) = config_error(json!({"token": "short"}));
        assert_eq!(field.as_deref(), Some("token"), "{message}");
    }

    #[test]
    fn options_read_from_the_same_json_and_the_token_never_comes_back() {
        let config: ApiServerConfig = serde_json::from_value(
            json!({"host": "::1", "token": "s3cret-token", "request_timeout_ms": 500}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.host, "::1");
        assert_eq!(config.options.request_timeout, Duration::from_millis(500));
        assert_eq!(
            config.options.token.as_ref().map(|t| t.expose()),
            Some("s3cret-token")
        );
        let back = serde_json::to_value(&config).unwrap_or_default();
        assert!(back.get("token").is_none(), "{back}");
        assert_eq!(back["request_timeout_ms"], 500);
        assert_eq!(back["port"], 9000);
        let shown = format!("{config:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
