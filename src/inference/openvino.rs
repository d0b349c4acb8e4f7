//! The bf16 engine: ONNX Runtime's OpenVINO execution provider over the fused graph, with
//! OpenVINO's `INFERENCE_PRECISION_HINT` set to bf16 ([`super::precision`]).
//!
//! OpenVINO compiles the whole graph itself (ONNX Runtime's own graph optimisations and the
//! shared-weights path of the fp32 engine do not apply), so sessions are built from the fused
//! ONNX bytes. Its compiled blobs are cached under the model's derived-cache folder, keyed by
//! runtime build and CPU like the fp32 optimised graph, so a later start skips the compile.
//!
//! bf16 changes the numbers. Before the server says ready, [`Agreement::measure`] compares the
//! bf16 logits of a fixed batch with fp32 logits of the same batch from the same runtime's CPU
//! provider; a result that shows a broken engine refuses the start.

use std::path::{Path, PathBuf};

use ort::ep::{self, ArbitrarilyConfigurableExecutionProvider};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use rand::SeedableRng;
use rand_distr::Distribution;
use serde::Serialize;

use super::runtime::{self, Runtime};
use super::{Engine, EngineConfig, InferenceError};
use crate::model::PreparedModel;

/// Relative error (‖bf16 − fp32‖₂ / ‖fp32‖₂ over all logits of the check batch) above which
/// the bf16 engine is taken to be broken and the start is refused. Measured on a 2-core EPYC
/// with `avx512_bf16`: 0.6 % (tiny fixture) and 1.2 % (A0 fixture) on the check batch; 0.7-5.1 %
/// per photo against PyTorch (tests/bf16.rs). A broken engine (NaN, wrong layout, garbage)
/// lands near 100 %.
pub const MAX_RELATIVE_ERROR: f32 = 0.10;

/// Images in the start-up agreement check.
pub const CHECK_IMAGES: usize = 8;

/// The fused graph and where OpenVINO may cache what it compiles from it.
pub struct OpenVinoModel {
    graph: Vec<u8>,
    blob_cache: Option<PathBuf>,
    num_classes: usize,
    library: Option<PathBuf>,
}

impl std::fmt::Debug for OpenVinoModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenVinoModel")
            .field("graph_bytes", &self.graph.len())
            .field("blob_cache", &self.blob_cache)
            .finish_non_exhaustive()
    }
}

impl OpenVinoModel {
    /// Loads the OpenVINO runtime (fails early when it is missing) and reads the fused graph.
    pub fn load(prepared: &PreparedModel, library: Option<&Path>) -> Result<Self, InferenceError> {
        runtime::environment(library, Runtime::OpenVino)?;
        let graph = prepared
            .graph
            .bytes()
            .map_err(|e| InferenceError::Runtime(e.to_string()))?
            .into_owned();
        let blob_cache = prepared.derived_cache.as_ref().map(|dir| {
            let key = super::optimized::RuntimeKey::current_for("bf16");
            dir.join(format!("openvino-{}", key.dir_name()))
        });
        Ok(Self {
            graph,
            blob_cache,
            num_classes: prepared.info.num_classes,
            library: library.map(Path::to_path_buf),
        })
    }

    /// A bf16 session on OpenVINO's CPU plugin with `config.intra_threads` threads.
    pub fn session(&self, config: &EngineConfig) -> Result<Engine, InferenceError> {
        let env = runtime::environment(self.library.as_deref(), Runtime::OpenVino)?;
        let mut provider = ep::OpenVINO::default()
            .with_device_type("CPU")
            .with_num_threads(config.intra_threads)
            .with_num_streams(1)
            .with_arbitrary_config(
                "load_config",
                r#"{"CPU":{"INFERENCE_PRECISION_HINT":"bf16"}}"#,
            );
        if let Some(dir) = &self.blob_cache {
            std::fs::create_dir_all(dir).map_err(|e| {
                InferenceError::Runtime(format!("{}: cannot create: {e}", dir.display()))
            })?;
            provider = provider.with_cache_dir(dir.display());
        }
        let session = Session::builder(env)
            .and_then(|b| Ok(b.with_intra_threads(1)?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            .and_then(|b| Ok(b.with_execution_providers([provider.build().error_on_failure()])?))
            .and_then(|mut b| b.commit_from_memory(&self.graph))
            .map_err(|e| {
                InferenceError::Runtime(format!("cannot build the OpenVINO bf16 session: {e}"))
            })?;
        Ok(Engine::from_session(session, self.num_classes))
    }

    /// An fp32 session of the same runtime's CPU provider: the reference bf16 is checked
    /// against.
    pub fn reference(&self, intra_threads: usize) -> Result<Engine, InferenceError> {
        let env = runtime::environment(self.library.as_deref(), Runtime::OpenVino)?;
        let session = Session::builder(env)
            .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
            .and_then(|b| Ok(b.with_intra_threads(intra_threads)?))
            .and_then(|mut b| b.commit_from_memory(&self.graph))
            .map_err(|e| {
                InferenceError::Runtime(format!("cannot build the fp32 reference session: {e}"))
            })?;
        Ok(Engine::from_session(session, self.num_classes))
    }
}

/// The batch sizes a bf16 session runs before ready: every size the batcher can cut
/// (1..=max_batch). OpenVINO prepares each input shape on its first run (tens of ms for A0 on
/// 2 cores); after this no request pays for it (`tests/bf16.rs`).
pub fn warm_sizes(max_batch: usize) -> Vec<usize> {
    (1..=max_batch).collect()
}

/// A fixed batch for the start-up check: `CHECK_IMAGES` normalised images (standard normal
/// noise, seeded: the same every start).
pub fn check_batch(crop: usize) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0b0f_1600);
    let normal = rand_distr::StandardNormal;
    (0..CHECK_IMAGES * 3 * crop * crop)
        .map(|_| normal.sample(&mut rng))
        .collect()
}

/// How bf16 logits compare with fp32 logits of the same images.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Agreement {
    pub images: usize,
    /// Largest |bf16 − fp32| over every logit.
    pub max_abs_delta: f32,
    pub mean_abs_delta: f32,
    /// ‖bf16 − fp32‖₂ / ‖fp32‖₂ over every logit.
    pub relative_error: f32,
    /// Share of images whose best class is the same.
    pub top1_agreement: f32,
    /// Share of images whose five best classes are the same set.
    pub top5_agreement: f32,
    /// The bound on `relative_error` above which the engine is refused.
    pub max_relative_error: f32,
}

impl Agreement {
    /// Compares `candidate` with `reference` (both `images x num_classes`, row-major).
    pub fn measure(reference: &[f32], candidate: &[f32], num_classes: usize) -> Self {
        let images = reference.len() / num_classes.max(1);
        let mut max_abs = 0f32;
        let (mut sum_abs, mut diff_sq, mut ref_sq) = (0f64, 0f64, 0f64);
        for (&r, &c) in reference.iter().zip(candidate) {
            let d = c - r;
            // NaN must not hide behind max(): it poisons the result instead.
            max_abs = if d.is_nan() {
                f32::NAN
            } else {
                max_abs.max(d.abs())
            };
            sum_abs += f64::from(d.abs());
            diff_sq += f64::from(d) * f64::from(d);
            ref_sq += f64::from(r) * f64::from(r);
        }
        let (mut top1, mut top5) = (0usize, 0usize);
        for (r, c) in reference
            .chunks_exact(num_classes)
            .zip(candidate.chunks_exact(num_classes))
        {
            let (tr, tc) = (top_k(r, 5), top_k(c, 5));
            top1 += usize::from(tr.first() == tc.first());
            let (mut sr, mut sc) = (tr.clone(), tc.clone());
            sr.sort_unstable();
            sc.sort_unstable();
            top5 += usize::from(sr == sc);
        }
        let share = |n: usize| n as f32 / images.max(1) as f32;
        Self {
            images,
            max_abs_delta: max_abs,
            mean_abs_delta: (sum_abs / reference.len().max(1) as f64) as f32,
            relative_error: ((diff_sq / ref_sq.max(f64::MIN_POSITIVE)).sqrt()) as f32,
            top1_agreement: share(top1),
            top5_agreement: share(top5),
            max_relative_error: MAX_RELATIVE_ERROR,
        }
    }

    /// `Err` with the reason when the numbers show a broken engine.
    pub fn check(&self) -> Result<(), String> {
        if !self.relative_error.is_finite() || self.max_abs_delta.is_nan() {
            return Err(format!(
                "bf16 logits are not finite (relative error {}, max |delta| {})",
                self.relative_error, self.max_abs_delta
            ));
        }
        if self.relative_error > MAX_RELATIVE_ERROR {
            return Err(format!(
                "bf16 logits differ from fp32 by a relative error of {:.4} (bound {MAX_RELATIVE_ERROR}); \
                 max |delta| {:.4}, top-1 agreement {:.0} %",
                self.relative_error,
                self.max_abs_delta,
                self.top1_agreement * 100.0
            ));
        }
        Ok(())
    }
}

/// The indices of the `k` largest values, largest first.
pub(crate) fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.truncate(k);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_of_identical_logits_is_perfect() {
        let logits: Vec<f32> = (0..20).map(|i| (i % 7) as f32 - 3.0).collect();
        let a = Agreement::measure(&logits, &logits, 10);
        assert_eq!(a.images, 2);
        assert_eq!(a.max_abs_delta, 0.0);
        assert_eq!(a.relative_error, 0.0);
        assert_eq!((a.top1_agreement, a.top5_agreement), (1.0, 1.0));
        assert!(a.check().is_ok());
    }

    #[test]
    fn nan_and_large_errors_are_refused() {
        let reference = vec![1.0, 2.0, 3.0, 4.0];
        let mut nan = reference.clone();
        nan[1] = f32::NAN;
        let refused = Agreement::measure(&reference, &nan, 2).check();
        assert!(refused.expect_err("NaN").contains("not finite"));
        let swapped = vec![2.0, 1.0, 4.0, 3.0];
        let a = Agreement::measure(&reference, &swapped, 2);
        assert_eq!(a.top1_agreement, 0.0);
        assert!((a.relative_error - (4.0f32 / 30.0).sqrt()).abs() < 1e-6);
        assert!(a.check().expect_err("too far").contains("relative error"));
    }
}
