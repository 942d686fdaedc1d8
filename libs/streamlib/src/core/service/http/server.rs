//! The accept loop: HTTP/1.1 connections with a header timeout (which also closes idle
//! keep-alive connections), a cap on open connections that respects the process's
//! file-descriptor limit, accept errors met with backoff, and a graceful shutdown.
//!
//! At the cap a new client is still served if an idle keep-alive connection can make room
//! (the one idle longest is closed); otherwise it gets a short `503` and the connection is
//! closed at once. WebSocket sessions hold their connection's slot for as long as they last.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::ApiState;

/// Largest buffer hyper keeps per connection for reading a request head (bounds the memory a
/// client with huge headers can make us spend).
const MAX_HEAD_BUFFER: usize = 64 * 1024;
/// Most headers a request may carry.
const MAX_HEADERS: usize = 64;
/// How long a new client at the cap waits for an idle connection to make room.
const ROOM_WAIT: Duration = Duration::from_millis(200);
/// First and longest pause after an accept error (e.g. out of file descriptors).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// A connection's slot under the cap. Requests carry a clone (an extension), so a WebSocket
/// session started on the connection keeps the slot after the HTTP connection task ends.
#[derive(Clone)]
pub(crate) struct ConnectionSlot {
    _permit: Arc<OwnedSemaphorePermit>,
}

/// What the accept loop knows of an open connection.
struct Tracked {
    /// Requests being handled now.
    in_flight: AtomicUsize,
    /// When the last request ended, in ms since the server started.
    idle_since_ms: AtomicU64,
    /// Set when the connection was picked to close.
    closing: AtomicBool,
    close: Notify,
}

/// The open connections, to pick an idle one to close at the cap.
#[derive(Default)]
struct Registry {
    connections: Mutex<HashMap<u64, Arc<Tracked>>>,
}

impl Registry {
    fn insert(&self, id: u64, tracked: Arc<Tracked>) {
        self.lock().insert(id, tracked);
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracked>>> {
        // Only inserts and removes happen under it; a panic cannot leave it inconsistent.
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the connection idle longest to close; false when none is idle.
    fn close_one_idle(&self) -> bool {
        let connections = self.lock();
        // Idle longest first; among equals, the oldest connection.
        let victim = connections
            .iter()
            .filter(|(_, c)| {
                c.in_flight.load(Ordering::Acquire) == 0 && !c.closing.load(Ordering::Acquire)
            })
            .min_by_key(|(id, c)| (c.idle_since_ms.load(Ordering::Relaxed), **id));
        match victim {
            Some((_, c)) => {
                c.closing.store(true, Ordering::Release);
                // `notify_one` keeps the wake-up if the task is not waiting right now.
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The connection cap in force: the configured one, but never more than half the process's
/// file-descriptor limit (the rest is for processors' files and devices).
pub(crate) fn effective_max_connections(configured: usize) -> usize {
    #[cfg(target_os = "linux")]
    {
        let fd_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        if let Some(limit) = fd_limit {
            let half = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
            return configured.min(half);
        }
    }
    configured
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let options = &state.inner.options;
    let max_connections = effective_max_connections(options.max_connections);
    if max_connections < options.max_connections {
        tracing::warn!(
            configured = options.max_connections,
            max_connections,
            "the file-descriptor limit (ulimit -n) allows fewer API connections than configured"
        );
    }
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(MAX_HEAD_BUFFER)
        .max_headers(MAX_HEADERS);
    let slots = Arc::new(Semaphore::new(max_connections));
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut failing = false;
    let mut next_id = 0u64;
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF.0;
                    failing = false;
                    accepted
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: the listener stays readable, so wait
                    // before trying again; make room by closing an idle connection.
                    if !failing {
                        tracing::warn!(error = %e, "cannot accept API connections; backing off (is ulimit -n too low?)");
                        failing = true;
                    }
                    if is_out_of_resources(&e) {
                        registry.close_one_idle();
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match make_room(&slots, &registry).await {
                Some(permit) => permit,
                None => {
                    refuse(&tcp, max_connections);
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // Without TCP_NODELAY a response written in two parts waits for the client's ACK.
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an API connection");
        }
        next_id += 1;
        let id = next_id;
        let tracked = Arc::new(Tracked {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(elapsed_ms(started)),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        registry.insert(id, tracked.clone());
        let slot = ConnectionSlot {
            _permit: Arc::new(permit),
        };
        let service = {
            let tracked = tracked.clone();
            let app = app.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(slot.clone());
                let busy = Busy::begin(&tracked, started);
                let mut app = app.clone();
                async move {
                    let response = tower::Service::call(&mut app, req).await;
                    drop(busy);
                    response
                }
            })
        };
        let io = WriteDeadline::new(tcp, options.write_timeout);
        let connection = http
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        let registry = registry.clone();
        tasks.spawn(async move {
            // Leaves the registry however the task ends (a panic included).
            let _registered = Registered(&registry, id);
            let mut connection = std::pin::pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(e) = ended {
                            tracing::debug!(error = %e, timeout = e.is_timeout(), "API connection ended");
                        }
                        break;
                    }
                    _ = stop.wait_for(|stop| *stop), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = tracked.close.notified(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    state.begin_shutdown();
    // Only fails without receivers: every connection has ended already.
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Removes a connection from the registry when its task ends.
struct Registered<'a>(&'a Registry, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// A socket whose writes may not stall: a write or flush that makes no progress for the
/// timeout fails with `TimedOut`, which ends the connection (and a WebSocket session on it:
/// the upgraded connection keeps this wrapper). A client that stops reading cannot hold a
/// connection slot, a task, or the server's shutdown.
struct WriteDeadline {
    inner: tokio::net::TcpStream,
    timeout: Duration,
    /// Running while a write waits for the socket.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl WriteDeadline {
    fn new(inner: tokio::net::TcpStream, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Passes a write's outcome on; while the socket is not ready, runs the stall timer and
    /// fails once it expires.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing for the write timeout (--write-timeout-ms)",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl tokio::io::AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Errors that concern only the connection being accepted (the client gave up); the next
/// accept can follow at once.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// Out of descriptors or memory: closing an idle connection helps.
fn is_out_of_resources(e: &std::io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::io::Errno;
        matches!(
            Errno::from_io_error(e),
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        e.kind() == std::io::ErrorKind::OutOfMemory
    }
}

/// At the cap: closes the connection idle longest and waits briefly for its slot.
async fn make_room(slots: &Arc<Semaphore>, registry: &Registry) -> Option<OwnedSemaphorePermit> {
    if !registry.close_one_idle() {
        return None;
    }
    tokio::time::timeout(ROOM_WAIT, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Tells a client beyond the cap why it is not served, without waiting for it: a short `503`
/// if the socket takes it at once, then the connection is closed.
fn refuse(tcp: &tokio::net::TcpStream, max_connections: usize) {
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": format!("the API server has {max_connections} connections open, its limit; retry later, or raise the limit (--max-connections; it is also capped at half of ulimit -n)"),
    }})
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Best effort: a full socket buffer just means the client sees the close.
    let _ = tcp.try_write(response.as_bytes());
    tracing::debug!(
        max_connections,
        "API connection refused: at the connection cap"
    );
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Marks a connection busy for the life of one request.
struct Busy {
    tracked: Arc<Tracked>,
    started: Instant,
}

impl Busy {
    fn begin(tracked: &Arc<Tracked>, started: Instant) -> Self {
        tracked.in_flight.fetch_add(1, Ordering::AcqRel);
        Self {
            tracked: tracked.clone(),
            started,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.tracked
            .idle_since_ms
            .store(elapsed_ms(self.started), Ordering::Relaxed);
        self.tracked.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
