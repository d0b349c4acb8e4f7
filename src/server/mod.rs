//! Start-up and shutdown: preprocessing pool -> for each model version: model -> sessions
//! (warmed up) -> inference threads -> batcher ([`version`]) -> HTTP, gRPC, admin; and the
//! reverse, in order, on SIGTERM/SIGINT.

#[cfg(test)]
mod fake_engine_tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::admission::Admissions;
use crate::body_budget::BodyBudget;
use crate::config::ServeConfig;
use crate::cores::Cores;
use crate::http;
use crate::http::connections::{self, Drained};
use crate::metrics::Metrics;
use crate::models::{Control, Loader, Shared};
use crate::preprocess::budget::DecodeBudget;
use crate::preprocess::pool::PreprocessPool;
use crate::service::{AppState, Limits, Readiness};
use crate::supervise::Supervisor;

/// A loaded, warmed-up service, not yet listening.
#[derive(Debug)]
pub struct App {
    pub state: AppState,
    config: ServeConfig,
    /// The preprocessing pool every version shares, shut down once every pipeline is gone.
    pool: Arc<PreprocessPool>,
    /// Re-read the API key file and the TLS files while the service runs.
    watches: Vec<tokio::task::JoinHandle<()>>,
    tls: Option<crate::tls::Tls>,
}

impl App {
    /// Loads (and fuses) every model version, builds and warms up their sessions, starts the
    /// threads. Versions load one after the other: each load uses every core.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Self> {
        Self::start_with(config, Arc::new(crate::models::load::load)).await
    }

    /// [`App::start`] with the engines `loader` makes (tests of the doors run a fake backend).
    pub(crate) async fn start_with(config: ServeConfig, loader: Loader) -> anyhow::Result<Self> {
        let started = Instant::now();
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::new(metrics.clone());
        let supervisor = Supervisor::default();
        let budget = DecodeBudget::new(config.preprocess.max_decode_bytes).observed(&metrics);
        tracing::info!(
            max_decode_mib = budget.total() / (1 << 20),
            "decode memory budget"
        );
        let pool = Arc::new(PreprocessPool::start(
            config.preprocess.workers,
            budget,
            &supervisor,
        ));
        let shared = Shared {
            admissions: Admissions::new(config.batching.queue_capacity, metrics.clone()),
            cores: match config.inference.core_budget {
                Some(total) => Cores::new(total),
                None => Cores::unlimited(),
            },
            metrics: metrics.clone(),
            supervisor: supervisor.clone(),
            pool: pool.clone(),
            loader,
        };
        let control = Arc::new(Control::start(config.clone(), shared).await?);
        let mut watches = Vec::new();
        if config.model_control == crate::models::ModelControl::Poll {
            watches.push(tokio::spawn(
                control.clone().poll(config.model_poll_interval),
            ));
        }
        let access = match &config.access.api_keys_file {
            Some(path) => crate::access::Access::from_file(path)?,
            None => crate::access::Access::open(),
        };
        watches.push(tokio::spawn(access.clone().watch(metrics.clone())));
        let tls = match &config.tls {
            Some(files) => {
                let tls = crate::tls::Tls::load(files.clone(), metrics.clone())?;
                watches.push(tokio::spawn(tls.clone().watch()));
                Some(tls)
            }
            None => None,
        };
        let metrics_for_budget = metrics.clone();
        let state = AppState {
            access,
            cors_allow_origins: config.access.cors_allow_origins.clone().into(),
            models: control.models().clone(),
            control,
            metrics,
            readiness,
            limits: Limits {
                request_timeout: config.batching.request_timeout,
                max_body_bytes: config.preprocess.max_body_bytes,
                body_timeout: config.preprocess.body_timeout,
                max_images_per_request: config.preprocess.max_images_per_request,
            },
            supervisor,
            body_budget: BodyBudget::new(
                config.preprocess.max_inflight_body_bytes,
                metrics_for_budget,
            ),
        };
        state.readiness.set(true);
        let precision = config.inference.precision;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            versions = state.models.all().len(),
            precision = precision.as_str(),
            engine = precision.engine(),
            "ready"
        );
        Ok(Self {
            state,
            config,
            pool,
            watches,
            tls,
        })
    }

    /// Counts of the trace exporter (spans exported, dropped, failed) appear in `/metrics`.
    pub fn follow_trace_export(&self, counts: std::sync::Arc<crate::telemetry::ExportCounts>) {
        self.state.metrics.follow_trace_export(counts);
    }

    /// Serves the public HTTP port, gRPC and the admin listener until `shutdown` resolves, then
    /// drains: readiness 503 at once, the optional lame-duck delay, no new connections, every
    /// accepted request and call answered (bounded by the grace period), the batcher flushed,
    /// the inference threads joined.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            state,
            config,
            pool,
            watches,
            tls,
        } = self;
        let Listeners {
            http: listener,
            grpc,
            admin,
        } = listeners;
        // One signal for both servers: set once the lame-duck delay is over.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let readiness = state.readiness.clone();
        let delay = config.drain_delay;
        tokio::spawn(async move {
            shutdown.await;
            readiness.set(false);
            tracing::info!(
                drain_delay_ms = delay.as_millis() as u64,
                "shutdown: readiness now 503, still serving (lame duck)"
            );
            tokio::time::sleep(delay).await;
            let _ = stop.send(true);
        });
        let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|&stop| stop).await;
        };
        let grace = config.shutdown_grace;
        let listening = |listener, which| connections::Listening {
            listener,
            which,
            tls: tls.clone(),
            limits: config.connections,
        };
        let http = connections::serve(
            listening(listener, crate::tls::Listener::Http),
            http::router(state.clone(), config.ui),
            state.metrics.clone(),
            stopped(stopping.clone()),
            grace,
        );
        // The admin listener stops with the others (scrapes during the lame duck still work).
        let admin = admin.map(|listener| {
            let serving = connections::serve(
                listening(listener, crate::tls::Listener::Admin),
                http::admin_router(state.clone(), config.ui),
                state.metrics.clone(),
                stopped(stopping.clone()),
                grace,
            );
            tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            })
        });
        let grpc = {
            let state = state.clone();
            let stopping = stopping.clone();
            let cut = tokio_util::sync::CancellationToken::new();
            let limits = crate::grpc::GrpcLimits {
                connections: crate::grpc::connections::ConnectionLimits {
                    max_connections: config.connections.max_connections,
                    idle_timeout: config.connections.idle_timeout,
                    cut: cut.clone(),
                    tls: tls.clone(),
                },
                http2: config.grpc.clone(),
                budget: state.body_budget.clone(),
                arrival_timeout: config.preprocess.body_timeout,
                access: state.access.clone(),
            };
            async move {
                let Some(listener) = grpc else { return Ok(()) };
                let serving =
                    crate::grpc::serve(listener, state, limits, stopped(stopping.clone()));
                tokio::pin!(serving);
                // The grace period runs from the stop signal, as for HTTP.
                let grace_over = async {
                    stopped(stopping).await;
                    tokio::time::sleep(grace).await;
                };
                tokio::select! {
                    served = &mut serving => served.context("gRPC server"),
                    () = grace_over => {
                        // Every connection's socket fails now: hyper resets the streams and
                        // drops the calls' futures (their images leave the queue).
                        cut.cancel();
                        let ended = tokio::time::timeout(CUT_WAIT, &mut serving).await.is_ok();
                        tracing::warn!(
                            grace_s = grace.as_secs(),
                            ended,
                            "grace period over: remaining gRPC connections closed, their calls cancelled"
                        );
                        Ok(())
                    }
                }
            }
        };
        let mut servers = tokio::spawn(async move { tokio::join!(http, grpc) });
        tokio::select! {
            joined = &mut servers => {
                let (http, grpc) = joined.context("server task")?;
                match http.context("HTTP server")? {
                    Drained::Clean => tracing::info!("shutdown: every connection finished"),
                    Drained::Cut(open) => tracing::warn!(
                        grace_s = grace.as_secs(),
                        open,
                        "grace period over: remaining connections closed, their requests cancelled"
                    ),
                }
                grpc?;
            },
            cause = state.supervisor.failed() => {
                return fail(&state, servers, &cause).await;
            }
        }
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        watches.iter().for_each(tokio::task::JoinHandle::abort);
        let control = state.control.clone();
        drop(state);
        control.stop_all().await;
        drop(control);
        tokio::task::spawn_blocking(move || {
            if let Ok(pool) = Arc::try_unwrap(pool) {
                pool.shutdown();
            }
        })
        .await
        .context("joining worker threads")?;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// The sockets a service listens on: the public HTTP port, and optionally gRPC and the admin
/// listener.
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

/// A part of the pipeline died: not ready, every waiting request answered 500 now, the answers
/// given a moment to reach their clients, then an error, so the process exits non-zero and the
/// orchestrator restarts it.
async fn fail(
    state: &AppState,
    servers: tokio::task::JoinHandle<impl Sized>,
    cause: &str,
) -> anyhow::Result<()> {
    state.readiness.set(false);
    state.control.fail_all(cause).await;
    tokio::time::sleep(FAILURE_FLUSH).await;
    servers.abort();
    anyhow::bail!("the serving pipeline failed: {cause}")
}

/// How long the gRPC server gets to wind down once its connections are cut.
const CUT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long answers to failed requests get to reach their clients before the process exits.
const FAILURE_FLUSH: std::time::Duration = std::time::Duration::from_millis(300);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
