//! Per-request observability middleware: request id (propagated or generated), one span per
//! request (the parent of the pipeline's stage spans; with tracing on, a child of the client's
//! W3C `traceparent`), the in-flight gauge, request counters and durations by route, and one log line per
//! request at info with status and stage timings.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::error::ErrorType;
use crate::metrics::Protocol;
use crate::service::{AppState, REQUEST_ID};

/// Routes polled by probes, scrapers and the dashboard, and the pages: counted in Prometheus,
/// neither logged nor counted as API requests in `/stats`.
const QUIET_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/stats",
    "/v2/health/live",
    "/v2/health/ready",
    "/",
    "/dashboard",
];

fn quiet(route: &str) -> bool {
    QUIET_ROUTES.contains(&route) || route.starts_with("/ui/")
}

pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let id_header =
        HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert(REQUEST_ID, id_header.clone());
    // The route as declared (`/v2/models/{model}/infer`), so that labels stay bounded;
    // anything no route matched is `other`.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        id = %id,
        %method,
        route = %route,
        "otel.name" = %format_args!("{method} {route}"),
        "otel.kind" = "server",
        "http.response.status_code" = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty,
    );
    crate::telemetry::adopt(&span, request.headers());

    let inflight = state.metrics.inflight();
    let mut response = next.run(request).instrument(span.clone()).await;
    drop(inflight);

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.record("http.response.status_code", i64::from(status));
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    state
        .metrics
        .request_done(Protocol::Http, &route, &status.to_string(), elapsed);
    response.headers_mut().insert(REQUEST_ID, id_header);
    if quiet(&route) {
        return response;
    }
    let error = response.extensions().get::<ErrorType>().map(|e| e.0);
    state.metrics.api_request(error);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    span.in_scope(|| {
        tracing::info!(
            status,
            total_ms = elapsed.as_secs_f64() * 1e3,
            queue_ms = %header("x-queue-time-ms"),
            preprocess_ms = %header("x-preprocess-time-ms"),
            inference_ms = %header("x-inference-time-ms"),
            "request done"
        );
    });
    response
}
