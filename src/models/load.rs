//! Start-up's blocking half: checkpoint -> fused graph -> warmed-up engines (and, for bf16,
//! the agreement check and the speed check against fp32), off the async runtime.

use std::time::{Duration, Instant};

use crate::config::{ModelPlan, ServeConfig};
use crate::inference::{
    openvino, precision::CpuBf16, Agreement, Backend, Bf16Timing, Engine, EngineConfig,
    InferenceError, OpenVinoModel, Precision, SharedModel,
};
use crate::model;

/// Prepares the model and one warmed-up engine per session (blocking work).
///
/// fp32: the graph is optimised once (or found in the cache), its weights read once and shared
/// by every session; a batch-1 run warms each session. bf16: OpenVINO compiles the fused graph
/// in each session (blobs cached); each session runs every batch size the batcher can cut, so
/// that no request pays for a first run of its shape; then a fixed batch runs through bf16 and
/// through the fp32 CPU provider, the agreement is checked and both are timed (bf16 must be
/// faster by `--bf16-min-speedup`). Every warm-up run's logits must be finite.
///
/// The checkpoint's reading and fusion and fp32's graph optimisation, most of a load's CPU
/// time, run `--load-nice` below serving (see [`niced`]), so that a reload takes the cores that
/// serving leaves idle; the sessions are built and warmed at serving priority.
pub(crate) fn load(config: &ServeConfig, plan: &ModelPlan) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let library = config.ort_dylib.as_deref();
    let precision = config.inference.precision;
    let (prepared, shared) = niced(config.load_nice, || -> anyhow::Result<_> {
        let prepared = model::prepare(&plan.source, config.cache_dir.as_deref())?;
        let shared = match precision {
            Precision::Fp32 => Some(SharedModel::load(&prepared, library)?),
            Precision::Bf16 => None,
        };
        Ok((prepared, shared))
    })??;
    let engine_config = EngineConfig {
        intra_threads: plan.intra_threads,
        spinning: config.inference.spinning,
    };
    let crop = plan.crop.unwrap_or(prepared.info.crop) as usize;
    let sessions = plan.sessions;
    let (engines, wide, bf16_check, warm_up_per_image) = match shared {
        Some(shared) => {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                weights_mib = shared.weights_bytes() / (1 << 20),
                optimised_from_cache = shared.from_cache(),
                "weights loaded once for every session"
            );
            // One batch-1 run pays ONNX Runtime's first-run costs (kernel set-up, the thread
            // pool) before traffic. Larger batches cost no more on their first run than later
            // (measured: docs/footprint.md), so they are not run here.
            let (engines, warm) =
                build_sessions(sessions, || shared.session(&engine_config), &[1], crop)?;
            // The wide session: every session's threads in one, for a lone image (see
            // `batching::Lanes`). It shares the weights; it adds its activations only.
            let wide = if config.inference.wide_session && sessions > 1 {
                let wide_config = EngineConfig {
                    intra_threads: plan.intra_threads * sessions,
                    ..engine_config
                };
                let (mut wide, _) = build_sessions(1, || shared.session(&wide_config), &[1], crop)?;
                wide.pop()
            } else {
                None
            };
            (engines, wide, None, warm)
        }
        None => {
            let model = OpenVinoModel::load(&prepared, library)?;
            let sizes = openvino::warm_sizes(plan.max_batch_size);
            let (mut engines, warm) =
                build_sessions(sessions, || model.session(&engine_config), &sizes, crop)?;
            let check = check_bf16(&model, &mut engines[0], crop, plan.intra_threads, config)?;
            // bf16 runs one session with every core by default (measured best); no wide lane.
            (engines, None, Some(check), warm)
        }
    };
    let model::PreparedModel {
        info, from_cache, ..
    } = prepared;
    Ok(Loaded {
        info,
        from_cache,
        engines: engines
            .into_iter()
            .map(|e| Box::new(e) as Box<dyn Backend>)
            .collect(),
        wide: wide.map(|e| Box::new(e) as Box<dyn Backend>),
        bf16_check,
        warm_up_per_image,
    })
}

/// Runs `work` on a thread of its own, `nice` steps below the caller's priority (at most nice
/// 19; 0: the caller's), and waits for it. Against threads of serving priority a thread at
/// nice 10 gets about a tenth of a core (CFS weights 110 against 1024), and all of an idle one.
///
/// Threads inherit their creator's nice value, and an unprivileged process cannot raise it
/// back, so only work that starts no thread outliving it may run here: never the sessions,
/// whose thread pools serve afterwards (ONNX Runtime's graph optimisation runs on the calling
/// thread, and the session it uses ends with it).
fn niced<T: Send>(nice: i32, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("model-prepare".into())
            .spawn_scoped(scope, move || {
                if nice > 0 {
                    let tid = Some(rustix::thread::gettid());
                    let lowered = rustix::process::getpriority_process(tid).and_then(|current| {
                        rustix::process::setpriority_process(tid, (current + nice).min(19))
                    });
                    if let Err(e) = lowered {
                        tracing::warn!(nice, error = %e, "the load runs at serving priority");
                    }
                }
                work()
            })?;
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("preparing the model panicked"))
    })
}

/// Builds `count` sessions in parallel with `make`, each warmed up with one run of every batch
/// size in `warm_sizes`; with them, the slowest session's warm-up time per image (the
/// inference watchdog's yardstick).
///
/// Each is built on a thread named `engine-N`: the threads the engines start for themselves
/// (ONNX Runtime's intra-op pool, OpenVINO's TBB workers, created on the first run) inherit
/// the name of the thread that creates them, so `top -H` and profiles show engine work as
/// `engine-N` instead of under the async runtime's thread name.
fn build_sessions(
    count: usize,
    make: impl Fn() -> Result<Engine, InferenceError> + Sync,
    warm_sizes: &[usize],
    crop: usize,
) -> anyhow::Result<(Vec<Engine>, Duration)> {
    let make = &make;
    let images = warm_sizes.iter().sum::<usize>().max(1) as u32;
    std::thread::scope(|scope| {
        let builders = (0..count)
            .map(|n| {
                std::thread::Builder::new()
                    .name(format!("engine-{n}"))
                    .spawn_scoped(scope, move || -> anyhow::Result<(Engine, Duration)> {
                        let mut engine = make()?;
                        let warm = Instant::now();
                        engine.warm_up(warm_sizes, crop)?;
                        let elapsed = warm.elapsed();
                        tracing::info!(
                            elapsed_ms = elapsed.as_millis() as u64,
                            batch_sizes = warm_sizes.len(),
                            "session warmed up"
                        );
                        Ok((engine, elapsed / images))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let built = builders
            .into_iter()
            .map(|b| {
                b.join()
                    .map_err(|_| anyhow::anyhow!("building a session panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let slowest = built.iter().map(|(_, per_image)| *per_image).max();
        let engines = built.into_iter().map(|(engine, _)| engine).collect();
        Ok((engines, slowest.unwrap_or_default()))
    })
}

/// Runs the fixed check batch through a bf16 engine and through the fp32 CPU provider of the
/// same runtime (as many threads); refuses to start when the agreement shows a broken engine,
/// or when bf16 is not faster than fp32 by the margin.
fn check_bf16(
    model: &OpenVinoModel,
    bf16: &mut Engine,
    crop: usize,
    intra_threads: usize,
    config: &ServeConfig,
) -> anyhow::Result<Bf16Check> {
    let batch = openvino::check_batch(crop);
    let images = openvino::CHECK_IMAGES;
    let candidate = bf16.run(&batch, images, crop, crop)?;
    let mut fp32 = model.reference(intra_threads)?;
    let reference = fp32.run(&batch, images, crop, crop)?;
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
    // Both engines have run this batch once above, so no first-run cost is timed.
    let timing = Bf16Timing::measure(
        || fp32.run(&batch, images, crop, crop).map(drop),
        || bf16.run(&batch, images, crop, crop).map(drop),
        images,
        config.inference.bf16_min_speedup,
    )?;
    tracing::info!(
        images = timing.images,
        fp32_ms_per_image = timing.fp32_ms_per_image,
        bf16_ms_per_image = timing.bf16_ms_per_image,
        speedup = timing.speedup,
        min_speedup = timing.min_speedup,
        forced = timing.forced,
        "bf16 against fp32: time on the start-up check batch"
    );
    let cpu = CpuBf16::detect();
    timing
        .check(&format!("{}, {}", cpu.model, cpu.flags.join(" ")))
        .map_err(|reason| anyhow::anyhow!("refusing to serve bf16: {reason}"))?;
    Ok(Bf16Check { agreement, timing })
}

/// What start-up measured of bf16 against fp32 (`/v1/models`).
pub(crate) struct Bf16Check {
    pub(crate) agreement: Agreement,
    pub(crate) timing: Bf16Timing,
}

/// What [`load`] hands to the serving side; nothing of the checkpoint or the graph bytes.
pub(crate) struct Loaded {
    pub(crate) info: model::ModelInfo,
    pub(crate) from_cache: bool,
    pub(crate) engines: Vec<Box<dyn Backend>>,
    /// fp32 with several sessions: one more session with all their threads, for lone images.
    pub(crate) wide: Option<Box<dyn Backend>>,
    /// bf16 only: how its logits and its speed compare with fp32 on the check batch.
    pub(crate) bf16_check: Option<Bf16Check>,
    /// The slowest session's warm-up time per image.
    pub(crate) warm_up_per_image: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority")
    }

    #[test]
    fn niced_work_runs_below_the_caller_and_the_caller_keeps_its_priority() {
        let caller = own_nice();
        let inside = niced(10, own_nice).expect("thread");
        assert_eq!(inside, (caller + 10).min(19));
        assert_eq!(niced(0, own_nice).expect("thread"), caller);
        assert_eq!(own_nice(), caller);
    }
}
