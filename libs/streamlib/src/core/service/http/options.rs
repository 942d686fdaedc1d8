//! How an API server protects and limits itself: the one options type, shared by the
//! processor's JSON config ([`ApiServerConfig`](crate::core::ApiServerConfig) flattens it),
//! the router, and the `streamlib serve` flags (with feature `clap`, which derives them from
//! the same fields). Defaults live here only.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default cap on request bodies: configs are small; a megabyte of JSON is a mistake or abuse.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default time a request may take. Longer than a restart can take with the runtime's defaults
/// (a 5 s stop, then a 30 s setup; `serve` refuses a setup timeout that does not leave room for
/// both), so a slow setup reports its own error.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
/// Default sustained rate of changes (POST/DELETE) per client IP.
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 200;
/// Default burst of changes per client IP (never below the sustained rate).
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 400;
/// Default number of requests with a missing or wrong token a client IP may make per second
/// (also the burst): a separate, much smaller budget than changes', so guessing is slow.
pub const DEFAULT_AUTH_FAILURE_LIMIT: u32 = 10;
/// Default interval of WebSocket pings (keeps idle connections and proxies alive).
pub const DEFAULT_WS_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default cap on open connections (HTTP and WebSocket). The server also keeps it at or under
/// half the process's file-descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default time a client has to send a request's headers, and the longest an idle keep-alive
/// connection stays open.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of snapshots in progress at once (each holds one frame while it waits to be
/// encoded); more are answered 503.
pub const DEFAULT_MAX_SNAPSHOTS: usize = 16;
/// Default of [`ApiOptions::max_previews`].
pub const DEFAULT_MAX_PREVIEWS: usize = 16;
/// Default of [`ApiOptions::max_taps`].
pub const DEFAULT_MAX_TAPS: usize = 16;
/// Default longest time a write to a client may make no progress (a client that stopped
/// reading) before its connection, HTTP or WebSocket, is closed.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A secret string (the API token): its `Debug` never shows it, and it is never serialized
/// back (reports and `GET` responses do not carry it).
#[derive(Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for comparing against what a client presents.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

/// How an API server protects and limits itself. In JSON config these are fields of
/// `ApiServerConfig` beside `host` and `port`; on the command line, flags of `streamlib serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(default)]
pub struct ApiOptions {
    /// Bearer token required on every route (at least 8 characters). Needed to listen on
    /// anything but loopback. Never reported back.
    #[serde(skip_serializing)]
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            env = "STREAMLIB_API_TOKEN",
            hide_env_values = true,
            value_name = "TOKEN"
        )
    )]
    pub token: Option<Secret>,
    /// Extra `Host` header values to accept, e.g. `box.lan:9000` (or `box.lan` for any port);
    /// DNS-rebinding protection refuses others.
    #[cfg_attr(feature = "clap", arg(long = "allow-host", value_name = "HOST"))]
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins allowed to call the API, e.g. `https://console.example`.
    #[cfg_attr(feature = "clap", arg(long = "allow-origin", value_name = "ORIGIN"))]
    pub allowed_origins: Vec<String>,
    /// Changes (POST/DELETE) per second per client IP; 0 disables the limit.
    #[cfg_attr(feature = "clap", arg(long = "rate-limit", value_name = "N", default_value_t = DEFAULT_RATE_LIMIT_PER_SECOND))]
    pub rate_limit_per_second: u32,
    /// Changes a client IP may make at once above the sustained rate (at least the rate).
    #[cfg_attr(feature = "clap", arg(long = "rate-limit-burst", value_name = "N", default_value_t = DEFAULT_RATE_LIMIT_BURST))]
    pub rate_limit_burst: u32,
    /// Requests with a missing or wrong token per second per client IP (also the burst) before
    /// `429 rate_limited`; a budget of its own, so guessing cannot use up the token holder's
    /// changes. 0 disables the limit.
    #[cfg_attr(feature = "clap", arg(long = "auth-failure-limit", value_name = "N", default_value_t = DEFAULT_AUTH_FAILURE_LIMIT))]
    pub auth_failure_limit: u32,
    /// Largest request body in bytes (256 B to 16 MiB).
    #[cfg_attr(feature = "clap", arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES))]
    pub max_body_bytes: usize,
    /// Longest a request may take, in milliseconds, before `504 timeout` (10 ms to 10 min).
    #[serde(rename = "request_timeout_ms", with = "millis")]
    #[schemars(with = "u64")]
    #[cfg_attr(feature = "clap", arg(long = "request-timeout-ms", value_name = "MS", value_parser = parse_millis, default_value = "40000"))]
    pub request_timeout: Duration,
    /// Interval of WebSocket pings, in milliseconds (10 ms to 10 min).
    #[serde(rename = "ws_ping_interval_ms", with = "millis")]
    #[schemars(with = "u64")]
    #[cfg_attr(feature = "clap", arg(long = "ws-ping-interval-ms", value_name = "MS", value_parser = parse_millis, default_value = "20000"))]
    pub ws_ping_interval: Duration,
    /// Most connections open at once, HTTP and WebSocket (at most half of `ulimit -n` is used).
    /// At the cap the connection idle longest makes room; if none is idle, new clients get 503.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS))]
    pub max_connections: usize,
    /// Time a client has to send a request's headers, in milliseconds; also how long an idle
    /// keep-alive connection stays open (100 ms to 10 min).
    #[serde(rename = "header_timeout_ms", with = "millis")]
    #[schemars(with = "u64")]
    #[cfg_attr(feature = "clap", arg(long = "header-timeout-ms", value_name = "MS", value_parser = parse_millis, default_value = "10000"))]
    pub header_timeout: Duration,
    /// Longest a write to a client may make no progress, in milliseconds, before the connection
    /// (HTTP or WebSocket) is closed: a client that stops reading cannot hold it (100 ms to
    /// 10 min).
    #[serde(rename = "write_timeout_ms", with = "millis")]
    #[schemars(with = "u64")]
    #[cfg_attr(feature = "clap", arg(long = "write-timeout-ms", value_name = "MS", value_parser = parse_millis, default_value = "30000"))]
    pub write_timeout: Duration,
    /// Snapshots in progress at once (1 to 1024): each holds one frame until it is encoded;
    /// more get `503 too_many_snapshots`.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SNAPSHOTS))]
    pub max_snapshots: usize,
    /// Live previews encoded at once (1 to 1024): one per port, size and rate, however many
    /// clients view it; a new one beyond gets `503 too_many_previews`.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PREVIEWS))]
    pub max_previews: usize,
    /// Taps open at once (1 to 1024), each a client reading the frames of a port; more get
    /// `503 too_many_taps`.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", default_value_t = DEFAULT_MAX_TAPS))]
    pub max_taps: usize,
    /// Serve `GET /metrics` without the token to clients on loopback (a Prometheus or agent on
    /// the same machine); every other route, and `/metrics` from elsewhere, still needs it.
    #[cfg_attr(feature = "clap", arg(long))]
    pub metrics_loopback_without_token: bool,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            token: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            rate_limit_per_second: DEFAULT_RATE_LIMIT_PER_SECOND,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            auth_failure_limit: DEFAULT_AUTH_FAILURE_LIMIT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            ws_ping_interval: DEFAULT_WS_PING_INTERVAL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_snapshots: DEFAULT_MAX_SNAPSHOTS,
            max_previews: DEFAULT_MAX_PREVIEWS,
            max_taps: DEFAULT_MAX_TAPS,
            metrics_loopback_without_token: false,
        }
    }
}

impl ApiOptions {
    /// Checks what serde cannot: token length and the ranges documented on each field.
    pub fn validate(&self) -> Result<(), crate::core::processors::ConfigError> {
        use crate::core::processors::ConfigError;
        if let Some(token) = &self.token {
            let token = token.expose();
            if token.trim().is_empty() {
                return Err(ConfigError::new(
                    "token",
                    "is empty or only whitespace, which no client could present; give a real token, or leave it out (and unset STREAMLIB_API_TOKEN) to serve loopback without one",
                ));
            }
            if token.trim() != token {
                return Err(ConfigError::new(
                    "token",
                    "starts or ends with whitespace, which clients cannot present in an Authorization header; remove it",
                ));
            }
            if token.len() < 8 {
                return Err(ConfigError::new("token", "must be at least 8 characters"));
            }
        }
        ConfigError::check_range("max_body_bytes", self.max_body_bytes, 256, 16 * 1024 * 1024)?;
        let range =
            |field: &str, d: Duration| ConfigError::check_range(field, d.as_millis(), 10, 600_000);
        range("request_timeout_ms", self.request_timeout)?;
        range("ws_ping_interval_ms", self.ws_ping_interval)?;
        ConfigError::check_range("max_connections", self.max_connections, 1, 65_536)?;
        ConfigError::check_range("max_snapshots", self.max_snapshots, 1, 1024)?;
        ConfigError::check_range("max_previews", self.max_previews, 1, 1024)?;
        ConfigError::check_range("max_taps", self.max_taps, 1, 1024)?;
        ConfigError::check_range(
            "header_timeout_ms",
            self.header_timeout.as_millis(),
            100,
            600_000,
        )?;
        ConfigError::check_range(
            "write_timeout_ms",
            self.write_timeout.as_millis(),
            100,
            600_000,
        )
    }
}

/// `"1500"` → 1.5 s, for the `*-ms` flags.
#[cfg(feature = "clap")]
fn parse_millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("expected whole milliseconds: {e}"))
}

/// A `Duration` as whole milliseconds in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(all(test, feature = "clap"))]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        api: ApiOptions,
    }

    #[test]
    fn flag_defaults_are_the_options_defaults() {
        let mut flags = Flags::try_parse_from(["serve"]).unwrap_or_else(|e| panic!("{e}"));
        // The token alone may come from the environment (STREAMLIB_API_TOKEN).
        if std::env::var_os("STREAMLIB_API_TOKEN").is_some() {
            flags.api.token = None;
        }
        assert_eq!(flags.api, ApiOptions::default());
    }

    #[test]
    fn flags_set_every_option() {
        let flags = Flags::try_parse_from([
            "serve",
            "--token",
            "0123456789",
            "--allow-host",
            "box.lan:9000",
            "--allow-origin",
            "https://console.example",
            "--rate-limit",
            "5",
            "--rate-limit-burst",
            "7",
            "--auth-failure-limit",
            "3",
            "--max-body-bytes",
            "4096",
            "--request-timeout-ms",
            "1500",
            "--ws-ping-interval-ms",
            "250",
            "--max-connections",
            "9",
            "--header-timeout-ms",
            "700",
            "--write-timeout-ms",
            "800",
            "--metrics-loopback-without-token",
            "--max-snapshots",
            "3",
            "--max-previews",
            "4",
            "--max-taps",
            "5",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            flags.api,
            ApiOptions {
                token: Some(Secret::new("0123456789")),
                allowed_hosts: vec!["box.lan:9000".into()],
                allowed_origins: vec!["https://console.example".into()],
                rate_limit_per_second: 5,
                rate_limit_burst: 7,
                auth_failure_limit: 3,
                max_body_bytes: 4096,
                request_timeout: Duration::from_millis(1500),
                ws_ping_interval: Duration::from_millis(250),
                max_connections: 9,
                header_timeout: Duration::from_millis(700),
                write_timeout: Duration::from_millis(800),
                max_snapshots: 3,
                max_previews: 4,
                max_taps: 5,
                metrics_loopback_without_token: true,
            }
        );
    }
}
