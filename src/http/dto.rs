//! Response bodies (and their OpenAPI schemas).

use serde::Serialize;
use utoipa::ToSchema;

use crate::inference::{Agreement, Bf16Timing, Precision};
use crate::model::{Dialect, Form};
use crate::models::{BatchingDetails, InputDetails};

/// The model that answered, in every `/classify` response.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ModelRef {
    /// The model's name and the version that answered.
    pub name: String,
    pub version: u64,
    /// Named variant (A0 ... D2se), or null for a custom architecture.
    pub variant: Option<String>,
    pub num_classes: usize,
    /// True when the service runs random demo weights: predictions are meaningless.
    pub demo: bool,
    pub checkpoint_sha256: Option<String>,
}

impl From<&crate::models::Served> for ModelRef {
    fn from(served: &crate::models::Served) -> Self {
        let info = &served.model.info;
        Self {
            name: served.name.clone(),
            version: served.version,
            variant: info.variant.clone(),
            num_classes: info.num_classes,
            demo: info.demo,
            checkpoint_sha256: info.checkpoint_sha256.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Prediction {
    pub class_id: usize,
    pub label: String,
    /// Softmax probability.
    pub probability: f32,
}

/// Where an image's time went (milliseconds).
#[derive(Clone, Copy, Debug, Default, Serialize, ToSchema)]
pub struct TimingsMs {
    /// Waiting in the batching queue.
    pub queue: f64,
    /// Decode, resize and crop.
    pub preprocess: f64,
    /// The ONNX Runtime run of the image's batch.
    pub inference: f64,
    /// From the request's arrival to the answer.
    pub total: f64,
}

impl From<crate::metrics::StageTimings> for TimingsMs {
    fn from(t: crate::metrics::StageTimings) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Self {
            queue: ms(t.queue),
            preprocess: ms(t.preprocess),
            inference: ms(t.inference),
            total: ms(t.total),
        }
    }
}

/// One classified image.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Classification {
    /// Best first.
    pub predictions: Vec<Prediction>,
    pub timings_ms: TimingsMs,
    /// Raw model outputs in class order (only with `logits=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<f32>>,
}

/// Answer for a request with one image.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassifyResponse {
    pub model: ModelRef,
    #[serde(flatten)]
    pub result: Classification,
}

/// Answer for a request with several images: one entry per image, in request order. An image
/// that failed carries `error` and `error_type` instead of predictions; the others are
/// answered normally (status 200). When every image fails, the request fails with the first
/// image's error status.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchClassifyResponse {
    pub model: ModelRef,
    pub results: Vec<ImageResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImageResult {
    /// Position in the request.
    pub index: usize,
    /// Multipart part name (or file name), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub result: Option<Classification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsResponse {
    pub models: Vec<ModelDetails>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDetails {
    /// The model's name (`--model-name`, or its directory in the repository).
    pub name: String,
    pub version: u64,
    pub variant: Option<String>,
    pub num_classes: usize,
    pub demo: bool,
    pub fused: bool,
    pub checkpoint_sha256: Option<String>,
    /// Checkpoint or ONNX file name (not its path on the host), or a description of the demo
    /// weights.
    pub source: String,
    /// Checkpoint naming (official / timm), when loaded from a checkpoint.
    #[schema(value_type = Option<String>)]
    pub dialect: Option<Dialect>,
    /// Checkpoint form (train / deploy), when loaded from a checkpoint.
    #[schema(value_type = Option<String>)]
    pub form: Option<Form>,
    pub input: InputDetails,
    pub batching: BatchingDetails,
    /// `fp32` or `bf16` (`--precision`).
    #[schema(value_type = String)]
    pub precision: Precision,
    /// `onnxruntime-cpu` (fp32) or `onnxruntime-openvino` (bf16).
    pub engine: &'static str,
    /// bf16 only: its logits against fp32's on the start-up check batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bf16_agreement: Option<Agreement>,
    /// bf16 only: its time per image against fp32's on the start-up check batch (bf16 is
    /// served only when faster by `--bf16-min-speedup`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bf16_timing: Option<Bf16Timing>,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}
