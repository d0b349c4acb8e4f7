//! The HTTP surface: routes, shared state, the error mapping and the OpenAPI document.
//!
//! `router(state)` builds the app without a socket (tests use it with `oneshot` or bind
//! `127.0.0.1:0`); [`connections::serve`] runs it on a listener with the connection limits and
//! the graceful shutdown, and `crate::server` wires the two.

pub(crate) mod body;
mod classify;
pub mod connections;
mod dto;
mod error;
mod health;
mod observe;
pub mod openapi;
pub(crate) mod v2;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use dto::{BatchingDetails, InputDetails, ModelDetails, ModelsResponse};
pub use error::ApiError;

use crate::inference::{Agreement, Precision};
use crate::metrics::Metrics;
use crate::model::ModelInfo;
use crate::pipeline::Pipeline;

/// Handles shared by every handler; cloning is cheap.
#[derive(Clone, Debug)]
pub struct AppState {
    pub model: Arc<ServedModel>,
    /// The classification pipeline every route calls.
    pub pipeline: Pipeline,
    /// The models as the v2 protocol (REST and gRPC) shows them.
    pub catalog: crate::v2::Catalog,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub limits: Limits,
    /// Where the pipeline's parts report their death (and tests inject faults).
    pub supervisor: crate::supervise::Supervisor,
    /// Request body bytes in memory, across both doors.
    pub(crate) body_budget: crate::body_budget::BodyBudget,
}

/// The model as the HTTP layer describes it.
#[derive(Debug)]
pub struct ServedModel {
    pub info: ModelInfo,
    pub labels: Vec<String>,
    pub input: InputDetails,
    pub batching: BatchingDetails,
    pub precision: Precision,
    /// bf16 only: the start-up agreement with fp32.
    pub agreement: Option<Agreement>,
}

impl ServedModel {
    fn details(&self) -> ModelsResponse {
        let info = &self.info;
        ModelsResponse {
            models: vec![ModelDetails {
                variant: info.variant.clone(),
                num_classes: info.num_classes,
                demo: info.demo,
                fused: info.fused,
                checkpoint_sha256: info.checkpoint_sha256.clone(),
                source: public_source(info),
                dialect: info.dialect,
                form: info.form,
                input: self.input,
                batching: self.batching.clone(),
                precision: self.precision,
                engine: self.precision.engine(),
                bf16_agreement: self.agreement.clone(),
            }],
        }
    }
}

/// What clients are told of where the weights came from: the file's name, never its path on
/// the host (which says how the host is laid out; the start-up log has it for operators), or
/// the description of the demo weights.
fn public_source(info: &ModelInfo) -> String {
    if info.demo {
        return info.source.clone();
    }
    std::path::Path::new(&info.source)
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
}

/// Request limits the handlers enforce.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// The whole body must have arrived this long after the request did (408 otherwise).
    pub body_timeout: Duration,
    /// Images one `/classify` request may carry.
    pub max_images_per_request: usize,
}

/// The readiness latch: set after warm-up, cleared when shutdown starts. Mirrors itself into
/// the `repvgg_ready` gauge.
#[derive(Clone, Debug)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Readiness {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.set_ready(false);
        Self {
            ready: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.metrics.set_ready(ready);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Counts the request's body against the body budget as it arrives, and holds what it took
/// until the response is ready (see [`crate::body_budget`]).
async fn budget_body(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let (body, hold) = state.body_budget.wrap(body, None);
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::new(body));
    let response = next.run(request).await;
    drop(hold);
    response
}

/// All routes, with the body limits and the observability middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/classify", post(classify::classify))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/models", get(health::models))
        .route("/metrics", get(health::metrics))
        .route("/stats", get(health::stats))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(v2::routes())
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            budget_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}
