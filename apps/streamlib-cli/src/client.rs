//! A client of a running server's API, for `streamlib ctl` and `streamlib top`: JSON over
//! HTTP (blocking, ureq), and the WebSocket routes (tungstenite). An API error comes back as
//! [`ApiFailure`], with the server's code and message.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;

/// The server `ctl` and `top` talk to unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9000";

/// Where the API is and how to get in: the flags every client subcommand shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The server's base URL.
    #[arg(long, env = "STREAMLIB_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,
    /// Bearer token, when the server has one.
    #[arg(
        long,
        env = "STREAMLIB_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub token: Option<String>,
    /// Longest a request may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, global = true)]
    pub timeout: f64,
}

/// An error answer of the API: `{"error": {"code", "message"}}` and its status.
#[derive(Debug)]
pub struct ApiFailure {
    /// The HTTP status.
    pub status: u16,
    /// The error's code, e.g. `processor_not_found`.
    pub code: String,
    /// What the server said.
    pub message: String,
    /// Where a document was wrong, for `graph_rejected` (each `{"place", "message"}`).
    pub problems: Vec<Value>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.problems.is_empty() {
            return write!(f, "{} ({}, HTTP {})", self.message, self.code, self.status);
        }
        // The message lists the problems too; each on a line of its own reads better.
        write!(
            f,
            "{} problem(s), nothing changed ({}, HTTP {}):",
            self.problems.len(),
            self.code,
            self.status
        )?;
        for problem in &self.problems {
            let at = problem["place"].as_str().unwrap_or("");
            let message = problem["message"].as_str().unwrap_or("");
            write!(f, "\n  {at}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

/// A response body: JSON, or bytes with their content type (a snapshot image).
pub enum Body {
    /// A JSON answer (`Null` for an empty one, such as 204).
    Json(Value),
    /// Anything else.
    Bytes {
        /// The `Content-Type`.
        content_type: String,
        /// The body.
        bytes: Vec<u8>,
        /// The response's headers that describe a frame (`X-Frame-Number`, `X-Timestamp-Ns`).
        frame_number: Option<u64>,
    },
}

/// How long a WebSocket client waits for any message (the server's pings included) before it
/// pings the server itself; a second silence as long means the connection is dead.
const WEBSOCKET_SILENCE: Duration = Duration::from_secs(60);

/// The next message of a WebSocket stream; after a silence it pings the server once, and only
/// a second silence fails (a server may ping less often than [`WEBSOCKET_SILENCE`]).
pub fn read(
    socket: &mut tungstenite::WebSocket<MaybeTlsStream<TcpStream>>,
) -> tungstenite::Result<tungstenite::Message> {
    let mut pinged = false;
    loop {
        match socket.read() {
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if pinged {
                    return Err(tungstenite::Error::Io(std::io::Error::new(
                        e.kind(),
                        format!(
                            "nothing from the server for {} s, not even an answer to a ping",
                            2 * WEBSOCKET_SILENCE.as_secs()
                        ),
                    )));
                }
                pinged = true;
                socket.send(tungstenite::Message::Ping(Default::default()))?;
            }
            other => return other,
        }
    }
}

/// The most a response body may hold (a graph of thousands of processors fits).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// A client of one server.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    timeout: Duration,
}

impl Client {
    /// A client of the server at `connection.url`.
    pub fn new(connection: &Connection) -> anyhow::Result<Self> {
        if !(connection.timeout.is_finite() && connection.timeout > 0.0) {
            anyhow::bail!(
                "--timeout is {}; give a number of seconds above 0",
                connection.timeout
            );
        }
        let timeout = Duration::from_secs_f64(connection.timeout.min(86_400.0));
        let base = connection.url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            anyhow::bail!(
                "--url {base}: the API is served over plain HTTP on a trusted network or through a proxy; give an http:// URL (e.g. {DEFAULT_URL})"
            );
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("streamlib-ctl/", env!("CARGO_PKG_VERSION")))
            // Straight to the URL given, as the WebSocket routes go: an HTTP_PROXY meant for
            // the internet must not capture a loopback server.
            .proxy(None)
            .build()
            .into();
        Ok(Self {
            agent,
            base,
            token: connection.token.clone().filter(|t| !t.is_empty()),
            timeout,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` → JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json(self.request("GET", path, None)?)
    }

    /// `GET path` → JSON and the `ETag` header.
    pub fn get_with_etag(&self, path: &str) -> anyhow::Result<(Value, Option<String>)> {
        let (body, etag) = self.send(self.request_raw("GET", path, None)?, "GET", path)?;
        Ok((self.json(body)?, etag))
    }

    /// `POST path` with a JSON body → JSON.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.json(self.request("POST", path, Some(body))?)
    }

    /// `PUT path` with a JSON body → JSON.
    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.json(self.request("PUT", path, Some(body))?)
    }

    /// `PATCH path` with a JSON merge patch → JSON.
    pub fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.json(self.request("PATCH", path, Some(body))?)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.request("DELETE", path, None).map(|_| ())
    }

    fn json(&self, body: Body) -> anyhow::Result<Value> {
        match body {
            Body::Json(value) => Ok(value),
            Body::Bytes { content_type, .. } => {
                anyhow::bail!("expected JSON from the server, got {content_type}")
            }
        }
    }

    /// Sends a request; an error status becomes an [`ApiFailure`], an unreachable server an
    /// error that says where it looked.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Body> {
        let response = self.request_raw(method, path, body)?;
        self.send(response, method, path).map(|(body, _)| body)
    }

    fn request_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            ("GET", _) => with_auth(self.agent.get(&url), auth.as_deref()).call(),
            ("DELETE", _) => with_auth(self.agent.delete(&url), auth.as_deref()).call(),
            ("POST", body) => with_auth(self.agent.post(&url), auth.as_deref())
                .send_json(body.unwrap_or(&Value::Object(Default::default()))),
            ("PUT", Some(body)) => with_auth(self.agent.put(&url), auth.as_deref()).send_json(body),
            ("PATCH", Some(body)) => {
                with_auth(self.agent.patch(&url), auth.as_deref()).send_json(body)
            }
            _ => anyhow::bail!("{method} {path}: not a request this client makes"),
        };
        result.map_err(|e| self.unreachable(e))
    }

    /// Reads a response: its body (bounded), an error status as an [`ApiFailure`].
    fn send(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
        method: &str,
        path: &str,
    ) -> anyhow::Result<(Body, Option<String>)> {
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let frame_number = response
            .headers()
            .get("x-frame-number")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        if status >= 400 {
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let error = &json["error"];
            return Err(ApiFailure {
                status,
                code: error["code"].as_str().unwrap_or("http_error").to_string(),
                message: error["message"].as_str().map_or_else(
                    || format!("{method} {path} answered {status}"),
                    str::to_string,
                ),
                problems: error["problems"].as_array().cloned().unwrap_or_default(),
            }
            .into());
        }
        if content_type.starts_with("application/json") || (bytes.is_empty() && status == 204) {
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("the answer to {method} {path} is not JSON"))?
            };
            return Ok((Body::Json(value), etag));
        }
        Ok((
            Body::Bytes {
                content_type,
                bytes,
                frame_number,
            },
            etag,
        ))
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        match e {
            ureq::Error::Timeout(_) => anyhow::anyhow!(
                "the streamlib API at {} did not answer within {:.0} s (--timeout)",
                self.base,
                self.timeout.as_secs_f64()
            ),
            e => anyhow::anyhow!(
                "cannot reach the streamlib API at {}: {e} (is `streamlib serve` running there? set --url or STREAMLIB_URL)",
                self.base
            ),
        }
    }

    /// Opens a WebSocket route (`path` with its query): the token as a header.
    pub fn websocket(
        &self,
        path: &str,
    ) -> anyhow::Result<tungstenite::WebSocket<MaybeTlsStream<TcpStream>>> {
        let url = format!("ws://{}{path}", self.base.trim_start_matches("http://"));
        let mut request = url
            .as_str()
            .into_client_request()
            .with_context(|| format!("{url} is not a WebSocket URL"))?;
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .context("the token cannot be sent in a header")?;
            request.headers_mut().insert("authorization", value);
        }
        let host = request
            .uri()
            .host()
            .with_context(|| format!("{url} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = request.uri().port_u16().unwrap_or(80);
        let addresses: Vec<std::net::SocketAddr> =
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .with_context(|| format!("cannot resolve {host}"))?
                .collect();
        // Every address the name has, in turn, as the HTTP client does (`localhost` may be
        // ::1 first while the server listens on 127.0.0.1).
        let mut last_error = None;
        let stream = addresses.iter().find_map(|address| {
            TcpStream::connect_timeout(address, self.timeout)
                .map_err(|e| last_error = Some(e))
                .ok()
        });
        let Some(stream) = stream else {
            let why = last_error.map_or_else(|| "no address".to_string(), |e| e.to_string());
            anyhow::bail!(
                "cannot reach the streamlib API at {}: {why} (is `streamlib serve` running there? set --url or STREAMLIB_URL)",
                self.base
            );
        };
        // The handshake gets the request timeout; the stream then waits longer (see `read`).
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        match tungstenite::client(request, MaybeTlsStream::Plain(stream.try_clone()?)) {
            Ok((socket, _)) => {
                stream.set_read_timeout(Some(WEBSOCKET_SILENCE))?;
                Ok(socket)
            }
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let json: Value = response
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                let error = &json["error"];
                Err(ApiFailure {
                    status,
                    code: error["code"].as_str().unwrap_or("http_error").to_string(),
                    message: error["message"]
                        .as_str()
                        .map_or_else(|| format!("{path} answered {status}"), str::to_string),
                    problems: Vec::new(),
                }
                .into())
            }
            Err(e) => Err(anyhow::anyhow!("cannot open {url}: {e}")),
        }
    }
}

fn with_auth<B>(request: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(value) => request.header("Authorization", value),
        None => request,
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
