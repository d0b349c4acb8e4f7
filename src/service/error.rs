//! [`ServiceError`]: every failure a client can see, whichever door it came through, with the
//! message it is told and a stable machine-readable kind ([`ServiceError::error_type`]). The
//! layers below (preprocessing, pipeline, model control, the v2 protocol) have their own error
//! types, converted here; each door converts this one into its own answer.

use crate::body_budget::BodyError;
use crate::models::ControlError;
use crate::pipeline::PipelineError;
use crate::preprocess::PreprocessError;
use crate::v2::V2Error;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ServiceError {
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

impl ServiceError {
    /// The kind of failure, stable for clients and metrics (`error_type` in the JSON body).
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
}

impl From<PreprocessError> for ServiceError {
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

impl From<PipelineError> for ServiceError {
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

impl From<ControlError> for ServiceError {
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

impl From<V2Error> for ServiceError {
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
