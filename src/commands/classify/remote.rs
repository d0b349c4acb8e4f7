//! `classify --url`: each image POSTed to a running server's `/classify` as any client would
//! send it (raw bytes, the `inference` key when given); a 503 (the server is full) is retried
//! after its Retry-After, so a bulk run slows down instead of recording refusals.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::{Class, Outcome};

/// Attempts after a 503 before it is recorded.
const RETRIES: u32 = 10;
/// Files over this are not sent: the server's default `--max-body-bytes`.
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// The largest answer read (a top-k with logits of a few thousand classes is far smaller).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// A running server.
#[derive(Debug)]
pub struct Remote {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, without a trailing slash.
    base: String,
    key: Option<HeaderValue>,
}

impl Remote {
    /// Checks the URL and that the server is ready (`/readyz`) before any image is read.
    pub async fn connect(url: &str, key: Option<&str>) -> anyhow::Result<Self> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("--url {url}: not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!(
                "--url {url}: https is not supported by classify yet; run it in-process \
                 (--checkpoint) or reach the server over http (kubectl port-forward)"
            ),
            _ => bail!("--url {url}: expected http://host:port"),
        }
        let key = key
            .map(|k| {
                let mut value = HeaderValue::from_str(&format!("Bearer {k}"))?;
                // Never printed (Debug shows `Sensitive`).
                value.set_sensitive(true);
                Ok::<_, http::header::InvalidHeaderValue>(value)
            })
            .transpose()
            .context("--api-key: not a valid header value")?;
        let remote = Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: url.trim_end_matches('/').to_owned(),
            key,
        };
        let ready = http::Request::get(format!("{}/readyz", remote.base))
            .body(Full::default())
            .context("--url")?;
        let answer = remote
            .client
            .request(ready)
            .await
            .with_context(|| format!("--url {url}: cannot reach the server"))?;
        if answer.status() != StatusCode::OK {
            bail!("--url {url}: /readyz answered {}", answer.status());
        }
        Ok(remote)
    }

    pub(super) fn max_bytes(&self) -> usize {
        MAX_BYTES
    }

    pub(super) async fn classify(&self, image: Bytes, top_k: usize, logits: bool) -> Outcome {
        let uri = format!(
            "{}/classify?top_k={top_k}{}",
            self.base,
            if logits { "&logits=true" } else { "" }
        );
        let mut attempt = 0;
        loop {
            let mut request =
                http::Request::post(&uri).header(CONTENT_TYPE, "application/octet-stream");
            if let Some(key) = &self.key {
                request = request.header(AUTHORIZATION, key.clone());
            }
            let request = match request.body(Full::new(image.clone())) {
                Ok(request) => request,
                Err(e) => return Outcome::failed(e.to_string(), "bad_request"),
            };
            let response = match self.client.request(request).await {
                Ok(response) => response,
                Err(e) => return Outcome::failed(format!("{}: {e}", self.base), "unreachable"),
            };
            let status = response.status();
            let wait = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 30);
            let body = match Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return Outcome::failed(format!("reading the answer: {e}"), "unreachable")
                }
            };
            if status == StatusCode::SERVICE_UNAVAILABLE && attempt < RETRIES {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            return parse(status, &body);
        }
    }
}

/// The server's answer as a record: its classes, or its error in its own words.
fn parse(status: StatusCode, body: &[u8]) -> Outcome {
    #[derive(Deserialize)]
    struct Answer {
        predictions: Vec<Class>,
        logits: Option<Vec<f32>>,
    }
    #[derive(Deserialize)]
    struct Refusal {
        error: String,
        error_type: String,
    }
    if status.is_success() {
        return match serde_json::from_slice::<Answer>(body) {
            Ok(a) => Outcome::Classified {
                predictions: a.predictions,
                logits: a.logits,
            },
            Err(e) => Outcome::failed(format!("{status}: not a classification: {e}"), "bad_answer"),
        };
    }
    match serde_json::from_slice::<Refusal>(body) {
        Ok(r) => Outcome::failed(r.error, r.error_type),
        Err(_) => Outcome::failed(
            format!("answered {status}"),
            format!("http_{}", status.as_u16()),
        ),
    }
}
