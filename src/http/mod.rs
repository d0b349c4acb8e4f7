//! The HTTP door: routes, the mapping of [`ServiceError`] to statuses and JSON, and the OpenAPI
//! document. What the doors share (state, limits, readiness, errors) is [`crate::service`].
//!
//! Two routers over one state: [`router`] for the public port (classification, the v2 REST
//! protocol, model metadata, health) and [`admin_router`] for the admin listener (metrics,
//! stats, full model details), each behind its role's API key when keys are configured
//! ([`auth`]). [`connections::serve`] runs a router on a listener with the connection limits and
//! the graceful shutdown, and `crate::server` wires them.

mod auth;
pub(crate) mod body;
mod classify;
pub mod connections;
mod dto;
mod error;
mod health;
pub(crate) mod observe;
pub mod openapi;
mod ui;
pub(crate) mod v2;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use dto::{ModelDetails, ModelsResponse};
pub use error::ErrorBody;

use crate::model::ModelInfo;
use crate::service::{AppState, ServiceError};

/// `/v1/models`: every served version; `host_path`: the checkpoint's path on the host (the
/// admin listener) rather than its file name (the public port).
fn model_details(models: &crate::models::Models, host_path: bool) -> ModelsResponse {
    ModelsResponse {
        models: models
            .all()
            .iter()
            .map(|served| {
                let model = &served.model;
                let info = &model.info;
                ModelDetails {
                    name: served.name.clone(),
                    version: served.version,
                    variant: info.variant.clone(),
                    num_classes: info.num_classes,
                    demo: info.demo,
                    fused: info.fused,
                    checkpoint_sha256: info.checkpoint_sha256.clone(),
                    source: if host_path {
                        info.source.clone()
                    } else {
                        public_source(info)
                    },
                    dialect: info.dialect,
                    form: info.form,
                    input: model.input,
                    batching: model.batching.clone(),
                    precision: model.precision,
                    engine: model.precision.engine(),
                    bf16_agreement: model.agreement.clone(),
                    bf16_timing: model.bf16_timing.clone(),
                }
            })
            .collect(),
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

/// The public port: classification, v2 REST and model metadata (behind an `inference` key when
/// keys are configured), health, readiness, the OpenAPI document and, with `ui`, the page to
/// try it (open), with the body limits, the observability middleware and CORS when origins
/// are allowed.
pub fn router(state: AppState, ui: bool) -> Router {
    let keyed = Router::new()
        .route("/classify", post(classify::classify))
        .route("/v1/models", get(health::models))
        .merge(v2::routes())
        // Inside the key check: a refused body, thrown away unread, never takes budget from
        // the clients the server serves.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            budget_body,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::inference,
        ));
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(v2::probes())
        .merge(if ui { ui::page() } else { Router::new() })
        .merge(keyed)
        .fallback(|| async { ServiceError::NotFound });
    let router = observed(router, &state).layer(DefaultBodyLimit::max(state.limits.max_body_bytes));
    let router = match cors(&state.cors_allow_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}

/// The admin listener: Prometheus metrics, `/stats` and the full `/v1/models`, every route
/// behind an `admin` key when keys are configured, and with `ui` the dashboard's files (open;
/// the dashboard asks for the key to poll `/stats`). No request bodies.
pub fn admin_router(state: AppState, ui: bool) -> Router {
    let router = Router::new()
        .route("/metrics", get(health::metrics))
        .route("/stats", get(health::stats))
        .route("/v1/models", get(health::admin_models))
        .merge(repository_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::admin,
        ))
        .merge(if ui { ui::dashboard() } else { Router::new() })
        .fallback(|| async { ServiceError::NotFound })
        .layer(DefaultBodyLimit::max(0));
    observed(router, &state).with_state(state)
}

/// The v2 repository extension (model control), with room for its small JSON bodies.
fn repository_routes() -> Router<AppState> {
    use v2::repository::{self, MAX_BODY};
    let limit = || DefaultBodyLimit::max(MAX_BODY);
    Router::new()
        .route(
            "/v2/repository/index",
            post(repository::index).layer(limit()),
        )
        .route(
            "/v2/repository/models/{model}/load",
            post(repository::load).layer(limit()),
        )
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository::unload).layer(limit()),
        )
}

/// Request id, span, counters and the one log line per request (see [`observe`]).
fn observed(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    router.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        observe::observe,
    ))
}

/// CORS for the allowed origins (none: no layer, browsers keep their same-origin rule).
fn cors(origins: &[axum::http::HeaderValue]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, Method};
    if origins.is_empty() {
        return None;
    }
    let timing = |name: &'static str| HeaderName::from_static(name);
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins.to_vec())
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                timing(crate::service::REQUEST_ID),
                timing("inference-header-content-length"),
            ])
            .expose_headers([
                timing(crate::service::REQUEST_ID),
                timing("inference-header-content-length"),
                timing("x-queue-time-ms"),
                timing("x-preprocess-time-ms"),
                timing("x-inference-time-ms"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
