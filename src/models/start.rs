//! One model version brought up: loaded and warmed up (off the async runtime), its inference
//! threads, its watchdog and its batcher started on what every version shares (the
//! preprocessing pool, the admission places, the core budget, the metrics, the supervisor);
//! and brought down again ([`Running::stop`]).

use std::sync::Arc;

use anyhow::Context;

use super::load::Loaded;
use super::{BatchingDetails, InputDetails, Served, ServedModel};
use crate::admission::Admissions;
use crate::batching::queue::QueueConfig;
use crate::batching::{Batch, Batcher, Lanes, Watchdog, Workers};
use crate::config::{ModelPlan, ServeConfig};
use crate::cores::Cores;
use crate::inference::InputShape;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::preprocess::pool::PreprocessPool;
use crate::preprocess::PreprocessConfig;
use crate::supervise::Supervisor;

/// How a version's weights become warmed-up engines (blocking; run on a thread of its own):
/// [`super::load::load`] in service, a fake backend in tests of the layers above the engine.
pub(crate) type Loader =
    Arc<dyn Fn(&ServeConfig, &ModelPlan) -> anyhow::Result<Loaded> + Send + Sync>;

/// What every version draws on.
pub(crate) struct Shared {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) supervisor: Supervisor,
    pub(crate) pool: Arc<PreprocessPool>,
    pub(crate) admissions: Admissions,
    pub(crate) cores: Cores,
    pub(crate) loader: Loader,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("admissions", &self.admissions)
            .field("cores", &self.cores)
            .finish_non_exhaustive()
    }
}

/// A started version and the parts its shutdown needs.
#[derive(Debug)]
pub(super) struct Running {
    pub(super) served: Arc<Served>,
    pub(super) workers: Workers,
    pub(super) driver: tokio::task::JoinHandle<()>,
    pub(super) watchdog: tokio::task::JoinHandle<()>,
    /// The inference threads' channels, kept to fail the batches a dead thread leaves in them.
    pub(super) batches: Vec<crossbeam_channel::Receiver<Batch>>,
    /// Whether the weights came from the fused-model cache.
    pub(super) from_cache: bool,
    /// What it was started from: a load restarts a version whose settings or weights file
    /// changed since.
    pub(super) plan: ModelPlan,
    pub(super) file: Option<FileStamp>,
}

/// A weights file's path, length and modification time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp(std::path::PathBuf, u64, Option<std::time::SystemTime>);

impl FileStamp {
    /// The stamp of the file `plan` loads (none for the demo weights).
    pub(super) fn of(plan: &ModelPlan) -> Option<Self> {
        let path = plan.source.path()?;
        let meta = std::fs::metadata(path).ok()?;
        Some(Self(path.to_owned(), meta.len(), meta.modified().ok()))
    }
}

/// Loads (and fuses) `plan`'s weights, builds and warms up its sessions, starts its threads.
pub(super) async fn start(
    config: &ServeConfig,
    plan: &ModelPlan,
    shared: &Shared,
) -> anyhow::Result<Running> {
    let (load_config, load_plan, loader) = (config.clone(), plan.clone(), shared.loader.clone());
    let Loaded {
        info,
        from_cache,
        engines,
        wide,
        bf16_check,
        warm_up_per_image,
    } = tokio::task::spawn_blocking(move || {
        // On a thread of its own that ends with the load (fusion, the shared weights; sessions
        // are built and warmed on threads of their own inside): whatever the libraries keep per
        // thread goes with it, instead of staying with a thread of tokio's blocking pool. In the
        // reload memory test it made resident bumps after a cycle rarer; the cause is not pinned.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("model-load".into())
                .spawn_scoped(scope, || loader(&load_config, &load_plan))
                .map(|thread| thread.join())
        })
    })
    .await
    .context("model loading panicked")?
    .context("no thread for the load")?
    .map_err(|_| anyhow::anyhow!("model loading panicked"))?
    .with_context(|| {
        let file = plan.source.path().map(|p| p.display().to_string());
        format!(
            "model {} version {} ({})",
            plan.name,
            plan.version,
            file.as_deref().unwrap_or("demo weights")
        )
    })?;
    if info.demo {
        tracing::warn!(
            "DEMO MODEL ({}): RANDOM weights, predictions are meaningless. \
             Pass --checkpoint FILE (or --model FILE.onnx) to serve real weights.",
            info.source
        );
    }
    let labels = crate::labels::load(plan.labels.as_deref(), info.num_classes)?;
    let preprocess = PreprocessConfig {
        resize: plan.resize.unwrap_or(info.resize),
        crop: plan.crop.unwrap_or(info.crop),
        max_pixels: config.preprocess.max_pixels,
        jpeg_dct_scaling: config.preprocess.jpeg_dct_scaling,
    };
    if preprocess.crop > preprocess.resize {
        anyhow::bail!(
            "model {} version {}: crop {} is larger than resize {}",
            plan.name,
            plan.version,
            preprocess.crop,
            preprocess.resize
        );
    }
    let precision = config.inference.precision;
    let metrics = shared.metrics.for_model(&plan.name, plan.version);
    metrics.set_info(
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
        plan.max_batch_size,
    ));
    tracing::info!(
        model = plan.name,
        version = plan.version,
        bound_ms = watchdog.bound().as_millis() as u64,
        "inference watchdog: a batch running longer fails the process"
    );
    let workers = Workers::spawn(
        paired,
        shape,
        metrics.clone(),
        &shared.supervisor,
        &watchdog,
    );
    let watchdog = tokio::spawn(watchdog.watch(shared.supervisor.clone()));
    let b = &config.batching;
    let run_cores = u32::try_from(plan.intra_threads).unwrap_or(u32::MAX);
    let (batcher, driver) = Batcher::start(
        QueueConfig {
            max_batch: plan.max_batch_size,
            max_delay: b.max_queue_delay,
            capacity: b.queue_capacity,
            keep_warm: b.keep_warm,
        },
        plan.sessions,
        Lanes {
            narrow: narrow_tx,
            wide: wide_tx,
        },
        (shared.cores.clone(), run_cores),
        shared.admissions.clone(),
        metrics.clone(),
        shared.supervisor.clone(),
    );
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
            max_batch_size: plan.max_batch_size,
            max_queue_delay_ms: b.max_queue_delay.as_millis() as u64,
            queue_capacity: b.queue_capacity,
            request_timeout_ms: b.request_timeout.as_millis() as u64,
            sessions: plan.sessions,
            intra_threads: plan.intra_threads,
            wide_session,
            preprocess_workers: config.preprocess.workers,
        },
        precision,
        agreement: bf16_check.as_ref().map(|c| c.agreement.clone()),
        bf16_timing: bf16_check.map(|c| c.timing),
        info,
    };
    let catalog = crate::v2::Catalog::new(&plan.name, shape, Arc::new(model.labels.clone()));
    let pipeline = Pipeline::new(
        (shared.pool.clone(), preprocess),
        shared.cores.clone(),
        batcher,
        metrics,
        shape,
    );
    Ok(Running {
        file: FileStamp::of(plan),
        plan: plan.clone(),
        served: Arc::new(Served {
            name: plan.name.clone(),
            version: plan.version,
            model,
            pipeline,
            catalog,
        }),
        workers,
        driver,
        watchdog,
        batches,
        from_cache,
    })
}

impl Running {
    /// Stops this version once nobody uses it: waits (at most `wait`) until no request holds
    /// it any more (the routing table no longer has it, so none can start), then closes its
    /// queue, lets its driver end, joins its inference threads. The sessions and the weights
    /// are freed when the threads end.
    pub(super) async fn stop(self, wait: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while Arc::strong_count(&self.served) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.served.pipeline.close();
        let _ = self.driver.await;
        self.watchdog.abort();
        let workers = self.workers;
        let served = self.served;
        let _ = tokio::task::spawn_blocking(move || {
            workers.join();
            drop(served); // the last handle: the pipeline, the labels
            crate::memory::release_freed();
        })
        .await;
    }

    /// The pipeline failed: every job queued or handed to a thread of this version is answered
    /// with `cause` now.
    pub(super) fn fail(&self, cause: &str) {
        self.served.pipeline.fail_queued(cause);
        self.served.pipeline.close();
        for batch in self.batches.iter().flat_map(|b| b.try_iter()) {
            for job in batch.jobs {
                let _ = job.reply.send(Err(crate::inference::InferenceError::Failed(
                    cause.to_owned(),
                )));
            }
        }
    }
}
