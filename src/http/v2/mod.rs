//! The Open Inference Protocol's REST routes (`/v2/...`), as `tritonclient.http` and KServe
//! speak them: thin adapters from the wire ([`wire`]) to [`crate::v2`] and back. Errors are the
//! service's JSON errors (`{"error": "...", "error_type": "..."}`: clients read `error`).

mod bounded;
pub(crate) mod repository;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::body::read_body;
use super::error::ErrorBody;
use crate::models::Served;
use crate::service::AppState;
use crate::service::ServiceError;
use crate::v2::{self, ModelKind, ModelMetadata};

/// The v2 health routes (open to probes when keys are configured).
pub fn probes() -> Router<AppState> {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
}

/// Every other v2 route, with and without `/versions/{version}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
}

/// `GET /v2`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    pub extensions: Vec<&'static str>,
}

type ModelPath = Path<HashMap<String, String>>;

fn find(
    state: &AppState,
    path: &HashMap<String, String>,
) -> Result<(Arc<Served>, ModelKind), ServiceError> {
    let model = path.get("model").map(String::as_str).unwrap_or_default();
    let version = path.get("version").map(String::as_str);
    Ok(state.models.find(model, version)?)
}

/// Server metadata: name, version, extensions.
#[utoipa::path(get, path = "/v2", responses((status = 200, body = ServerMetadata)), tag = "v2")]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "repvgg-serve",
        version: env!("CARGO_PKG_VERSION"),
        extensions: v2::EXTENSIONS.to_vec(),
    })
}

/// Liveness (200 while the process answers).
#[utoipa::path(get, path = "/v2/health/live", responses((status = 200)), tag = "v2")]
pub async fn live() {}

/// Readiness, as `/readyz`.
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    responses((status = 200), (status = 503, body = ErrorBody)),
    tag = "v2"
)]
pub async fn ready(State(state): State<AppState>) -> Result<(), ServiceError> {
    if state.readiness.is_ready() {
        Ok(())
    } else {
        Err(ServiceError::NotReady)
    }
}

/// A model's names, datatypes and shapes (also at `/v2/models/{model}/versions/{version}`).
#[utoipa::path(
    get,
    path = "/v2/models/{model}",
    params(("model" = String, Path, description = "`repvgg` (or --model-name) or `repvgg-tensor`")),
    responses((status = 200, body = ModelMetadata), (status = 404, body = ErrorBody)),
    tag = "v2"
)]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(path): ModelPath,
) -> Result<Json<ModelMetadata>, ServiceError> {
    let (served, kind) = find(&state, &path)?;
    let versions = state.models.versions(&served.name);
    Ok(Json(served.catalog.metadata(kind, &versions)))
}

/// 200 when the model can serve (also at `/v2/models/{model}/versions/{version}/ready`).
#[utoipa::path(
    get,
    path = "/v2/models/{model}/ready",
    params(("model" = String, Path)),
    responses((status = 200), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    tag = "v2"
)]
pub async fn model_ready(
    State(state): State<AppState>,
    Path(path): ModelPath,
) -> Result<(), ServiceError> {
    find(&state, &path)?;
    ready(State(state)).await
}

/// Inference (also at `/v2/models/{model}/versions/{version}/infer`): a JSON request, or with
/// `Inference-Header-Content-Length` the JSON followed by binary inputs. Up to 64 images.
#[utoipa::path(
    post,
    path = "/v2/models/{model}/infer",
    params(
        ("model" = String, Path),
        ("Inference-Header-Content-Length" = Option<usize>, Header, description = "Length of the JSON part of a binary body"),
    ),
    request_body(content = wire::JsonInferRequest, description = "JSON, or JSON followed by the inputs' binary data (application/octet-stream)"),
    responses(
        (status = 200, description = "JSON, or (with binary outputs) the JSON header followed by the outputs' bytes", body = wire::JsonInferResponse),
        (status = 400, description = "Bad JSON, input name, datatype, shape or size; an undecodable image", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, description = "An unsupported image format, or a compressed body", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, description = "Queue full (every image of the request is admitted, or none)", body = ErrorBody),
        (status = 504, body = ErrorBody),
    ),
    tag = "v2"
)]
pub async fn infer(
    State(state): State<AppState>,
    Path(path): ModelPath,
    request: Request,
) -> Result<Response, ServiceError> {
    let arrived = Instant::now();
    let deadline = arrived + state.limits.request_timeout;
    let (served, kind) = find(&state, &path)?;
    let timeout = state.limits.body_timeout;
    let (parts, body) = read_body(
        request,
        state.limits.max_body_bytes,
        (arrived + timeout).into(),
        timeout,
    )
    .await?;
    let header_length = match parts.headers.get(wire::HEADER_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    ServiceError::BadRequest(
                        "Inference-Header-Content-Length is not a byte count".into(),
                    )
                })?,
        ),
    };
    let mut path = path;
    let parsed = wire::parse(
        body,
        header_length,
        path.remove("model").unwrap_or_default(),
        path.remove("version"),
    )?;
    let target = v2::Target {
        catalog: &served.catalog,
        pipeline: &served.pipeline,
        kind,
        version: served.version,
    };
    let response = v2::infer(target, parsed.request, arrived, deadline).await?;
    Ok(wire::render(response, &parsed.binary_outputs))
}
