//! The page to try the service (`/` on the public port) and the live dashboard (`/dashboard` on
//! the admin listener), both compiled into the binary: no CDN, no build step, nothing fetched
//! from another origin (the `Content-Security-Policy` forbids it). They are plain clients of
//! the public API: the page calls `POST /classify` and `GET /v1/models`, the dashboard polls
//! `GET /stats`, with the same API keys as any other client. `--ui false` removes both.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::service::AppState;

/// Only this origin, for everything: scripts and styles from files (no inline code), images
/// from this origin or the `blob:` previews of the user's own files, requests to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' blob:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// One file of the page, with the headers every one of them carries.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, CSP),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REFERRER_POLICY, "no-referrer"),
            // Small files that change with the binary: revalidate rather than serve a stale page.
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The files both pages share.
fn common() -> Router<AppState> {
    Router::new()
        .route(
            "/ui/app.css",
            get(|| async { asset(CSS, include_str!("app.css")) }),
        )
        .route(
            "/ui/common.js",
            get(|| async { asset(JS, include_str!("common.js")) }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset(SVG, include_str!("favicon.svg")) }),
        )
}

/// The page to try it, for the public port.
pub(super) fn page() -> Router<AppState> {
    common()
        .route(
            "/",
            get(|| async { asset(HTML, include_str!("index.html")) }),
        )
        .route(
            "/ui/classify.js",
            get(|| async { asset(JS, include_str!("classify.js")) }),
        )
}

/// The live dashboard, for the admin listener.
pub(super) fn dashboard() -> Router<AppState> {
    common()
        .route(
            "/dashboard",
            get(|| async { asset(HTML, include_str!("dashboard.html")) }),
        )
        .route(
            "/ui/dashboard.js",
            get(|| async { asset(JS, include_str!("dashboard.js")) }),
        )
}
