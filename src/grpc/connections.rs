//! The gRPC listener's protections, the same as the HTTP port's where they mean the same:
//!
//! - a cap on open connections (`--max-connections`, counted per port): one more is closed at
//!   once, before any HTTP/2 byte (`repvgg_grpc_connections_rejected_total`);
//! - an idle timeout (`--idle-timeout-ms`): a connection with no call in progress for that long
//!   is closed, however many HTTP/2 pings keep its bytes flowing;
//! - a message arrival timeout (`--body-timeout-ms`, from the call's start): a client that
//!   opens a stream and sends half a message gets DEADLINE_EXCEEDED ([`CallLimits`]);
//! - the request-body memory budget shared with HTTP ([`crate::body_budget`]);
//! - the largest message, following the models served ([`super::message_limit`]);
//! - a cut at the end of the shutdown grace period: every connection's socket fails at once,
//!   so hyper resets its streams and the calls' futures are dropped, for real.
//!
//! HTTP/2's own limits (concurrent streams per connection, keepalive pings, maximum connection
//! age) are tonic's settings, applied in [`super::serve`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use tracing::Instrument;

use crate::body_budget::{BodyBudget, BodyError};
use crate::metrics::Metrics;
use crate::service::REQUEST_ID;

/// The limits of [`incoming`].
#[derive(Clone, Debug)]
pub(crate) struct ConnectionLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// Cancelled at the end of the grace period: every connection fails at once.
    pub cut: CancellationToken,
    /// TLS (ALPN `h2`) when configured.
    pub tls: Option<crate::tls::Tls>,
}

/// Accepted connections, over the cap closed at once. An accept task takes connections and
/// hands each to its own task for the TLS handshake (when configured), so a slow handshake
/// never holds the others up; the listener closes when the server drops the stream.
pub(crate) fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = io::Result<Connection>> {
    let (ready, connections) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        loop {
            let (stream, peer) = tokio::select! {
                () = ready.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors or reset before accept: transient.
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics.grpc_connection_rejected();
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (ready, limits, metrics) = (ready.clone(), limits.clone(), metrics.clone());
            tokio::spawn(async move {
                let listener = crate::tls::Listener::Grpc;
                let tls = limits.tls.as_ref();
                if let Some(stream) =
                    crate::tls::open(tls, listener, stream, limits.idle_timeout).await
                {
                    let connection = Connection::new(stream, peer, slot, &limits, metrics);
                    let _ = ready.send(Ok(connection)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(connections)
}

/// What a call sees of its connection (tonic puts it in every request's extensions).
#[derive(Clone, Debug)]
pub(crate) struct ConnectionInfo {
    pub peer: SocketAddr,
    activity: Arc<Activity>,
}

/// Calls in progress on a connection, and when the last one ended.
#[derive(Debug)]
struct Activity {
    calls: AtomicUsize,
    last_ended: Mutex<Instant>,
}

/// A call in progress: its connection is not idle.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.calls.fetch_add(1, Ordering::SeqCst);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_ended.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted gRPC connection: the socket, its place under the cap, its idle timer and the
/// grace-period cut.
pub(crate) struct Connection {
    stream: crate::tls::Stream,
    info: ConnectionInfo,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    metrics: Arc<Metrics>,
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.info.peer)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(
        stream: crate::tls::Stream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        limits: &ConnectionLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.grpc_connections(1.0);
        let now = Instant::now();
        Self {
            stream,
            info: ConnectionInfo {
                peer,
                activity: Arc::new(Activity {
                    calls: AtomicUsize::new(0),
                    last_ended: Mutex::new(now),
                }),
            },
            idle_timeout: limits.idle_timeout,
            idle: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            cut: Box::pin(limits.cut.clone().cancelled_owned()),
            metrics,
            _slot: slot,
        }
    }

    /// An error when the connection must end now: cut by the grace period, or idle (no call
    /// in progress) for the idle timeout. Registers the wake-ups for both otherwise.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "shutdown grace period over",
            ));
        }
        while self.idle.as_mut().poll(cx).is_ready() {
            let activity = &self.info.activity;
            let next = if activity.calls.load(Ordering::SeqCst) > 0 {
                Instant::now() + self.idle_timeout
            } else {
                let last = *activity
                    .last_ended
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let due = last + self.idle_timeout;
                if due <= Instant::now() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "idle connection"));
                }
                due
            };
            self.idle.as_mut().reset(next);
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.metrics.grpc_connections(-1.0);
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

/// Per call: its request id and API key checked first ([`super::gate`]), its connection marked
/// busy while it runs, its request body counted against the body budget and cut if it has not
/// arrived within the arrival timeout.
#[derive(Clone, Debug)]
pub(crate) struct CallLimits {
    pub budget: BodyBudget,
    /// The largest message, following the models served.
    pub message_limit: super::message_limit::MessageLimit,
    pub arrival_timeout: Duration,
    pub access: crate::access::Access,
    pub metrics: Arc<Metrics>,
}

impl<S> tower::Layer<S> for CallLimits {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limits: self.clone(),
        }
    }
}

/// The service [`CallLimits`] wraps.
#[derive(Clone, Debug)]
pub(crate) struct Limited<S> {
    inner: S,
    limits: CallLimits,
}

type GrpcRequest = http::Request<tonic::body::Body>;

impl<S> tower::Service<GrpcRequest> for Limited<S>
where
    S: tower::Service<GrpcRequest, Response = http::Response<tonic::body::Body>> + Send,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: GrpcRequest) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let id = super::gate::request_id(&mut parts.headers);
        let span = tracing::info_span!(
            "grpc",
            id = id.to_str().unwrap_or_default(),
            method = parts.uri.path(),
            "otel.name" = parts.uri.path().trim_start_matches('/'),
            "otel.kind" = "server",
            "rpc.system" = "grpc",
        );
        crate::telemetry::adopt(&span, &parts.headers);
        if let Err(status) = super::gate::admit(&self.limits.access, &self.limits.metrics, &parts) {
            // Refused before the body is read: nothing counted, nothing kept.
            let mut response = status.into_http();
            response.headers_mut().insert(REQUEST_ID, id);
            return Box::pin(std::future::ready(Ok(response)));
        }
        let busy = parts
            .extensions
            .get::<ConnectionInfo>()
            .map(|info| Busy::new(info.activity.clone()));
        let (body, hold) = self
            .limits
            .budget
            .wrap(body, Some(self.limits.arrival_timeout));
        // Budget and arrival errors reach the client as their own status codes (tonic turns a
        // body error that is a `Status` into that status).
        let body = http_body_util::BodyExt::map_err(body, |e| {
            let status = match BodyError::find(e.as_ref()) {
                Some(found @ BodyError::BudgetFull { .. }) => {
                    tonic::Status::unavailable(found.to_string())
                }
                Some(found @ BodyError::Timeout { .. }) => {
                    tonic::Status::deadline_exceeded(found.to_string())
                }
                None => return e,
            };
            Box::new(status) as Box<dyn std::error::Error + Send + Sync>
        });
        let body = self.limits.message_limit.cap(body);
        let request = http::Request::from_parts(parts, tonic::body::Body::new(body));
        let call = self.inner.call(request);
        Box::pin(
            async move {
                let mut response = call.await;
                drop((hold, busy));
                if let Ok(response) = &mut response {
                    response.headers_mut().insert(REQUEST_ID, id);
                }
                response
            }
            .instrument(span),
        )
    }
}
