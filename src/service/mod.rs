//! What every door (HTTP, v2 REST, gRPC, the CLI's local mode) shares, beneath all of them:
//! the state a request is served from (the model registry and its control, metrics,
//! readiness, the body budget and access keys), the request limits, and [`ServiceError`], the
//! one error type each door converts into its own answer (HTTP status and JSON in
//! `crate::http`, a gRPC status in `crate::grpc`, an exit message in `crate::commands`).
//!
//! The flow: door -> [`crate::models`] (which version a request means) -> [`crate::pipeline`]
//! (preprocessing, batching queue) -> [`crate::inference`] (the engine).

mod error;

use std::sync::Arc;
use std::time::Duration;

pub use error::ServiceError;

use crate::metrics::Metrics;

/// The request id header, read from the client or made up, and echoed on every door.
pub const REQUEST_ID: &str = "x-request-id";

/// Handles shared by every handler; cloning is cheap.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The served model versions, each with the classification pipeline its routes call.
    pub models: crate::models::Models,
    /// Loading and unloading versions while serving (the admin listener's repository routes).
    pub control: Arc<crate::models::Control>,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub limits: Limits,
    /// Where the pipeline's parts report their death (and tests inject faults).
    pub supervisor: crate::supervise::Supervisor,
    /// Request body bytes in memory, across both doors.
    pub(crate) body_budget: crate::body_budget::BodyBudget,
    /// Who may call what (API keys), on every door.
    pub(crate) access: crate::access::Access,
    /// Origins browsers may call the public port from (CORS); empty: none.
    pub(crate) cors_allow_origins: Arc<[axum::http::HeaderValue]>,
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
/// the `repvgg_ready` gauge, and tells its watchers (gRPC health) of every change.
#[derive(Clone, Debug)]
pub struct Readiness {
    ready: Arc<tokio::sync::watch::Sender<bool>>,
    metrics: Arc<Metrics>,
}

impl Readiness {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.set_ready(false);
        Self {
            ready: Arc::new(tokio::sync::watch::Sender::new(false)),
            metrics,
        }
    }

    pub fn set(&self, ready: bool) {
        self.ready.send_replace(ready);
        self.metrics.set_ready(ready);
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Sees the current value and every later change.
    pub(crate) fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.subscribe()
    }
}
