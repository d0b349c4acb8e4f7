//! The HTTP side of [`crate::access`]: a middleware that lets a request through only with a key
//! of the route's role (`Authorization: Bearer <key>`); 401 `unauthorized` (with
//! `WWW-Authenticate: Bearer`) without one or with an unknown one, 403 `forbidden` for a key of
//! another role. A refused request's body is read only to be thrown away (at most
//! `--max-body-bytes`, for at most [`DRAIN_TIME`](crate::http::body::DRAIN_TIME); nothing is
//! kept, nothing taken from the body budget) so that a client still uploading gets the refusal
//! instead of a reset connection; then its connection is closed. Health and readiness routes
//! are mounted outside it.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::access::{Role, Verdict};
use crate::http::body::discard;
use crate::metrics::Protocol;
use crate::service::{AppState, ServiceError};

/// The public port's routes: an `inference` key.
pub(crate) async fn inference(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    require(&state, Role::Inference, request, next).await
}

/// The admin listener's routes: an `admin` key.
pub(crate) async fn admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    require(&state, Role::Admin, request, next).await
}

async fn require(state: &AppState, role: Role, mut request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes());
    let refused = match state.access.check(authorization, role) {
        Verdict::Allowed => return next.run(request).await,
        Verdict::Unauthorized => ServiceError::Unauthorized,
        Verdict::Forbidden => ServiceError::Forbidden,
    };
    state
        .metrics
        .access_denied(Protocol::Http, refused.error_type());
    // Nothing from an unknown client is kept, and the connection carries no other request.
    discard(request.body_mut(), state.limits.max_body_bytes).await;
    let mut response = refused.into_response();
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}
