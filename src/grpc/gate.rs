//! What every gRPC call passes before it reaches a service: its request id (the client's
//! `x-request-id` metadata, or a new one; echoed in the response headers and on the call's
//! span) and its API key ([`crate::access`], metadata `authorization: Bearer <key>`). Health
//! (`grpc.health.v1.Health`) and the protocol's ServerLive / ServerReady stay open for probes,
//! like `/healthz` and `/readyz` on HTTP.

use http::HeaderValue;

use crate::access::{Access, Role, Verdict};
use crate::metrics::{Metrics, Protocol};
use crate::service::REQUEST_ID;

/// Methods of the repository extension (model control): an `admin` key, and only when keys are
/// configured (the gRPC port is public; with an open service, control is on the admin
/// listener's REST routes only).
const CONTROL: &str = "/inference.GRPCInferenceService/Repository";

/// Methods any client may call.
const OPEN: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
];

/// The call's request id: the client's (at most 128 visible characters) or a new UUID; written
/// back into the request's metadata so the service and its logs see the same one.
pub(crate) fn request_id(headers: &mut http::HeaderMap) -> HeaderValue {
    let id = headers
        .get(REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        });
    headers.insert(REQUEST_ID, id.clone());
    id
}

/// Whether the call may go on; the refusal as the status the client gets.
pub(crate) fn admit(
    access: &Access,
    metrics: &Metrics,
    request: &http::request::Parts,
) -> Result<(), tonic::Status> {
    if OPEN.contains(&request.uri.path()) {
        return Ok(());
    }
    let authorization = request
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|value| value.as_bytes());
    let role = if request.uri.path().starts_with(CONTROL) {
        if !access.is_configured() {
            metrics.access_denied(Protocol::Grpc, "forbidden");
            return Err(tonic::Status::permission_denied(
                "model control over gRPC needs API keys (--api-keys-file) and an admin key; \
                 without keys use the admin listener's /v2/repository routes",
            ));
        }
        Role::Admin
    } else {
        Role::Inference
    };
    let (reason, status) = match access.check(authorization, role) {
        Verdict::Allowed => return Ok(()),
        Verdict::Unauthorized => (
            "unauthorized",
            tonic::Status::unauthenticated(crate::access::UNAUTHORIZED),
        ),
        Verdict::Forbidden => (
            "forbidden",
            tonic::Status::permission_denied(crate::access::FORBIDDEN),
        ),
    };
    metrics.access_denied(Protocol::Grpc, reason);
    Err(status)
}
