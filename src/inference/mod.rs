//! ONNX Runtime: the process-wide environment and sessions that run batches.

pub mod bf16_speed;
mod engine;
#[cfg(test)]
pub(crate) mod fake;
mod input;
pub mod openvino;
mod optimized;
pub mod precision;
pub mod runtime;
mod shared;

pub use bf16_speed::Bf16Timing;
pub use engine::{Backend, Engine, EngineConfig};
pub use input::{batch_tensor, InputShape, ModelInput};
pub use openvino::{Agreement, OpenVinoModel};
pub use precision::Precision;
pub use shared::SharedModel;

/// Failures of the inference layer. `Clone`, because one failed batch fails every request in it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(
        "ONNX Runtime library not found (tried: {tried}). Fetch it with: {command}, or point \
         --ort-dylib / ORT_DYLIB_PATH at {library}"
    )]
    LibraryMissing {
        library: &'static str,
        tried: String,
        command: &'static str,
    },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The model answered NaN or infinity (its weights are broken); checked before serving.
    #[error(
        "the model's logits are not finite: {bad} of {total} NaN or infinite on a warm-up batch \
         of {batch} blank images (the weights hold NaN or infinities)"
    )]
    NonFinite {
        bad: usize,
        total: usize,
        batch: usize,
    },
    /// A part of the pipeline died; the server is going down.
    #[error("the serving pipeline failed ({0}); the server is restarting")]
    Failed(String),
}
