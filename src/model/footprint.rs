//! What serving a network will cost: expected steady memory and time to ready for a serving
//! layout (sessions x largest batch), from a formula fitted to `make footprint`'s measurements
//! on 2 cores (docs/footprint.md puts the measurements and these estimates side by side).
//!
//! ```text
//! steady RSS  = BASE + weights + sessions x max_batch x ACTIVATION_FACTOR x peak block I/O
//! ready, from the cache  = CACHED_BASE + weights / READ_RATE + batch-1 run (MACs / MAC_RATE)
//! ready, cold            = that + weights / FUSE_RATE
//! peak RSS, cold start   = max(steady, BASE + COLD_PEAK_FACTOR x weights)
//! ```
//!
//! Fitted on AMD EPYC (Zen 4, AVX-512), one intra-op thread per session, glibc with
//! `MALLOC_MMAP_THRESHOLD_=4194304` as in the container image. Against the 14 variants the
//! steady-memory estimates land within -8 % .. +16 % of the measurements (D2se is the
//! one underestimated): size limits with headroom, as `deploy/` does.
//!
//! Weights are held once whatever the number of sessions; activations are per session (each
//! keeps an arena sized by the largest batch it has run).

use serde::Serialize;

use super::arch::Architecture;
use super::{variants, Checkpoint, ModelError, ModelSource, RepVgg};

const MIB: f64 = 1024.0 * 1024.0;
/// Process, ONNX Runtime, HTTP, preprocessing buffers (MiB).
const BASE_MIB: f64 = 90.0;
/// Arena bytes per byte of the largest block's input + output activations.
const ACTIVATION_FACTOR: f64 = 1.25;
/// Fixed cost of a start from the cache: process, runtime, threads (s).
const CACHED_BASE_S: f64 = 0.045;
/// Hashing the checkpoint and reading the optimised weights (MiB/s).
const READ_RATE_MIB_S: f64 = 635.0;
/// Reading, fusing, exporting and ONNX Runtime's optimisation of a checkpoint (MiB/s).
const FUSE_RATE_MIB_S: f64 = 85.0;
/// Multiply-adds per second of one single-threaded session (the warm-up's batch-1 run).
const MAC_RATE: f64 = 50e9;
/// Extra peak of a cold start (fusion holds checkpoint, fused tensors and graph at once).
const COLD_PEAK_FACTOR: f64 = 3.8;

/// The serving layout the estimate is for.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Layout {
    pub sessions: usize,
    pub max_batch_size: usize,
    pub crop: usize,
}

/// `inspect`'s estimate of what serving costs.
#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    pub layout: Layout,
    pub weights_mib: f64,
    /// Largest block's input + output activations for one image.
    pub activation_mib_per_image: f64,
    pub expected_steady_rss_mib: f64,
    pub expected_cold_peak_rss_mib: f64,
    pub expected_ready_cached_s: f64,
    pub expected_ready_cold_s: f64,
    /// `instant` (< 0.5 s), `seconds` (< 3 s), `slow` (< 10 s) or `very slow`, from the cache.
    pub startup_class: &'static str,
}

impl Footprint {
    pub fn estimate(arch: &Architecture, layout: Layout) -> Self {
        let weights = (arch.params_deploy() * 4) as f64 / MIB;
        let activation = (arch.peak_block_io(layout.crop) * 4) as f64 / MIB;
        let per_session = layout.max_batch_size as f64 * ACTIVATION_FACTOR * activation;
        let steady = BASE_MIB + weights + layout.sessions as f64 * per_session;
        let warm_up = arch.macs(layout.crop) as f64 / MAC_RATE;
        let cached = CACHED_BASE_S + weights / READ_RATE_MIB_S + warm_up;
        let cold = cached + weights / FUSE_RATE_MIB_S;
        Self {
            layout,
            weights_mib: round(weights),
            activation_mib_per_image: round(activation),
            expected_steady_rss_mib: round(steady),
            expected_cold_peak_rss_mib: round(steady.max(BASE_MIB + COLD_PEAK_FACTOR * weights)),
            expected_ready_cached_s: round(cached),
            expected_ready_cold_s: round(cold),
            startup_class: match cached {
                t if t < 0.5 => "instant",
                t if t < 3.0 => "seconds",
                t if t < 10.0 => "slow",
                _ => "very slow",
            },
        }
    }
}

impl Footprint {
    /// What a cold start of this model adds to a process that already runs (its peak, fusion
    /// included, without the process's own base): what a load beside served models needs.
    pub fn added_peak_mib(&self) -> f64 {
        round(self.expected_cold_peak_rss_mib - BASE_MIB)
    }

    /// The estimate for `source` served with `sessions` sessions and batches up to
    /// `max_batch_size` (at `crop`, or the variant's): a checkpoint is read and its architecture
    /// worked out (not fused); an ONNX model's variant comes from the metadata `export` wrote.
    /// `None` when the architecture cannot be known without loading (an ONNX model from
    /// elsewhere, the demo).
    pub fn of_source(
        source: &ModelSource,
        sessions: usize,
        max_batch_size: usize,
        crop: Option<u32>,
    ) -> Result<Option<Self>, ModelError> {
        let arch = match source {
            ModelSource::Checkpoint(path) => RepVgg::from_checkpoint(Checkpoint::load(path)?)?.arch,
            ModelSource::Onnx(path) => {
                let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
                let info = super::prepare::info_from_onnx(path, &bytes)?;
                let variant = info.variant.as_deref().and_then(variants::find);
                match variant {
                    Some(v) => v.architecture(info.num_classes),
                    None => return Ok(None),
                }
            }
            ModelSource::Demo { .. } => return Ok(None),
        };
        let crop = crop.unwrap_or_else(|| variants::of(&arch).map_or(224, |v| v.crop));
        let layout = Layout {
            sessions,
            max_batch_size,
            crop: crop as usize,
        };
        Ok(Some(Self::estimate(&arch, layout)))
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
