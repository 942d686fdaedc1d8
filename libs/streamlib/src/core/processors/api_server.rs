//! `ApiServerProcessor`: the HTTP/WebSocket API as a processor (RFC).
//!
//! It binds in `setup` (so a port in use fails setup with a clear error), serves on its own
//! Tokio runtime (2 workers) on a background thread, and shuts down gracefully in `teardown`.
//! It is a control-plane processor: it runs whether or not the runtime is started, so the
//! runtime can be stopped and started again through it.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::context::RuntimeContext;
use crate::core::error::{Result, StreamError};
use crate::core::processors::{ConfigError, ProcessorConfig};
use crate::core::service::RuntimeService;
use crate::core::service::http::{self, ApiOptions, ApiState};

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 9000;
/// Worker threads of the server's Tokio runtime (RFC).
const WORKER_THREADS: usize = 2;
/// How long teardown lets in-flight requests finish before closing their connections; shorter
/// than the runtime's stop timeout, so teardown always completes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Config of [`ApiServerProcessor`]. `{"host", "port"}` as in the RFC; the rest are the
/// answers to its open questions (authentication, rate limiting, limits).
#[derive(Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ApiServerConfig {
    /// Address to listen on. Anything but a loopback address requires a token.
    pub host: String,
    /// TCP port; 0 picks a free one (reported as the `port` metric).
    pub port: u16,
    /// Bearer token required on every route. Never reported back (not in GET responses).
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// Extra `Host` header values to accept, e.g. `box.lan:9000` (DNS rebinding protection
    /// refuses others).
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the API, e.g. `https://console.example`.
    pub allowed_origins: Vec<String>,
    /// Changes (POST/DELETE) per second per client IP; 0 disables the limit.
    pub rate_limit_per_second: u32,
    /// Burst of changes per client IP above the sustained rate.
    pub rate_limit_burst: u32,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Longest a request may take, in milliseconds, before `504 timeout`.
    pub request_timeout_ms: u64,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            token: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            rate_limit_per_second: http::DEFAULT_RATE_LIMIT_PER_SECOND,
            rate_limit_burst: http::DEFAULT_RATE_LIMIT_BURST,
            max_body_bytes: http::DEFAULT_MAX_BODY_BYTES,
            request_timeout_ms: u64::try_from(http::DEFAULT_REQUEST_TIMEOUT.as_millis())
                .unwrap_or(u64::MAX),
        }
    }
}

impl std::fmt::Debug for ApiServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

impl ProcessorConfig for ApiServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(ConfigError::new("host", "must not be empty"));
        }
        if self.token.as_deref().is_some_and(|t| t.len() < 8) {
            return Err(ConfigError::new("token", "must be at least 8 characters"));
        }
        ConfigError::check_range("max_body_bytes", self.max_body_bytes, 256, 16 * 1024 * 1024)?;
        ConfigError::check_range("request_timeout_ms", self.request_timeout_ms, 10, 600_000)
    }
}

impl ApiServerConfig {
    fn options(&self) -> ApiOptions {
        ApiOptions {
            token: self.token.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            allowed_origins: self.allowed_origins.clone(),
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            max_body_bytes: self.max_body_bytes,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            ws_ping_interval: http::DEFAULT_WS_PING_INTERVAL,
        }
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

    // Obtained from RuntimeContext in setup()
    runtime_service: Option<RuntimeService>,

    // Handle to shutdown Tokio runtime
    shutdown_tx: Option<tokio::sync::oneshot::Sender<()>>,

    /// The thread running the Tokio runtime, joined in teardown.
    server_thread: Option<JoinHandle<()>>,
}

impl ApiServerProcessor::Processor {
    /// Binds the listener, refusing an unprotected non-loopback address.
    fn bind(&self) -> Result<TcpListener> {
        let c = &self.config;
        let target = format!("{}:{}", c.host, c.port);
        let addrs: Vec<SocketAddr> = (c.host.as_str(), c.port)
            .to_socket_addrs()
            .map_err(|e| {
                StreamError::io(format!("cannot resolve API server address {target}"), &e)
            })?
            .collect();
        if c.token.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(StreamError::Processor(format!(
                "refusing to serve the API on {target} without a token: anyone who can reach it could control the runtime. Set a token (--token or STREAMLIB_API_TOKEN) or listen on 127.0.0.1"
            )));
        }
        let listener = TcpListener::bind(addrs.as_slice())
            .map_err(|e| StreamError::io(format!("cannot listen on {target}"), &e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| StreamError::io("cannot make the API listener non-blocking", &e))?;
        Ok(listener)
    }
}

impl crate::core::Processor for ApiServerProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        // Get the service for communicating with runtime
        self.runtime_service = Some(ctx.runtime_service());
        let service = ctx.runtime_service();

        let listener = self.bind()?;
        let local = listener
            .local_addr()
            .map_err(|e| StreamError::io("cannot read the API listener's address", &e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("sl-api")
            .enable_all()
            .build()
            .map_err(|e| StreamError::io("cannot start the API server's Tokio runtime", &e))?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(|e| StreamError::io("cannot register the API listener", &e))?
        };
        let state = ApiState::new(
            service,
            local,
            self.config.options(),
            Some(ctx.processor_id().clone()),
        );
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();

        // Spawn Tokio runtime on background thread
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
            .map_err(|e| StreamError::io("cannot start the API server thread", &e))?;

        self.shutdown_tx = Some(shutdown_tx);
        self.server_thread = Some(thread);
        ctx.counter("port").set(u64::from(local.port()));
        tracing::info!(
            url = %format!("http://{local}"),
            token = self.config.token.is_some(),
            "API server listening"
        );
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        // Server runs independently on Tokio runtime
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
        self.runtime_service = None;
        Ok(())
    }
}
