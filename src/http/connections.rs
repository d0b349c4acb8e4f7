//! The listener: accepting connections, bounding them, closing them on shutdown.
//!
//! `axum::serve` offers none of the limits a public-facing server needs, so connections are
//! served here with hyper directly (what `axum::serve` does inside), HTTP/1.1 only (HTTP/2 is
//! the gRPC port's), adding:
//! - a cap on open connections (`--max-connections`): one more is answered `503` with
//!   `Connection: close` and closed at once, so a flood of idle sockets can neither exhaust
//!   file descriptors nor starve the clients already connected;
//! - hyper's header read timeout (`--idle-timeout-ms`): it runs whenever a connection waits
//!   for a request head, from the moment it is accepted, so it ends connections that never
//!   send anything, idle keep-alive connections and clients that send
//!   headers slowly (the body has its own timeout, in the handler);
//! - TLS when configured ([`crate::tls`]): the handshake runs in the connection's task and must
//!   finish within the idle timeout; a connection over the cap is closed without a handshake;
//! - a shutdown that ends: after the signal, the listener closes, every connection is told to
//!   finish its current request and close (`Connection: close`), and
//!   connections still open when the grace period ends are dropped in-process, cancelling their
//!   handlers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::service::ServiceError;

/// Connection limits (`--max-connections`, `--idle-timeout-ms`).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// How [`serve`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished on its own.
    Clean,
    /// The grace period ended first; this many connections were dropped.
    Cut(usize),
}

/// Where and how [`serve`] listens.
#[derive(Debug)]
pub(crate) struct Listening {
    pub listener: TcpListener,
    /// Which listener this is (its ALPN and its label in TLS metrics).
    pub which: crate::tls::Listener,
    pub tls: Option<crate::tls::Tls>,
    pub limits: ConnectionLimits,
}

/// Serves `router` until `shutdown` resolves, then drains the connections for at most `grace`.
pub(crate) async fn serve(
    listening: Listening,
    router: Router,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<Drained> {
    let Listening {
        listener,
        which,
        tls,
        limits,
    } = listening;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: transient.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_rejected();
            if tls.is_none() {
                tokio::spawn(refuse(stream, limits.max_connections));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let metrics = metrics.clone();
        metrics.connections(1.0);
        connections.spawn(async move {
            if let Some(stream) =
                crate::tls::open(tls.as_ref(), which, stream, limits.idle_timeout).await
            {
                let connection =
                    watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                if let Err(e) = connection.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            metrics.connections(-1.0);
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(
        open = connections.len(),
        "shutdown: listener closed, draining connections"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok()
    {
        return Ok(Drained::Clean);
    }
    while connections.try_join_next().is_some() {}
    let cut = connections.len();
    connections.shutdown().await;
    Ok(Drained::Cut(cut))
}

/// Answers the first request of a connection over the cap with a 503 (`Connection: close`)
/// and closes it; the whole exchange is bounded to one second.
async fn refuse(stream: TcpStream, limit: usize) {
    let service = hyper::service::service_fn(move |_request| async move {
        Ok::<_, std::convert::Infallible>(
            ServiceError::TooManyConnections { limit }.into_response(),
        )
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_TIME, connection).await;
}

/// The longest a refused connection is kept open.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
