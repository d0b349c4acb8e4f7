//! One ONNX Runtime session and how to run a batch through it. An `Engine` is owned by exactly
//! one thread (`Session::run` takes `&mut self`); the serving layer gives each its own thread.
//!
//! The inference threads see an engine only as a [`Backend`]: run a batch, say how many logits
//! an image gets. That is all the batching layer needs, so its tests can run on a fake backend
//! (deterministic logits, gates, failures on demand) as well as on ONNX Runtime.

use std::path::Path;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::{runtime, InferenceError};
use crate::model::onnx::{INPUT, OUTPUT};

/// Session settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Threads ONNX Runtime uses inside one operator (the main speed knob on CPU).
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin waiting for work (lower latency, burns CPU).
    pub spinning: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            intra_threads: std::thread::available_parallelism().map_or(1, usize::from),
            spinning: false,
        }
    }
}

/// What an inference thread runs its batches on: an [`Engine`] in service, a fake in the
/// batching layer's tests. Owned by one thread at a time.
pub trait Backend: Send + std::fmt::Debug {
    /// Logits per image.
    fn num_classes(&self) -> usize;

    /// Runs `batch` NCHW images of `height x width` (`input.len() == batch * 3 * height *
    /// width`) and returns `batch * num_classes` logits, image after image.
    fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>, InferenceError>;
}

/// A session over one model, with its output width.
#[derive(Debug)]
pub struct Engine {
    session: Session,
    num_classes: usize,
}

impl Engine {
    /// Builds a standalone session from ONNX bytes (loading the runtime library on first use);
    /// it optimises the graph itself and owns its weights. The server builds its sessions from
    /// a [`super::SharedModel`] instead.
    pub fn new(
        onnx: &[u8],
        num_classes: usize,
        config: &EngineConfig,
        library: Option<&Path>,
    ) -> Result<Self, InferenceError> {
        let env = runtime::environment(library, runtime::Runtime::Cpu)?;
        let session = Session::builder(env)
            .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
            .and_then(|b| Ok(b.with_intra_threads(config.intra_threads)?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            .and_then(|b| Ok(b.with_intra_op_spinning(config.spinning)?))
            .and_then(|mut b| b.commit_from_memory(onnx))
            .map_err(|e| InferenceError::Runtime(format!("cannot build the session: {e}")))?;
        Ok(Self::from_session(session, num_classes))
    }

    pub(crate) fn from_session(session: Session, num_classes: usize) -> Self {
        Self {
            session,
            num_classes,
        }
    }

    /// One run of each batch size in `sizes` (zeros, `crop x crop`): pays first-run costs
    /// (kernel set-up, thread pools; OpenVINO's per-shape preparation) before traffic, and
    /// checks that every logit is finite, so that weights holding NaN or infinities (a diverged
    /// training run, a damaged file that still parses) are refused before they are routable.
    pub fn warm_up(&mut self, sizes: &[usize], crop: usize) -> Result<(), InferenceError> {
        for &size in sizes {
            let logits = self.run(&vec![0.0; size * 3 * crop * crop], size, crop, crop)?;
            let bad = logits.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(InferenceError::NonFinite {
                    bad,
                    total: logits.len(),
                    batch: size,
                });
            }
        }
        Ok(())
    }
}

impl Backend for Engine {
    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>, InferenceError> {
        let tensor = TensorRef::from_array_view(([batch, 3, height, width], input))
            .map_err(|e| InferenceError::Runtime(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![INPUT => tensor])
            .map_err(|e| InferenceError::Runtime(e.to_string()))?;
        let (shape, logits) = outputs[OUTPUT]
            .try_extract_tensor::<f32>()
            .map_err(|e| InferenceError::Runtime(e.to_string()))?;
        let expected = [batch as i64, self.num_classes as i64];
        if shape[..] != expected {
            return Err(InferenceError::Runtime(format!(
                "model output has shape {shape:?}, expected {expected:?}"
            )));
        }
        Ok(logits.to_vec())
    }
}
