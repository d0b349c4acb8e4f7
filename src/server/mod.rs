//! Start-up and shutdown: model -> sessions (warmed up) -> inference threads -> batcher ->
//! preprocessing pool -> HTTP; and the reverse, in order, on SIGTERM/SIGINT.

mod load;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::batching::queue::QueueConfig;
use crate::batching::Batcher;
use crate::batching::{Batch, Lanes, Watchdog, Workers};
use crate::body_budget::BodyBudget;
use crate::config::ServeConfig;
use crate::http::connections::{self, Drained};
use crate::http::{self, AppState, BatchingDetails, InputDetails, Limits, Readiness, ServedModel};
use crate::inference::{InferenceError, InputShape};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::preprocess::budget::DecodeBudget;
use crate::preprocess::pool::PreprocessPool;
use crate::preprocess::PreprocessConfig;
use crate::supervise::Supervisor;
use load::{load, Loaded};

/// A loaded, warmed-up service, not yet listening.
#[derive(Debug)]
pub struct App {
    pub state: AppState,
    config: ServeConfig,
    workers: Workers,
    driver: tokio::task::JoinHandle<()>,
    watchdog: tokio::task::JoinHandle<()>,
    /// Re-read the API key file and the TLS files while the service runs.
    watches: Vec<tokio::task::JoinHandle<()>>,
    tls: Option<crate::tls::Tls>,
    /// The inference threads' channels, kept to fail the batches a dead thread leaves in them.
    batches: Vec<crossbeam_channel::Receiver<Batch>>,
}

impl App {
    /// Loads (and fuses) the model, builds and warms up the sessions, starts the threads.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Self> {
        let started = Instant::now();
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::new(metrics.clone());
        let prep_config = config.clone();
        let Loaded {
            info,
            from_cache,
            engines,
            wide,
            agreement,
            warm_up_per_image,
        } = tokio::task::spawn_blocking(move || load(&prep_config))
            .await
            .context("model loading panicked")??;
        if info.demo {
            tracing::warn!(
                "DEMO MODEL ({}): RANDOM weights, predictions are meaningless. \
                 Pass --checkpoint FILE (or --model FILE.onnx) to serve real weights.",
                info.source
            );
        }
        let labels = crate::labels::load(config.labels.as_deref(), info.num_classes)?;
        let preprocess = PreprocessConfig {
            resize: config.preprocess.resize.unwrap_or(info.resize),
            crop: config.preprocess.crop.unwrap_or(info.crop),
            max_pixels: config.preprocess.max_pixels,
            jpeg_dct_scaling: config.preprocess.jpeg_dct_scaling,
        };
        if preprocess.crop > preprocess.resize {
            anyhow::bail!(
                "crop {} is larger than resize {}",
                preprocess.crop,
                preprocess.resize
            );
        }
        let precision = config.inference.precision;
        metrics.set_model_info(
            info.variant.as_deref().unwrap_or("custom"),
            info.num_classes,
            info.checkpoint_sha256.as_deref().unwrap_or(""),
            info.fused,
            precision,
        );

        let shape = InputShape {
            size: preprocess.crop as usize,
            normalization: config.preprocess.normalization,
        };
        let supervisor = Supervisor::default();
        let (narrow_tx, narrow_rx) = crossbeam_channel::unbounded();
        let mut paired: Vec<_> = engines
            .into_iter()
            .map(|e| (e, narrow_rx.clone()))
            .collect();
        let mut batches = vec![narrow_rx];
        let wide_session = wide.is_some();
        let wide_tx = wide.map(|engine| {
            let (tx, rx) = crossbeam_channel::unbounded();
            paired.push((engine, rx.clone()));
            batches.push(rx);
            tx
        });
        let watchdog = Arc::new(Watchdog::new(
            paired.len(),
            warm_up_per_image,
            config.batching.max_batch_size,
        ));
        tracing::info!(
            bound_ms = watchdog.bound().as_millis() as u64,
            "inference watchdog: a batch running longer fails the process"
        );
        let workers = Workers::spawn(paired, shape, metrics.clone(), &supervisor, &watchdog);
        let watchdog = tokio::spawn(watchdog.watch(supervisor.clone()));
        let b = &config.batching;
        let (batcher, driver) = Batcher::start(
            QueueConfig {
                max_batch: b.max_batch_size,
                max_delay: b.max_queue_delay,
                capacity: b.queue_capacity,
            },
            config.inference.sessions,
            Lanes {
                narrow: narrow_tx,
                wide: wide_tx,
            },
            metrics.clone(),
            supervisor.clone(),
        );
        let budget = DecodeBudget::new(config.preprocess.max_decode_bytes).observed(&metrics);
        tracing::info!(
            max_decode_mib = budget.total() / (1 << 20),
            "decode memory budget"
        );
        let pool =
            PreprocessPool::start(config.preprocess.workers, preprocess, budget, &supervisor);
        let model = ServedModel {
            labels,
            input: InputDetails {
                resize: preprocess.resize,
                crop: preprocess.crop,
                max_pixels: preprocess.max_pixels,
                max_body_bytes: config.preprocess.max_body_bytes,
                normalization: config.preprocess.normalization,
            },
            batching: BatchingDetails {
                max_batch_size: b.max_batch_size,
                max_queue_delay_ms: b.max_queue_delay.as_millis() as u64,
                queue_capacity: b.queue_capacity,
                request_timeout_ms: b.request_timeout.as_millis() as u64,
                sessions: config.inference.sessions,
                intra_threads: config.inference.intra_threads,
                wide_session,
                preprocess_workers: config.preprocess.workers,
            },
            precision,
            agreement,
            info,
        };
        let catalog =
            crate::v2::Catalog::new(&config.model_name, shape, Arc::new(model.labels.clone()));
        let access = match &config.access.api_keys_file {
            Some(path) => crate::access::Access::from_file(path)?,
            None => crate::access::Access::open(),
        };
        let mut watches = vec![tokio::spawn(access.clone().watch(metrics.clone()))];
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
            catalog,
            model: Arc::new(model),
            pipeline: Pipeline::new(Arc::new(pool), batcher, metrics.clone(), shape),
            metrics,
            readiness,
            limits: Limits {
                request_timeout: b.request_timeout,
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
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            variant = state.model.info.variant.as_deref().unwrap_or("custom"),
            classes = state.model.info.num_classes,
            precision = precision.as_str(),
            engine = precision.engine(),
            from_cache,
            "model ready"
        );
        Ok(Self {
            state,
            config,
            workers,
            driver,
            watchdog,
            watches,
            tls,
            batches,
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
            workers,
            driver,
            watchdog,
            watches,
            tls,
            batches,
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
            http::router(state.clone()),
            state.metrics.clone(),
            stopped(stopping.clone()),
            grace,
        );
        // The admin listener stops with the others (scrapes during the lame duck still work).
        let admin = admin.map(|listener| {
            let serving = connections::serve(
                listening(listener, crate::tls::Listener::Admin),
                http::admin_router(state.clone()),
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
                return fail(&state, &batches, servers, &cause).await;
            }
        }
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        watches.iter().for_each(tokio::task::JoinHandle::abort);
        state.pipeline.close();
        let _ = driver.await;
        watchdog.abort();
        let pool = state.pipeline.into_pool();
        tokio::task::spawn_blocking(move || {
            workers.join();
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
    batches: &[crossbeam_channel::Receiver<Batch>],
    servers: tokio::task::JoinHandle<impl Sized>,
    cause: &str,
) -> anyhow::Result<()> {
    state.readiness.set(false);
    state.pipeline.fail_queued(cause);
    state.pipeline.close();
    for batch in batches.iter().flat_map(|b| b.try_iter()) {
        for job in batch.jobs {
            let _ = job
                .reply
                .send(Err(InferenceError::Failed(cause.to_owned())));
        }
    }
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
