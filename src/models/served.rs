//! A served model version: its pipeline, its v2 catalogue entry, and its description for the
//! APIs (`/v1/models`, `/classify`'s `model`).

use serde::Serialize;
use utoipa::ToSchema;

use crate::inference::{Agreement, Bf16Timing, Precision};
use crate::model::ModelInfo;
use crate::pipeline::Pipeline;
use crate::v2::Catalog;

/// One loaded model version.
#[derive(Debug)]
pub struct Served {
    pub name: String,
    pub version: u64,
    pub model: ServedModel,
    /// Its classification pipeline (its own batching queue and sessions; the preprocessing
    /// pool, the admission places and the core budget are shared by every version).
    pub pipeline: Pipeline,
    /// The version as the v2 protocol shows it.
    pub catalog: Catalog,
}

/// A model version as the APIs describe it.
#[derive(Debug)]
pub struct ServedModel {
    pub info: ModelInfo,
    pub labels: Vec<String>,
    pub input: InputDetails,
    pub batching: BatchingDetails,
    pub precision: Precision,
    /// bf16 only: the start-up agreement with fp32.
    pub agreement: Option<Agreement>,
    /// bf16 only: its time against fp32's on the start-up check batch.
    pub bf16_timing: Option<Bf16Timing>,
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct InputDetails {
    /// Shorter side after resize.
    pub resize: u32,
    /// Model input is `crop x crop` RGB.
    pub crop: u32,
    pub max_pixels: u64,
    pub max_body_bytes: usize,
    /// What crops are normalised with (`--mean`, `--std`; ImageNet's by default): tensors sent
    /// to the `-tensor` model must be normalised the same way.
    pub normalization: crate::preprocess::normalize::Normalization,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BatchingDetails {
    pub max_batch_size: usize,
    pub max_queue_delay_ms: u64,
    pub queue_capacity: usize,
    pub request_timeout_ms: u64,
    pub sessions: usize,
    pub intra_threads: usize,
    /// A session with every core that takes lone images (`--wide-session`, fp32).
    pub wide_session: bool,
    pub preprocess_workers: usize,
}
