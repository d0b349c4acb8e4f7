//! Start-up and shutdown: model -> sessions (warmed up) -> inference threads -> batcher ->
//! preprocessing pool -> HTTP; and the reverse, in order, on SIGTERM/SIGINT.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::batching::queue::QueueConfig;
use crate::batching::Batcher;
use crate::batching::{Batch, Lanes, Workers};
use crate::config::ServeConfig;
use crate::http::connections::{self, Drained};
use crate::http::{self, AppState, BatchingDetails, InputDetails, Limits, Readiness, ServedModel};
use crate::inference::{
    openvino, Agreement, Engine, EngineConfig, InferenceError, InputShape, OpenVinoModel,
    Precision, SharedModel,
};
use crate::metrics::Metrics;
use crate::model;
use crate::pipeline::Pipeline;
use crate::preprocess::budget::DecodeBudget;
use crate::preprocess::pool::PreprocessPool;
use crate::preprocess::PreprocessConfig;
use crate::supervise::Supervisor;

/// A loaded, warmed-up service, not yet listening.
#[derive(Debug)]
pub struct App {
    pub state: AppState,
    config: ServeConfig,
    workers: Workers,
    driver: tokio::task::JoinHandle<()>,
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
        let workers = Workers::spawn(paired, shape, metrics.clone(), &supervisor);
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
        let budget = DecodeBudget::new(config.preprocess.max_decode_bytes);
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
        let catalog = crate::v2::Catalog::new(
            &config.model_name,
            shape.size,
            Arc::new(model.labels.clone()),
        );
        let state = AppState {
            catalog,
            model: Arc::new(model),
            pipeline: Pipeline::new(Arc::new(pool), batcher, metrics.clone(), shape),
            metrics,
            readiness,
            limits: Limits {
                request_timeout: b.request_timeout,
                max_body_bytes: config.preprocess.max_body_bytes,
                body_timeout: config.preprocess.body_timeout,
            },
            supervisor,
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
            batches,
        })
    }

    /// Serves HTTP on `listener` (and gRPC on `grpc`) until `shutdown` resolves, then drains:
    /// readiness 503 at once, the optional lame-duck delay, no new connections, every accepted
    /// request and call answered (bounded by the grace period), the batcher flushed, the
    /// inference threads joined.
    pub async fn run(
        self,
        listener: TcpListener,
        grpc: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            state,
            config,
            workers,
            driver,
            batches,
        } = self;
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
        let http = connections::serve(
            listener,
            http::router(state.clone()),
            config.connections,
            state.metrics.clone(),
            stopped(stopping.clone()),
            grace,
        );
        let grpc = {
            let state = state.clone();
            let stopping = stopping.clone();
            async move {
                let Some(listener) = grpc else { return Ok(()) };
                let serving = crate::grpc::serve(listener, state, stopped(stopping.clone()));
                tokio::pin!(serving);
                // The grace period runs from the stop signal, as for HTTP.
                let cut = async {
                    stopped(stopping).await;
                    tokio::time::sleep(grace).await;
                };
                tokio::select! {
                    served = &mut serving => served.context("gRPC server"),
                    () = cut => {
                        tracing::warn!(
                            grace_s = grace.as_secs(),
                            "grace period over: remaining gRPC calls cancelled"
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
        state.pipeline.close();
        let _ = driver.await;
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

/// How long answers to failed requests get to reach their clients before the process exits.
const FAILURE_FLUSH: std::time::Duration = std::time::Duration::from_millis(300);

/// Prepares the model and one warmed-up engine per session (blocking work).
///
/// fp32: the graph is optimised once (or found in the cache), its weights read once and shared
/// by every session; a batch-1 run warms each session. bf16: OpenVINO compiles the fused graph
/// in each session (blobs cached); each session runs every batch size the batcher can cut, so
/// that no request pays for a first run of its shape; then a fixed batch runs through bf16 and
/// through the fp32 CPU provider and the agreement is checked.
fn load(config: &ServeConfig) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let prepared = model::prepare(&config.source, config.cache_dir.as_deref())?;
    let engine_config = EngineConfig {
        intra_threads: config.inference.intra_threads,
        spinning: config.inference.spinning,
    };
    let crop = config.preprocess.crop.unwrap_or(prepared.info.crop) as usize;
    let sessions = config.inference.sessions;
    let library = config.ort_dylib.as_deref();
    let (engines, wide, agreement) = match config.inference.precision {
        Precision::Fp32 => {
            let shared = SharedModel::load(&prepared, library)?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                weights_mib = shared.weights_bytes() / (1 << 20),
                optimised_from_cache = shared.from_cache(),
                "weights loaded once for every session"
            );
            // One batch-1 run pays ONNX Runtime's first-run costs (kernel set-up, the thread
            // pool) before traffic. Larger batches cost no more on their first run than later
            // (measured: docs/footprint.md), so they are not run here.
            let engines = build_sessions(sessions, || shared.session(&engine_config), &[1], crop)?;
            // The wide session: every session's threads in one, for a lone image (see
            // `batching::Lanes`). It shares the weights; it adds its activations only.
            let wide = if config.inference.wide_session && sessions > 1 {
                let wide_config = EngineConfig {
                    intra_threads: config.inference.intra_threads * sessions,
                    ..engine_config
                };
                let mut wide = build_sessions(1, || shared.session(&wide_config), &[1], crop)?;
                wide.pop()
            } else {
                None
            };
            (engines, wide, None)
        }
        Precision::Bf16 => {
            let model = OpenVinoModel::load(&prepared, library)?;
            let sizes = openvino::warm_sizes(config.batching.max_batch_size);
            let mut engines =
                build_sessions(sessions, || model.session(&engine_config), &sizes, crop)?;
            let agreement = check_bf16(
                &model,
                &mut engines[0],
                crop,
                config.inference.intra_threads,
            )?;
            // bf16 runs one session with every core by default (measured best); no wide lane.
            (engines, None, Some(agreement))
        }
    };
    let model::PreparedModel {
        info, from_cache, ..
    } = prepared;
    Ok(Loaded {
        info,
        from_cache,
        engines,
        wide,
        agreement,
    })
}

/// Builds `count` sessions in parallel with `make`, each warmed up with one run of every batch
/// size in `warm_sizes`.
fn build_sessions(
    count: usize,
    make: impl Fn() -> Result<Engine, InferenceError> + Sync,
    warm_sizes: &[usize],
    crop: usize,
) -> anyhow::Result<Vec<Engine>> {
    let make = &make;
    std::thread::scope(|scope| {
        let builders: Vec<_> = (0..count)
            .map(|_| {
                scope.spawn(move || -> anyhow::Result<Engine> {
                    let mut engine = make()?;
                    let warm = Instant::now();
                    engine.warm_up(warm_sizes, crop)?;
                    tracing::info!(
                        elapsed_ms = warm.elapsed().as_millis() as u64,
                        batch_sizes = warm_sizes.len(),
                        "session warmed up"
                    );
                    Ok(engine)
                })
            })
            .collect();
        builders
            .into_iter()
            .map(|b| {
                b.join()
                    .map_err(|_| anyhow::anyhow!("building a session panicked"))?
            })
            .collect()
    })
}

/// Runs the fixed check batch through a bf16 engine and through the fp32 CPU provider of the
/// same runtime; refuses to start when the agreement shows a broken engine.
fn check_bf16(
    model: &OpenVinoModel,
    bf16: &mut Engine,
    crop: usize,
    threads: usize,
) -> anyhow::Result<Agreement> {
    let batch = openvino::check_batch(crop);
    let images = openvino::CHECK_IMAGES;
    let candidate = bf16.run(&batch, images, crop, crop)?;
    let reference = model.reference(threads)?.run(&batch, images, crop, crop)?;
    let agreement = Agreement::measure(&reference, &candidate, bf16.num_classes());
    tracing::info!(
        images = agreement.images,
        max_abs_delta = agreement.max_abs_delta,
        mean_abs_delta = agreement.mean_abs_delta,
        relative_error = agreement.relative_error,
        top1_agreement = agreement.top1_agreement,
        top5_agreement = agreement.top5_agreement,
        "bf16 against fp32 on the start-up check batch"
    );
    agreement
        .check()
        .map_err(|reason| anyhow::anyhow!("refusing to serve bf16: {reason}"))?;
    Ok(agreement)
}

/// What [`load`] hands to the serving side; nothing of the checkpoint or the graph bytes.
struct Loaded {
    info: model::ModelInfo,
    from_cache: bool,
    engines: Vec<Engine>,
    /// fp32 with several sessions: one more session with all their threads, for lone images.
    wide: Option<Engine>,
    /// bf16 only: how its logits compare with fp32 on the check batch.
    agreement: Option<Agreement>,
}

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
