//! [`ServiceError`] at the HTTP door: every failure a client can see, mapped to a status and
//! the one JSON shape `{"error": "...", "error_type": "..."}` here and nowhere else.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::service::ServiceError;

/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// The JSON every error answers with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub error_type: &'static str,
}

impl ServiceError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::EmptyBody
            | Self::BadRequest(_)
            | Self::Undecodable(_)
            | Self::ModelControlOff(_)
            | Self::LoadFailed(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_)
            | Self::UnsupportedImageFormat(_)
            | Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyPixels(_) | Self::TooManyScans(_) | Self::OverDecodeBudget(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::QueueFull
            | Self::BodyBudgetFull { .. }
            | Self::NotReady
            | Self::DecodeBudgetBusy(_)
            | Self::TooManyConnections { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Self::Inference(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound | Self::UnknownModel(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    /// The JSON body this error answers with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.to_string(),
            error_type: self.error_type(),
        }
    }
}

/// The error type of a failed response, for the request counters (`crate::http::observe`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorType(pub(crate) &'static str);

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        response
            .extensions_mut()
            .insert(ErrorType(self.error_type()));
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(
            self.status(),
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) || matches!(
            self,
            Self::TooManyConnections { .. } | Self::BodyBudgetFull { .. }
        ) {
            // Part of the body may still be unread: the connection cannot be reused, and a
            // client that is not told so would send its next request into a closing socket.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
