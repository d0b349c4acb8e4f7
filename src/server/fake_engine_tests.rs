//! The doors over a fake engine: the whole service (HTTP on 127.0.0.1:0, the model registry,
//! admission, the preprocessing pool, the batcher, the inference threads) with a
//! [`FakeBackend`] in place of ONNX Runtime. What the engine answers is then known exactly, and
//! it can be held busy or made to fail on demand, so these tests check the door's side alone:
//! softmax and top-k of the engine's logits, refusal when every place is taken, a failed run
//! answered as a JSON 500 while the service serves on.

use std::sync::Arc;

use clap::Parser;

use super::{App, Listeners};
use crate::config::{Cli, Command};
use crate::inference::fake::FakeBackend;
use crate::inference::Backend;
use crate::model::ModelInfo;
use crate::models::load::Loaded;

const CLASSES: usize = 3;

struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// `repvgg-serve serve <args>` whose every session is a clone of `backend` (input 8 -> 4).
    async fn start(backend: &FakeBackend, args: &[&str]) -> Self {
        let mut argv = vec!["repvgg-serve", "serve", "--host", "127.0.0.1", "--no-cache"];
        argv.extend_from_slice(args);
        let Command::Serve(serve) = Cli::try_parse_from(&argv).expect("flags").command else {
            unreachable!("serve");
        };
        let backend = backend.clone();
        let loader = Arc::new(move |_: &_, plan: &crate::config::ModelPlan| {
            Ok(Loaded {
                info: ModelInfo {
                    variant: None,
                    num_classes: CLASSES,
                    checkpoint_sha256: None,
                    source: "fake backend".into(),
                    demo: false,
                    fused: true,
                    dialect: None,
                    form: None,
                    resize: 8,
                    crop: 4,
                },
                from_cache: false,
                engines: (0..plan.sessions)
                    .map(|_| Box::new(backend.clone()) as Box<dyn Backend>)
                    .collect(),
                wide: None,
                bf16_check: None,
                warm_up_per_image: std::time::Duration::from_millis(1),
            })
        });
        let app = App::start_with(serve.validate().expect("config"), loader)
            .await
            .expect("starts");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", http.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listeners = Listeners {
            http,
            grpc: None,
            admin: None,
        };
        let task = tokio::spawn(app.run(listeners, async move {
            let _ = stopped.await;
        }));
        Self {
            url,
            stop: Some(stop),
            task,
        }
    }

    async fn classify(&self, image: Vec<u8>) -> (u16, serde_json::Value) {
        post(format!("{}/classify", self.url), image).await
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("joined").expect("clean shutdown");
    }
}

/// POSTs `image` to `url`: the status and the JSON body.
async fn post(url: String, image: Vec<u8>) -> (u16, serde_json::Value) {
    let answer = reqwest::Client::new()
        .post(url)
        .body(image)
        .send()
        .await
        .expect("answered");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("JSON"))
}

/// A 16x16 PNG of one grey level.
fn png(level: u8) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(16, 16, image::Rgb([level; 3]));
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

/// The first value of the batch tensor for a grey `level`: red, normalised with ImageNet's
/// statistics.
fn normalised_red(level: u8) -> f32 {
    (f32::from(level) / 255.0 - 0.485) / 0.229
}

/// The answer's predictions are the softmax of exactly what the engine returned, best first,
/// with the model's labels, and `logits=true` hands the engine's logits back unchanged.
#[tokio::test]
async fn classify_answers_the_softmax_of_the_engines_logits_best_first() {
    let backend = FakeBackend::new(CLASSES);
    let server = Running::start(&backend, &["--sessions", "1"]).await;
    let (status, body) = server.classify(png(255)).await;
    assert_eq!(status, 200, "{body}");
    let logits = backend.logits_of(normalised_red(255));
    let total: f32 = logits.iter().map(|l| l.exp()).sum();
    let predictions = body["predictions"].as_array().expect("predictions");
    assert_eq!(predictions.len(), CLASSES, "{body}");
    for (rank, class) in [2usize, 1, 0].into_iter().enumerate() {
        let p = &predictions[rank];
        assert_eq!(p["class_id"], class, "{body}");
        assert_eq!(p["label"], format!("class_{class}"));
        let expected = logits[class].exp() / total;
        let got = p["probability"].as_f64().expect("probability") as f32;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }
    let (status, body) = post(format!("{}/classify?logits=true", server.url), png(255)).await;
    assert_eq!(status, 200, "{body}");
    let returned: Vec<f32> = serde_json::from_value(body["logits"].clone()).expect("logits");
    assert_eq!(returned.len(), CLASSES);
    for (got, want) in returned.iter().zip(&logits) {
        assert!((got - want).abs() < 1e-5, "{returned:?} vs {logits:?}");
    }
    server.stop().await;
}

/// One place in the service, and the engine holding the one image admitted: the next request
/// is refused at once (503 `queue_full`), not queued; once the run ends both are served.
#[tokio::test]
async fn a_request_finding_every_place_taken_is_refused_at_once() {
    let (backend, open) = FakeBackend::new(CLASSES).gated();
    let server = Running::start(&backend, &["--sessions", "1", "--queue-capacity", "1"]).await;
    let first = tokio::spawn(post(format!("{}/classify", server.url), png(200)));
    for _ in 0..5000 {
        if !backend.runs().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(backend.runs().len(), 1, "the first image is running");
    let (status, body) = server.classify(png(200)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error_type"], "queue_full", "{body}");
    drop(open);
    assert_eq!(first.await.expect("joined").0, 200);
    assert_eq!(server.classify(png(200)).await.0, 200, "served again");
    server.stop().await;
}

/// A run that fails (the fake fails on a negative first value: a black image) answers its
/// request with a JSON 500 naming the failure; the service stays up and serves the next one.
#[tokio::test]
async fn a_failed_inference_answers_a_json_500_and_the_service_serves_on() {
    let backend = FakeBackend::new(CLASSES);
    let server = Running::start(&backend, &["--sessions", "1"]).await;
    let (status, body) = server.classify(png(0)).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error_type"], "inference_failed", "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("fake backend failed")),
        "{body}"
    );
    let (status, body) = server.classify(png(255)).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}
