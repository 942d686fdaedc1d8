//! Who may talk to the API: Host and Origin checks (a web page must not be able to drive a
//! local server, DNS rebinding included), the optional bearer token, and per-client rate
//! limiting of changes.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;

use super::ApiState;
use super::error::ApiError;
use super::options::{ApiOptions, Secret};
use axum::http::StatusCode;

/// The access rules of one API server, fixed when it starts.
pub(crate) struct AccessPolicy {
    /// `host:port` values a `Host` header may carry; `None` when bound to every interface (then
    /// the token, which is mandatory there, protects the API).
    allowed_hosts: Option<Vec<String>>,
    /// Extra origins (`scheme://host:port`) allowed besides the server's own.
    allowed_origins: Vec<String>,
    token: Option<Secret>,
    /// Per client IP, for authorised POST/PUT/PATCH/DELETE. `None` = unlimited.
    changes: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Per client IP, for requests with a missing or wrong token: a separate budget, so that
    /// a flood of failed logins from one address (every loopback client shares one) cannot use
    /// up the quota of the token holder. `None` = unlimited.
    failed_logins: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// `GET /metrics` needs no token from a loopback client (a local scraper).
    metrics_loopback_without_token: bool,
}

impl AccessPolicy {
    pub(crate) fn new(bound: SocketAddr, options: &ApiOptions) -> Self {
        let extra_hosts = &options.allowed_hosts;
        let rate_per_second = options.rate_limit_per_second;
        let port = bound.port();
        let allowed_hosts = if bound.ip().is_unspecified() && extra_hosts.is_empty() {
            None
        } else {
            let mut hosts = Vec::new();
            if bound.ip().is_loopback() || bound.ip().is_unspecified() {
                hosts.extend([
                    format!("localhost:{port}"),
                    format!("127.0.0.1:{port}"),
                    format!("[::1]:{port}"),
                ]);
            } else if !bound.ip().is_unspecified() {
                hosts.push(bound.to_string());
            }
            hosts.extend(extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
            Some(hosts)
        };
        let quota = NonZeroU32::new(rate_per_second).map(|rate| {
            let burst =
                NonZeroU32::new(options.rate_limit_burst.max(rate_per_second)).unwrap_or(rate);
            Quota::per_second(rate).allow_burst(burst)
        });
        Self {
            allowed_hosts,
            allowed_origins: options
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            token: options.token.clone(),
            changes: quota.map(RateLimiter::keyed),
            failed_logins: NonZeroU32::new(options.auth_failure_limit)
                .map(|rate| RateLimiter::keyed(Quota::per_second(rate))),
            metrics_loopback_without_token: options.metrics_loopback_without_token,
        }
    }

    /// Whether a token is required.
    pub(crate) fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether the Host header is checked (it is unless bound to every interface with no
    /// extra hosts).
    fn checks_host(&self) -> bool {
        self.allowed_hosts.is_some()
    }

    fn host_allowed(&self, host: &str) -> bool {
        match &self.allowed_hosts {
            None => true,
            Some(hosts) => {
                let host = host.to_ascii_lowercase();
                hosts
                    .iter()
                    .any(|h| *h == host || (!h.contains(':') && host.split(':').next() == Some(h)))
            }
        }
    }

    /// Same-origin (the origin's authority is an allowed host, or the request's own Host when
    /// bound to every interface) or explicitly allow-listed.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.allowed_origins.contains(&origin) {
            return true;
        }
        let Some(authority) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false; // "null", file://, extensions...
        };
        match &self.allowed_hosts {
            // Exact `host:port` only: a portless --allow-host entry widens the Host check, not
            // the set of web pages that may call the API.
            Some(hosts) => hosts.iter().any(|h| *h == authority),
            None => host.is_some_and(|h| h.eq_ignore_ascii_case(authority)),
        }
    }

    fn token_matches(&self, presented: Option<&str>) -> bool {
        match (&self.token, presented) {
            (None, _) => true,
            // `ct_eq` compares in time independent of where the bytes differ; a length
            // mismatch is answered at once, which leaks only the length.
            // An empty token (refused by validation anyway) never matches.
            (Some(expected), Some(given)) => {
                !given.is_empty()
                    && bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
            }
            (Some(_), None) => false,
        }
    }

    /// Seconds to wait if `ip` is over its quota in `limiter`.
    fn throttle(limiter: Option<&DefaultKeyedRateLimiter<IpAddr>>, ip: IpAddr) -> Option<u64> {
        let limiter = limiter?;
        match limiter.check_key(&ip) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                Some((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
            }
        }
    }

    /// Forgets clients that are back to a full quota (called periodically).
    pub(crate) fn housekeeping(&self) {
        for limiter in [&self.changes, &self.failed_logins].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The WebSocket routes: browsers cannot set headers on them, so they also take the token as a
/// `token` query parameter.
const WEBSOCKET_PATHS: [&str; 3] = ["/api/events", "/api/preview", "/api/tap"];

/// The token a request presents: `Authorization: Bearer <token>`, or for a WebSocket route
/// (browsers cannot set headers there) a `token` query parameter.
fn presented_token(req: &Request) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // The scheme name is case-insensitive (RFC 7235).
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    if WEBSOCKET_PATHS.contains(&req.uri().path()) {
        let query = req.uri().query().unwrap_or("");
        return query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| percent_decode(v));
    }
    None
}

/// Decodes a query-string value: `+` is a space, `%XX` an escaped byte (invalid escapes are
/// kept as they are).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether a `Host` header names this machine's loopback (`localhost`, `127.x.y.z`, `[::1]`),
/// with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or("", |(name, _)| name),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The access middleware: Host, then Origin, then token, then rate limit (changes only).
pub(crate) async fn guard(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    match check(&state.inner.policy, peer, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(policy: &Arc<AccessPolicy>, peer: SocketAddr, req: &Request) -> Result<(), ApiError> {
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request has more than one Host header",
        ));
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    match host {
        Some(host) if !policy.host_allowed(host) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "Host '{host}' is not this server's address; requests through other host names are refused (DNS rebinding protection). Add it with --allow-host if it is legitimate"
                ),
            ));
        }
        None if policy.checks_host() => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the request has no Host header (or one that is not text); this server accepts only requests addressed to it by name (DNS rebinding protection)",
            ));
        }
        _ => {}
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        if !policy.origin_allowed(origin, host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "requests from web origin '{origin}' are refused: a web page must not control this server. Add it with --allow-origin if it is legitimate"
                ),
            ));
        }
    }
    // The health route says only that the server answers: it needs no token (see `probes`).
    // Metrics need none from a local scraper when the server was told so: a loopback peer that
    // addressed the server by a loopback name and is not a web page (a page on a rebound name,
    // or one this machine's browser opened, sends another Host or an Origin).
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    let path = req.uri().path();
    let local_scraper = policy.metrics_loopback_without_token
        && peer.ip().to_canonical().is_loopback()
        && host.is_some_and(is_loopback_host)
        && !req.headers().contains_key(header::ORIGIN);
    // The dashboard's files hold no data: the page asks for the token itself.
    let open = reading
        && (path == super::probes::HEALTH_PATH
            || super::dashboard::DASHBOARD_PATHS.contains(&path)
            || (path == super::metrics::METRICS_PATH && local_scraper));
    if policy.requires_token() && !open && !policy.token_matches(presented_token(req).as_deref()) {
        // Failed attempts have a quota of their own: guessing is rate-limited, and does not
        // use up the budget of authorised changes from the same address.
        if let Some(secs) = AccessPolicy::throttle(policy.failed_logins.as_ref(), peer.ip()) {
            return Err(ApiError::rate_limited(
                "failed authentication attempts",
                secs,
            ));
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required: send 'Authorization: Bearer <token>' (or ?token= on the WebSocket routes)",
        ));
    }
    let mutating = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if mutating {
        if let Some(secs) = AccessPolicy::throttle(policy.changes.as_ref(), peer.ip()) {
            return Err(ApiError::rate_limited("changes", secs));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bound: &str) -> AccessPolicy {
        AccessPolicy::new(
            bound.parse().unwrap(),
            &ApiOptions {
                allowed_origins: vec!["https://app.example".into()],
                rate_limit_per_second: 0,
                ..ApiOptions::default()
            },
        )
    }

    #[test]
    fn loopback_hosts_and_origins() {
        let p = policy("127.0.0.1:9000");
        assert!(p.host_allowed("127.0.0.1:9000"));
        assert!(p.host_allowed("LOCALHOST:9000"));
        assert!(p.host_allowed("[::1]:9000"));
        assert!(!p.host_allowed("evil.example:9000"));
        assert!(!p.host_allowed("127.0.0.1:9001"));
        assert!(p.origin_allowed("http://localhost:9000", None));
        assert!(p.origin_allowed("https://app.example/", None));
        let with_alias = AccessPolicy::new(
            "127.0.0.1:9000".parse().unwrap(),
            &ApiOptions {
                allowed_hosts: vec!["box.lan".into()],
                rate_limit_per_second: 0,
                ..ApiOptions::default()
            },
        );
        assert!(with_alias.host_allowed("box.lan:9000"));
        assert!(
            !with_alias.origin_allowed("http://box.lan:8080", None),
            "a portless alias is no origin wildcard"
        );
        assert!(!p.origin_allowed("http://evil.example", None));
        assert!(!p.origin_allowed("null", None));
    }

    #[test]
    fn every_interface_compares_origin_with_host() {
        let p = policy("0.0.0.0:9000");
        assert!(p.host_allowed("anything:9000"));
        let listed = AccessPolicy::new(
            "0.0.0.0:9000".parse().unwrap(),
            &ApiOptions {
                allowed_hosts: vec!["box.lan:9000".into()],
                rate_limit_per_second: 0,
                ..ApiOptions::default()
            },
        );
        assert!(listed.host_allowed("box.lan:9000") && listed.host_allowed("localhost:9000"));
        assert!(!listed.host_allowed("evil.example:9000"));
        assert!(p.origin_allowed("http://box.lan:9000", Some("box.lan:9000")));
        assert!(!p.origin_allowed("http://evil.example", Some("box.lan:9000")));
    }

    #[test]
    fn loopback_hosts_are_recognised_with_or_without_a_port() {
        for host in [
            "localhost",
            "LOCALHOST:9000",
            "127.0.0.1",
            "127.0.0.1:9000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:9000",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9000",
            "localhost.evil.example",
            "10.0.0.1:9000",
            "[::2]:9000",
            "[::1",
            "",
            "127.0.0.1.evil.example",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn tokens_and_decoding() {
        let p = AccessPolicy::new(
            "127.0.0.1:1".parse().unwrap(),
            &ApiOptions {
                token: Some("s3cr et".into()),
                rate_limit_per_second: 0,
                ..ApiOptions::default()
            },
        );
        assert!(p.token_matches(Some("s3cr et")));
        assert!(!p.token_matches(Some("s3cr")));
        assert!(!p.token_matches(None));
        assert_eq!(percent_decode("s3cr%20et"), "s3cr et");
        assert_eq!(percent_decode("a+b%zz%"), "a b%zz%");
    }
}
