//! Start-up's blocking half: checkpoint -> fused graph -> warmed-up engines (and, for bf16,
//! the agreement check and the speed check against fp32), off the async runtime.

use std::time::{Duration, Instant};

use crate::config::{ModelPlan, ServeConfig};
use crate::inference::{
    openvino, precision::CpuBf16, Agreement, Bf16Timing, Engine, EngineConfig, InferenceError,
    OpenVinoModel, Precision, SharedModel,
};
use crate::model;

/// Prepares the model and one warmed-up engine per session (blocking work).
///
/// fp32: the graph is optimised once (or found in the cache), its weights read once and shared
/// by every session; a batch-1 run warms each session. bf16: OpenVINO compiles the fused graph
/// in each session (blobs cached); each session runs every batch size the batcher can cut, so
/// that no request pays for a first run of its shape; then a fixed batch runs through bf16 and
/// through the fp32 CPU provider, the agreement is checked and both are timed (bf16 must be
/// faster by `--bf16-min-speedup`).
pub(super) fn load(config: &ServeConfig, plan: &ModelPlan) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let prepared = model::prepare(&plan.source, config.cache_dir.as_deref())?;
    let engine_config = EngineConfig {
        intra_threads: plan.intra_threads,
        spinning: config.inference.spinning,
    };
    let crop = plan.crop.unwrap_or(prepared.info.crop) as usize;
    let sessions = plan.sessions;
    let library = config.ort_dylib.as_deref();
    let (engines, wide, bf16_check, warm_up_per_image) = match config.inference.precision {
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
        Precision::Bf16 => {
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
        engines,
        wide,
        bf16_check,
        warm_up_per_image,
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
pub(super) struct Bf16Check {
    pub(super) agreement: Agreement,
    pub(super) timing: Bf16Timing,
}

/// What [`load`] hands to the serving side; nothing of the checkpoint or the graph bytes.
pub(super) struct Loaded {
    pub(super) info: model::ModelInfo,
    pub(super) from_cache: bool,
    pub(super) engines: Vec<Engine>,
    /// fp32 with several sessions: one more session with all their threads, for lone images.
    pub(super) wide: Option<Engine>,
    /// bf16 only: how its logits and its speed compare with fp32 on the check batch.
    pub(super) bf16_check: Option<Bf16Check>,
    /// The slowest session's warm-up time per image.
    pub(super) warm_up_per_image: Duration,
}
