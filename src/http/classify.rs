//! `POST /classify`: body -> images -> preprocessing pool -> batching queue -> predictions.
//!
//! Each image of a request is preprocessed and queued on its own (they may land in different
//! batches). The request's deadline starts when it arrives; an image not answered by then is
//! a 504 and, if still queued, never computed.

use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::future::join_all;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::body::{read_images, ImageInput};
use super::dto::{
    BatchClassifyResponse, Classification, ClassifyResponse, ImageResult, Prediction, TimingsMs,
};
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::inference::Job;
use crate::metrics::{Metrics, Outcome, StageTimings};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClassifyParams {
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
        (status = 400, description = "Empty body, undecodable image, malformed multipart, bad base64 or JSON", body = ErrorBody),
        (status = 408, description = "Body not received within the body timeout", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Unsupported content type or image format", body = ErrorBody),
        (status = 422, description = "Image over the pixel limit, or needing more memory to decode than the whole decode budget", body = ErrorBody),
        (status = 503, description = "Queue full, or the decode budget taken by images being decoded (Retry-After)", body = ErrorBody),
        (status = 504, description = "Deadline passed before classification", body = ErrorBody),
        (status = 500, description = "Inference failed", body = ErrorBody),
    ),
    tag = "classify"
)]
pub async fn classify(
    State(state): State<AppState>,
    params: Result<Query<ClassifyParams>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let deadline = arrived + state.limits.request_timeout;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // Readiness is not checked here: during the lame-duck delay after SIGTERM `/readyz` says
    // 503 so that load balancers stop routing here, while requests they still route are served.
    let body_timeout = state.limits.body_timeout;
    let images = read_images(
        request,
        state.limits.max_body_bytes,
        (arrived + body_timeout).into(),
        body_timeout,
    )
    .await?;
    let top_k = params
        .top_k
        .unwrap_or(5)
        .clamp(1, state.model.info.num_classes);
    let model = (&state.model.info).into();

    if images.len() == 1 {
        let image = images.into_iter().next().expect("one image");
        let result =
            classify_image(&state, image.bytes, arrived, deadline, top_k, params.logits).await?;
        let headers = timing_headers(&result.timings_ms);
        return Ok((headers, Json(ClassifyResponse { model, result })).into_response());
    }

    let answers = join_all(images.into_iter().map(|ImageInput { name, bytes }| {
        let state = &state;
        async move {
            let result =
                classify_image(state, bytes, arrived, deadline, top_k, params.logits).await;
            (name, result)
        }
    }))
    .await;
    if answers.iter().all(|(_, r)| r.is_err()) {
        if let Some((_, Err(first))) = answers.into_iter().next() {
            return Err(first);
        }
        unreachable!("a request holds at least one image");
    }
    let mut slowest = TimingsMs::default();
    let results = answers
        .into_iter()
        .enumerate()
        .map(|(index, (name, result))| match result {
            Ok(classification) => {
                slowest = max_timings(slowest, classification.timings_ms);
                ImageResult {
                    index,
                    name,
                    result: Some(classification),
                    error: None,
                    error_type: None,
                }
            }
            Err(e) => ImageResult {
                index,
                name,
                result: None,
                error: Some(e.to_string()),
                error_type: Some(e.error_type()),
            },
        })
        .collect();
    Ok((
        timing_headers(&slowest),
        Json(BatchClassifyResponse { model, results }),
    )
        .into_response())
}

/// One image through the pool and the queue, counted exactly once in `repvgg_images_total`.
async fn classify_image(
    state: &AppState,
    bytes: axum::body::Bytes,
    arrived: Instant,
    deadline: Instant,
    top_k: usize,
    with_logits: bool,
) -> Result<Classification, ApiError> {
    let mut outcome = OutcomeGuard::new(&state.metrics);
    let result = async {
        let admission = state.batcher.admit()?;
        let preprocessed = state.pool.run(bytes, admission, deadline).await?;
        state.metrics.preprocessed(preprocessed.elapsed);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            crop: preprocessed.crop,
            reply,
            span: tracing::Span::current(),
            enqueued: Instant::now(),
            deadline,
            admission: preprocessed.admission,
        };
        if job.enqueued >= deadline {
            return Err(ApiError::DeadlineExceeded);
        }
        state.batcher.submit(job);
        let prediction = tokio::time::timeout_at(deadline.into(), answer)
            .await
            .map_err(|_| ApiError::DeadlineExceeded)?
            .map_err(|_| {
                ApiError::Inference("the inference thread died while running this image".into())
            })??;
        let timings = StageTimings {
            queue: prediction.queue,
            preprocess: preprocessed.elapsed,
            inference: prediction.inference,
            total: arrived.elapsed(),
        };
        state.metrics.image_timings(timings);
        Ok(Classification {
            predictions: top_predictions(&prediction.logits, top_k, &state.model.labels),
            timings_ms: TimingsMs {
                queue: ms(timings.queue),
                preprocess: ms(timings.preprocess),
                inference: ms(timings.inference),
                total: ms(timings.total),
            },
            logits: with_logits.then_some(prediction.logits),
        })
    }
    .await;
    outcome.set(match &result {
        Ok(_) => Outcome::Ok,
        Err(e) => e.outcome(),
    });
    result
}

/// Records an image's outcome once; an image whose handler is dropped (client gone) counts as
/// cancelled.
struct OutcomeGuard<'a> {
    metrics: &'a Metrics,
    outcome: Option<Outcome>,
}

impl<'a> OutcomeGuard<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        Self {
            metrics,
            outcome: None,
        }
    }

    fn set(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for OutcomeGuard<'_> {
    fn drop(&mut self) {
        self.metrics
            .image_outcome(self.outcome.unwrap_or(Outcome::Cancelled));
    }
}

/// Softmax over the logits, then the `k` most probable classes.
fn top_predictions(logits: &[f32], k: usize, labels: &[String]) -> Vec<Prediction> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order
        .into_iter()
        .take(k)
        .map(|class_id| Prediction {
            class_id,
            label: labels[class_id].clone(),
            probability: (exp[class_id] / sum) as f32,
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
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
