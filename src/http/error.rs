//! `ApiError`: every failure a client can see, mapped to a status and the one JSON shape
//! `{"error": "...", "error_type": "..."}` here and nowhere else.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::body_budget::BodyError;
use crate::models::ControlError;
use crate::pipeline::PipelineError;
use crate::preprocess::PreprocessError;
use crate::v2::V2Error;

/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is empty: send an image")]
    EmptyBody,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Undecodable(String),
    #[error("unsupported content type {0}: send an image (JPEG, PNG, WebP, GIF, BMP, TIFF), multipart/form-data or JSON with base64")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    UnsupportedImageFormat(String),
    #[error("unsupported Content-Encoding {0}: send the body uncompressed")]
    UnsupportedEncoding(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body did not arrive within {ms} ms")]
    BodyTimeout { ms: u128 },
    #[error("{0}")]
    TooManyPixels(String),
    #[error("{0}")]
    TooManyScans(String),
    #[error("{0}")]
    OverDecodeBudget(String),
    #[error("{0}")]
    DecodeBudgetBusy(String),
    #[error("the queue is full; retry shortly")]
    QueueFull,
    /// The request-body memory budget is full; the message is [`BodyError::BudgetFull`]'s.
    #[error("{}", BodyError::BudgetFull { limit: *limit })]
    BodyBudgetFull { limit: usize },
    #[error("too many open connections (limit {limit}); retry shortly")]
    TooManyConnections { limit: usize },
    #[error("the model is not ready (starting up or shutting down)")]
    NotReady,
    #[error("the request deadline passed before the image was classified")]
    DeadlineExceeded,
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("no route for this path")]
    NotFound,
    /// A v2 model name or version the server does not have.
    #[error("{0}")]
    UnknownModel(String),
    /// Loading or unloading models while serving is not configured.
    #[error("{0}")]
    ModelControlOff(String),
    /// A model load failed; what was serving is unchanged.
    #[error("{0}")]
    LoadFailed(String),
    #[error("{}", crate::access::UNAUTHORIZED)]
    Unauthorized,
    #[error("{}", crate::access::FORBIDDEN)]
    Forbidden,
}

/// The JSON every error answers with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub error_type: &'static str,
}

impl ApiError {
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

    pub fn error_type(&self) -> &'static str {
        match self {
            Self::EmptyBody => "empty_body",
            Self::BadRequest(_) => "bad_request",
            Self::Undecodable(_) => "undecodable_image",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::UnsupportedImageFormat(_) => "unsupported_image_format",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::TooManyPixels(_) => "too_many_pixels",
            Self::TooManyScans(_) => "too_many_scans",
            Self::BodyBudgetFull { .. } => "body_budget_full",
            Self::OverDecodeBudget(_) => "over_decode_budget",
            Self::DecodeBudgetBusy(_) => "decode_budget_busy",
            Self::QueueFull => "queue_full",
            Self::TooManyConnections { .. } => "too_many_connections",
            Self::NotReady => "not_ready",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Inference(_) => "inference_failed",
            Self::NotFound => "not_found",
            Self::UnknownModel(_) => "unknown_model",
            Self::ModelControlOff(_) => "model_control_off",
            Self::LoadFailed(_) => "load_failed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
        }
    }

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

impl IntoResponse for ApiError {
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

impl From<PreprocessError> for ApiError {
    fn from(e: PreprocessError) -> Self {
        match e {
            PreprocessError::Undecodable(_) => Self::Undecodable(e.to_string()),
            PreprocessError::UnsupportedFormat(_) => Self::UnsupportedImageFormat(e.to_string()),
            PreprocessError::TooManyPixels { .. } => Self::TooManyPixels(e.to_string()),
            PreprocessError::OverDecodeBudget { .. } => Self::OverDecodeBudget(e.to_string()),
            PreprocessError::DecodeBudgetBusy { .. } => Self::DecodeBudgetBusy(e.to_string()),
            PreprocessError::TooManyScans { .. } => Self::TooManyScans(e.to_string()),
            PreprocessError::Stopped => Self::DeadlineExceeded,
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::QueueFull => Self::QueueFull,
            PipelineError::LargerThanQueue { .. } => Self::BadRequest(e.to_string()),
            PipelineError::DeadlineExceeded => Self::DeadlineExceeded,
            PipelineError::Stopped => Self::NotReady,
            PipelineError::Image(e) => e.into(),
            PipelineError::Inference(e) => Self::Inference(e.to_string()),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Off => Self::ModelControlOff(e.to_string()),
            ControlError::UnknownModel(_) => Self::UnknownModel(e.to_string()),
            ControlError::InvalidName(message) => Self::BadRequest(message),
            ControlError::Parameter { .. } => Self::BadRequest(e.to_string()),
            ControlError::LoadFailed { .. } => Self::LoadFailed(e.to_string()),
        }
    }
}

impl From<V2Error> for ApiError {
    fn from(e: V2Error) -> Self {
        match e {
            V2Error::UnknownModel { .. } | V2Error::UnknownVersion { .. } => {
                Self::UnknownModel(e.to_string())
            }
            V2Error::Invalid(message) => Self::BadRequest(message),
            V2Error::Pipeline(e) => e.into(),
        }
    }
}
