//! `POST /classify`: body -> images -> [`crate::pipeline`] -> softmax top-k as JSON.
//!
//! Each image of a request is admitted, preprocessed and queued on its own (they may land in
//! different batches; one may fail while the others are answered). The request's deadline
//! starts when it arrives; an image not answered by then is a 504 and, if still queued, never
//! computed.

use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::body::{read_images, BodyLimits, ImageInput};
use super::dto::{
    BatchClassifyResponse, Classification, ClassifyResponse, ImageResult, Prediction, TimingsMs,
};
use super::error::ErrorBody;
use crate::pipeline::{top_probabilities, Answer, Input};
use crate::service::AppState;
use crate::service::ServiceError;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClassifyParams {
    /// The model to classify with; may be left out when the server has one model.
    pub model: Option<String>,
    /// Its version (default: the newest).
    pub version: Option<String>,
    /// How many classes to return, best first (default 5; capped at the number of classes).
    pub top_k: Option<usize>,
    /// Also return the raw logits in class order.
    #[serde(default)]
    pub logits: bool,
}

/// Classify one or more images.
#[utoipa::path(
    post,
    path = "/classify",
    params(ClassifyParams),
    request_body(
        description = "A raw image (JPEG, PNG, WebP, GIF, BMP, TIFF; format sniffed from the bytes), \
                       multipart/form-data with one or more image parts, or JSON with base64.",
        content(
            (Vec<u8> = "application/octet-stream"),
            (Vec<u8> = "image/jpeg"),
            (Vec<u8> = "image/png"),
            (super::body::JsonImages = "application/json"),
            (Vec<u8> = "multipart/form-data"),
        )
    ),
    responses(
        (status = 200, description = "One image: predictions. Several: `results` in request order.", body = ClassifyResponse),
        (status = 400, description = "No ?model= on a server with several models, empty body, undecodable image, malformed multipart, bad base64 or JSON, more images than --max-images-per-request", body = ErrorBody),
        (status = 408, description = "Body not received within the body timeout", body = ErrorBody),
        (status = 404, description = "Unknown model or version (`?model=`, `?version=`)", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Unsupported content type or image format", body = ErrorBody),
        (status = 422, description = "Image over the pixel limit, a JPEG with more than 100 scans, or needing more memory to decode than the whole decode budget", body = ErrorBody),
        (status = 503, description = "Queue full, the decode budget taken by images being decoded, or the request-body memory budget full (Retry-After)", body = ErrorBody),
        (status = 504, description = "Deadline passed before classification", body = ErrorBody),
        (status = 500, description = "Inference failed", body = ErrorBody),
    ),
    tag = "classify"
)]
pub async fn classify(
    State(state): State<AppState>,
    params: Result<Query<ClassifyParams>, QueryRejection>,
    request: Request,
) -> Result<Response, ServiceError> {
    let arrived = Instant::now();
    let deadline = arrived + state.limits.request_timeout;
    let Query(params) = params.map_err(|e| ServiceError::BadRequest(e.body_text()))?;
    let served = state
        .models
        .route(params.model.as_deref(), params.version.as_deref())?;
    // Readiness is not checked here: during the lame-duck delay after SIGTERM `/readyz` says
    // 503 so that load balancers stop routing here, while requests they still route are served.
    let body_timeout = state.limits.body_timeout;
    let limits = BodyLimits {
        max_bytes: state.limits.max_body_bytes,
        max_images: state.limits.max_images_per_request,
    };
    let images = read_images(
        request,
        limits,
        (arrived + body_timeout).into(),
        body_timeout,
    )
    .await?;
    let top_k = params
        .top_k
        .unwrap_or(5)
        .clamp(1, served.model.info.num_classes);
    let model = served.as_ref().into();
    let (names, inputs): (Vec<_>, Vec<_>) = images
        .into_iter()
        .map(|ImageInput { name, bytes }| (name, Input::Encoded(bytes)))
        .unzip();
    let answers = served
        .pipeline
        .classify_each(inputs, arrived, deadline)
        .await;
    let render = |answer: Answer| Classification {
        predictions: top_predictions(&answer.logits, top_k, &served.model.labels),
        timings_ms: answer.timings.into(),
        logits: params.logits.then_some(answer.logits),
    };

    if answers.len() == 1 {
        let answer = answers.into_iter().next().expect("one image")?;
        let result = render(answer);
        let headers = timing_headers(&result.timings_ms);
        return Ok((headers, Json(ClassifyResponse { model, result })).into_response());
    }
    if answers.iter().all(Result::is_err) {
        let first = answers.into_iter().find_map(Result::err);
        return Err(first.expect("a request holds at least one image").into());
    }
    let mut slowest = TimingsMs::default();
    let results = answers
        .into_iter()
        .zip(names)
        .enumerate()
        .map(|(index, (answer, name))| match answer {
            Ok(answer) => {
                let classification = render(answer);
                slowest = max_timings(slowest, classification.timings_ms);
                ImageResult {
                    index,
                    name,
                    result: Some(classification),
                    error: None,
                    error_type: None,
                }
            }
            Err(e) => {
                let e = ServiceError::from(e);
                ImageResult {
                    index,
                    name,
                    result: None,
                    error: Some(e.to_string()),
                    error_type: Some(e.error_type()),
                }
            }
        })
        .collect();
    Ok((
        timing_headers(&slowest),
        Json(BatchClassifyResponse { model, results }),
    )
        .into_response())
}

/// Softmax over the logits, then the `k` most probable classes.
fn top_predictions(logits: &[f32], k: usize, labels: &[String]) -> Vec<Prediction> {
    top_probabilities(logits, k)
        .into_iter()
        .map(|(class_id, probability)| Prediction {
            class_id,
            label: labels[class_id].clone(),
            probability,
        })
        .collect()
}

fn max_timings(a: TimingsMs, b: TimingsMs) -> TimingsMs {
    TimingsMs {
        queue: a.queue.max(b.queue),
        preprocess: a.preprocess.max(b.preprocess),
        inference: a.inference.max(b.inference),
        total: a.total.max(b.total),
    }
}

/// `x-queue-time-ms`, `x-preprocess-time-ms`, `x-inference-time-ms`, `x-total-time-ms` (for
/// several images: the largest of each).
fn timing_headers(t: &TimingsMs) -> [(&'static str, HeaderValue); 4] {
    let value =
        |v: f64| HeaderValue::from_str(&format!("{v:.3}")).expect("a number is a header value");
    [
        ("x-queue-time-ms", value(t.queue)),
        ("x-preprocess-time-ms", value(t.preprocess)),
        ("x-inference-time-ms", value(t.inference)),
        ("x-total-time-ms", value(t.total)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_top_k_is_ordered_and_normalised() {
        let labels: Vec<String> = (0..4).map(|i| format!("c{i}")).collect();
        let p = top_predictions(&[1.0, 3.0, 2.0, 0.0], 4, &labels);
        assert_eq!(
            p.iter().map(|p| p.class_id).collect::<Vec<_>>(),
            [1, 2, 0, 3]
        );
        let total: f32 = p.iter().map(|p| p.probability).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(p[0].label, "c1");
    }
}
