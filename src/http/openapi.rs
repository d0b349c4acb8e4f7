//! The OpenAPI document, generated from the handlers' annotations (utoipa).

use utoipa::OpenApi;

use super::{body, classify, dto, error, health, v2};
use crate::metrics;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "repvgg-serve",
        description = "RepVGG image classification over HTTP: `/classify`, and the Open Inference \
                       Protocol (KServe v2) under `/v2` (also over gRPC on --grpc-port). \
                       `/metrics` and `/stats` are served on the admin listener (--admin-port). \
                       With --api-keys-file every route but the health routes and this document \
                       needs `Authorization: Bearer <key>` (an `inference` key; an `admin` key \
                       on the admin listener): 401 `unauthorized` without a valid key, 403 \
                       `forbidden` for the other role's key."
    ),
    modifiers(&BearerKey),
    security((), ("api_key" = [])),
    paths(
        classify::classify,
        health::healthz,
        health::readyz,
        health::models,
        health::metrics,
        health::stats,
        v2::server_metadata,
        v2::live,
        v2::ready,
        v2::model_metadata,
        v2::model_ready,
        v2::infer,
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
        v2::ServerMetadata,
        crate::v2::ModelMetadata,
        crate::v2::TensorMetadata,
        v2::wire::JsonInferRequest,
        v2::wire::JsonInput,
        v2::wire::JsonRequestedOutput,
        v2::wire::JsonInferResponse,
        v2::wire::JsonOutput,
    ))
)]
pub struct ApiDoc;

/// The `api_key` security scheme: an HTTP bearer token (optional: only with --api-keys-file).
#[derive(Debug)]
struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A key from --api-keys-file"))
                    .build(),
            ),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")), tag = "meta")]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
