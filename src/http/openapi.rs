//! The OpenAPI document, generated from the handlers' annotations (utoipa).

use utoipa::OpenApi;

use super::{body, classify, dto, error, health};
use crate::metrics;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "repvgg-serve",
        description = "RepVGG image classification over HTTP"
    ),
    paths(
        classify::classify,
        health::healthz,
        health::readyz,
        health::models,
        health::metrics,
        health::stats,
        openapi_json,
    ),
    components(schemas(
        dto::ClassifyResponse,
        dto::BatchClassifyResponse,
        dto::ImageResult,
        dto::Classification,
        dto::Prediction,
        dto::TimingsMs,
        dto::ModelRef,
        dto::ModelsResponse,
        dto::Health,
        body::JsonImages,
        error::ErrorBody,
        metrics::StatsReport,
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")), tag = "meta")]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
