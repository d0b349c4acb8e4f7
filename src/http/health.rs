//! Health, model metadata, metrics and stats endpoints.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::dto::{Health, ModelsResponse};
use super::error::ErrorBody;
use crate::metrics::StatsReport;
use crate::service::AppState;
use crate::service::ServiceError;

/// Liveness: the process answers. Always cheap, never touches the model.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)), tag = "health")]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "alive" })
}

/// Readiness: 200 once the model is loaded and every session warmed up; 503 from the moment
/// shutdown starts (classification goes on being served until the listener closes).
#[utoipa::path(
    get,
    path = "/readyz",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)),
    tag = "health"
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ServiceError> {
    if state.readiness.is_ready() {
        Ok(Json(Health { status: "ready" }))
    } else {
        Err(ServiceError::NotReady)
    }
}

/// The served model versions: name, version, variant, classes, input size, checkpoint hash and
/// file name, demo flag, batching.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = ModelsResponse)), tag = "models")]
pub async fn models(State(state): State<AppState>) -> Json<ModelsResponse> {
    Json(super::model_details(&state.models, false))
}

/// The admin listener's `/v1/models`: as the public one, with the checkpoint's path on the host.
pub async fn admin_models(State(state): State<AppState>) -> Json<ModelsResponse> {
    Json(super::model_details(&state.models, true))
}

/// Prometheus text exposition (admin listener).
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)), tag = "observability")]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Throughput and latency percentiles over the last 10 s and 60 s, for people (admin listener).
#[utoipa::path(get, path = "/stats", responses((status = 200, body = StatsReport)), tag = "observability")]
pub async fn stats(State(state): State<AppState>) -> Json<StatsReport> {
    Json(state.metrics.stats())
}
