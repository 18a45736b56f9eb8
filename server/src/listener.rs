//! Bounded listeners: every connection Pier accepts is capped in number, timed out when it
//! stalls, and closed within a bounded grace period at shutdown.
//!
//! - **Connection cap** ([`ListenerLimits::max_connections`]): one semaphore shared by every
//!   listener of a server; a connection past it is accepted and closed at once (the client
//!   sees a reset instead of waiting in the kernel's backlog), and counted in
//!   `pier_connections_refused_total`.
//! - **HTTP/1** (hyper): a header-read timeout (the whole request head, so a slowloris
//!   client that trickles header bytes is cut off; hyper also starts it while a keep-alive
//!   connection waits for its next request), a bounded header buffer, and a deadline on the
//!   whole request body ([`DeadlineBody`]) so a body trickled byte by byte cannot hold a
//!   request open.
//! - **HTTP/2** (hyper, for the data plane and for gRPC, which speaks nothing else):
//!   bounded concurrent streams and header list size, keep-alive pings that close a peer
//!   which stops answering.
//! - **TLS** (rustls, when configured): the handshake runs in the connection's own task and
//!   must finish within the header-read timeout.
//! - **Idle connections**: a per-connection watchdog closes a connection that has moved no
//!   byte for [`ListenerLimits::idle_timeout`] while no request of it is being handled.
//! - **Shutdown**: listeners stop accepting, connections are asked to finish (HTTP/1 closes
//!   after the response in progress, HTTP/2 sends GOAWAY); [`crate::RunningServer::shutdown`]
//!   waits at most [`ListenerLimits::shutdown_grace`] before it drops what is left.
//!
//! Concurrency: one accept loop task per listener; each connection runs as a task of that
//! loop's `JoinSet`, so dropping the loop (at the end of the grace period) aborts them all.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Bounds on every listener (data plane, control plane, gRPC).
#[derive(Clone, Debug)]
pub struct ListenerLimits {
    /// Connections open at once over all listeners; more are closed on accept.
    pub max_connections: usize,
    /// Longest an HTTP/1 client may take to send a request head (and longest a keep-alive
    /// connection may wait for its next request).
    pub header_read_timeout: Duration,
    /// Longest a request body may take to arrive, from the request head to its last byte.
    pub body_read_timeout: Duration,
    /// A connection that moves no byte for this long, with no request in progress, is closed.
    pub idle_timeout: Duration,
    /// Largest HTTP/1 request head in bytes (request line and headers).
    pub max_header_bytes: usize,
    /// Concurrent HTTP/2 streams per connection (HTTP and gRPC).
    pub http2_max_concurrent_streams: u32,
    /// Largest HTTP/2 header list in bytes.
    pub http2_max_header_list_size: u32,
    /// Interval of HTTP/2 keep-alive pings; a peer that does not answer one within the
    /// same time is disconnected.
    pub http2_keep_alive: Duration,
    /// Longest shutdown waits for connections to finish before closing them.
    pub shutdown_grace: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 64 * 1024,
            http2_max_concurrent_streams: 256,
            http2_max_header_list_size: 64 * 1024,
            http2_keep_alive: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl ListenerLimits {
    /// The connection cap this process can honour: `max_connections`, lowered to what the
    /// open-file limit allows (after raising the soft limit to the hard one), keeping room
    /// for the database, the store and model files.
    pub fn effective_max_connections(&self) -> usize {
        const RESERVED_FDS: u64 = 128;
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            limit.current = limit.maximum;
            if let Err(e) = setrlimit(Resource::Nofile, limit) {
                tracing::debug!(error = %e, "cannot raise the open-file limit");
            }
            limit = getrlimit(Resource::Nofile);
        }
        match limit.current {
            Some(files) => {
                let allowed = files.saturating_sub(RESERVED_FDS).max(1);
                let cap = self
                    .max_connections
                    .min(usize::try_from(allowed).unwrap_or(usize::MAX));
                if cap < self.max_connections {
                    tracing::warn!(
                        max_connections = self.max_connections,
                        cap,
                        open_file_limit = files,
                        "--max-connections lowered to what the open-file limit allows"
                    );
                }
                cap
            }
            None => self.max_connections,
        }
    }
}

/// What one connection has done lately, shared by its IO wrapper, its service and its
/// watchdog.
#[derive(Debug)]
struct Activity {
    started: Instant,
    /// Milliseconds since `started` of the last byte read or written.
    last_ms: AtomicU64,
    /// Requests of this connection being handled.
    active: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            active: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the last byte was read or written.
    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Resolves once the connection has been idle (no bytes, no request) for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let due = self.last() + idle;
            if Instant::now() >= due {
                if self.active.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // A request is being handled (the model may be computing): look again later.
                tokio::time::sleep(idle.min(Duration::from_secs(1))).await;
            } else {
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }
}

/// Decrements a connection's active-request count when the request's handling ends.
struct ActiveGuard(Arc<Activity>);

impl ActiveGuard {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.active.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A TCP stream that holds its connection permit and records its activity.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts the next connection within the cap: connections past it, and accept errors
/// (a client that reset before accept, the open-file limit), never end the loop.
async fn accept(listener: &TcpListener, permits: &Arc<Semaphore>) -> Conn {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "connection refused: --max-connections reached");
                    crate::metrics::record_connection_refused();
                    drop(stream);
                    continue;
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                let activity = Activity::new();
                activity.touch();
                return Conn {
                    stream,
                    activity,
                    _permit: permit,
                };
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on a full table.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1 and HTTP/2 (the data and control planes): each request body must arrive
    /// within [`ListenerLimits::body_read_timeout`].
    Http,
    /// gRPC: HTTP/2 only (a connection that opens with anything but the HTTP/2 preface is
    /// closed), and bodies are streams that may stay open as long as their RPC (the
    /// whole-request timeout still bounds a unary call).
    Grpc,
}

/// Serves `service` on `listener` in `protocol` within `limits` until `stop` turns true,
/// then asks every connection to finish and waits for them. The service is an axum
/// router or the data plane's [`crate::routers::DataPlaneService`] for HTTP (HTTP/1 and
/// HTTP/2), or the v2 gRPC service behind its layers, which hyper drives directly (HTTP/2
/// only, no tonic transport server in between). Over TLS when `tls` is set: the handshake
/// runs in the connection's task within the header-read timeout. Every listener gets the
/// same connection cap, idle watchdog, HTTP/2 limits and graceful shutdown.
/// The caller bounds the wait at shutdown ([`ListenerLimits::shutdown_grace`]) by dropping
/// this future.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: ListenerLimits,
    permits: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    protocol: Protocol,
) -> std::io::Result<()>
where
    S: tower::Service<axum::extract::Request, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A gRPC body is a stream that lives as long as its RPC: no whole-body deadline.
    let body_timeout = (protocol == Protocol::Http).then_some(limits.body_read_timeout);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if protocol == Protocol::Grpc {
        builder = builder.http2_only();
    }
    let builder_ref = &mut builder;
    builder_ref
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder_ref
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(limits.http2_max_header_list_size)
        .keep_alive_interval(limits.http2_keep_alive)
        .keep_alive_timeout(limits.http2_keep_alive);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let conn = tokio::select! {
            conn = accept(&listener, &permits) => conn,
            _ = stop.wait_for(|s| *s) => break,
        };
        while connections.try_join_next().is_some() {}
        let activity = conn.activity.clone();
        let service = service.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |request: hyper::Request<hyper::body::Incoming>| {
                let guard = ActiveGuard::new(&activity);
                let service = service.clone();
                async move {
                    let request = request.map(|body| match body_timeout {
                        Some(timeout) => Body::new(DeadlineBody::new(body, timeout)),
                        None => Body::new(body),
                    });
                    let response = service.oneshot(request).await;
                    drop(guard);
                    response
                }
            },
        ));
        let activity = conn.activity.clone();
        let idle = limits.idle_timeout;
        let handshake_timeout = limits.header_read_timeout;
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        connections.spawn(async move {
            let Some(io) = handshake(conn, tls.as_ref(), handshake_timeout).await else {
                return;
            };
            let io = TokioIo::new(io);
            // hyper-util's `http2_only` holds for `serve_connection`, not for the
            // variant with upgrades (which HTTP/1 needs).
            match protocol {
                Protocol::Http => {
                    let connection = builder.serve_connection_with_upgrades(io, service);
                    drive(watcher.watch(connection.into_owned()), &activity, idle).await;
                }
                Protocol::Grpc => {
                    let connection = builder.serve_connection(io, service);
                    drive(watcher.watch(connection.into_owned()), &activity, idle).await;
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Runs a connection until it ends, or until it has been idle for `idle` (then it is dropped,
/// which closes it).
async fn drive<C, E>(connection: C, activity: &Activity, idle: Duration)
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = activity.idle(idle) => tracing::debug!("idle connection closed"),
    }
}

/// `conn` as it is (no `tls`) or after a TLS handshake that must finish within `timeout`;
/// `None` when the handshake failed or timed out (logged at debug level).
async fn handshake<S>(conn: S, tls: Option<&TlsAcceptor>, timeout: Duration) -> Option<MaybeTls<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(acceptor) = tls else {
        return Some(MaybeTls::Plain(conn));
    };
    match tokio::time::timeout(timeout, acceptor.accept(conn)).await {
        Ok(Ok(stream)) => Some(MaybeTls::Tls(Box::new(stream))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?timeout, "TLS handshake timed out");
            None
        }
    }
}

/// A connection in cleartext or TLS.
#[derive(Debug)]
enum MaybeTls<S> {
    /// Cleartext.
    Plain(S),
    /// After a TLS handshake.
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A request body that must arrive whole before a deadline (set when the request head has
/// been read); past it, the body fails with an error naming the timeout. The timer is made
/// only when the body has to be waited for: a body that came with its head costs none.
pub struct DeadlineBody<B = Body> {
    inner: B,
    timeout: Duration,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> DeadlineBody<B> {
    /// Wraps `inner` with a deadline `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: tokio::time::Instant::now() + timeout,
            sleep: None,
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(Duration);

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(other) => Poll::Ready(other.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
