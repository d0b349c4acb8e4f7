//! End to end over real HTTP (127.0.0.1:0) with the real ONNX Runtime and the fixture
//! checkpoints: every fixture image sent raw, as multipart and as base64 JSON gives logits
//! matching PyTorch's (`reference/logits.json`), the same answer in all three encodings.

mod common;

use base64::Engine as _;
use common::server::TestServer;
use common::*;
use serde_json::Value;

/// Bounds of the issue: PNG sources 0.05, JPEG sources 0.5 (decoders may differ).
fn bound(image: &str) -> f32 {
    if is_jpeg(image) {
        0.5
    } else {
        0.05
    }
}

async fn classify(server: &TestServer, image: &str, encoding: &str) -> Value {
    let bytes = std::fs::read(fixture(&format!("images/{image}"))).expect("fixture image");
    let url = server.url("/classify?logits=true&top_k=5");
    let request = match encoding {
        "raw" => server
            .client
            .post(&url)
            .header("content-type", "application/octet-stream")
            .body(bytes),
        "multipart" => server
            .client
            .post(&url)
            .multipart(reqwest::multipart::Form::new().part(
                "image",
                reqwest::multipart::Part::bytes(bytes).file_name(image.to_owned()),
            )),
        "json" => server.client.post(&url).json(&serde_json::json!({
            "image": base64::engine::general_purpose::STANDARD.encode(bytes)
        })),
        other => unreachable!("{other}"),
    };
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 200, "{image} as {encoding}");
    for header in [
        "x-queue-time-ms",
        "x-preprocess-time-ms",
        "x-inference-time-ms",
        "x-total-time-ms",
        "x-request-id",
    ] {
        assert!(response.headers().contains_key(header), "{header} missing");
    }
    response.json().await.expect("JSON")
}

async fn check_model(checkpoint: &std::path::Path, reference_model: &str) {
    let server = TestServer::start(&["--checkpoint", checkpoint.to_str().expect("utf-8")]).await;
    let reference = Reference::load();
    for image in IMAGES {
        let want = reference.logits(reference_model, image);
        let raw = classify(&server, image, "raw").await;
        let ours = logits(&raw);
        let err = max_abs_diff(&ours, &want);
        assert!(
            err <= bound(image),
            "{image}: max |logit error| {err} > {}",
            bound(image)
        );
        let mut sorted = want.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted[0] - sorted[1] > bound(image) {
            assert_eq!(
                raw["predictions"][0]["class_id"].as_u64(),
                Some(top_k(&want, 1)[0] as u64),
                "{image}: top-1"
            );
        }
        let probabilities: f64 = raw["predictions"]
            .as_array()
            .expect("predictions")
            .iter()
            .map(|p| p["probability"].as_f64().expect("probability"))
            .sum();
        assert!(probabilities > 0.0 && probabilities <= 1.0 + 1e-6);
        for encoding in ["multipart", "json"] {
            let other = classify(&server, image, encoding).await;
            assert_eq!(
                other["predictions"], raw["predictions"],
                "{image}: {encoding} vs raw"
            );
            assert_eq!(other["logits"], raw["logits"], "{image}: {encoding} vs raw");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_checkpoints_over_http_match_pytorch_in_every_encoding() {
    for file in [
        "tiny_official_train.pth",
        "tiny_official_deploy.pth",
        "tiny_timm_train.safetensors",
    ] {
        check_model(&fixture(&format!("checkpoints/{file}")), "tiny").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a0_checkpoint_over_http_matches_pytorch() {
    if let Some(path) = shared_fixture("checkpoints/a0_official_train.pth") {
        check_model(&path, "a0").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_images_answer_in_request_order_with_bad_ones_marked() {
    let server = TestServer::start(&[
        "--checkpoint",
        fixture("checkpoints/tiny_official_train.pth")
            .to_str()
            .expect("utf-8"),
    ])
    .await;
    let good = std::fs::read(fixture("images/chelsea.png")).expect("image");
    let form = reqwest::multipart::Form::new()
        .part("cat", reqwest::multipart::Part::bytes(good.clone()))
        .part(
            "broken",
            reqwest::multipart::Part::bytes(b"not an image".to_vec()),
        )
        .part(
            "camera",
            reqwest::multipart::Part::bytes(
                std::fs::read(fixture("images/camera.png")).expect("image"),
            ),
        );
    let response = server
        .client
        .post(server.url("/classify"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["name"], "cat");
    assert_eq!(results[0]["index"], 0);
    assert!(results[0]["predictions"].is_array());
    assert_eq!(results[1]["name"], "broken");
    assert_eq!(results[1]["error_type"], "undecodable_image");
    assert_eq!(results[2]["name"], "camera");
    assert!(results[2]["predictions"].is_array());
    assert_eq!(body["model"]["num_classes"], 10);

    // JSON with several images: same order, same answers as one at a time.
    let encoded = base64::engine::general_purpose::STANDARD.encode(&good);
    let response = server
        .client
        .post(server.url("/classify"))
        .json(&serde_json::json!({"images": [encoded, encoded]}))
        .send()
        .await
        .expect("request");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body["results"][0]["predictions"],
        body["results"][1]["predictions"]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_and_openapi_describe_the_service() {
    let server = TestServer::start(&[
        "--checkpoint",
        fixture("checkpoints/tiny_timm_train.safetensors")
            .to_str()
            .expect("utf-8"),
    ])
    .await;
    let get = |path: &str| {
        let url = server.url(path);
        let client = server.client.clone();
        async move { client.get(url).send().await.expect("request") }
    };
    assert_eq!(get("/healthz").await.status(), 200);
    assert_eq!(get("/readyz").await.status(), 200);
    let models: Value = get("/v1/models").await.json().await.expect("JSON");
    let model = &models["models"][0];
    assert_eq!(model["num_classes"], 10);
    assert_eq!(model["dialect"], "timm");
    assert_eq!(model["form"], "train");
    assert_eq!(model["demo"], false);
    assert_eq!(model["input"]["crop"], 224);
    assert_eq!(model["checkpoint_sha256"].as_str().map(str::len), Some(64));
    assert!(model["batching"]["max_batch_size"].as_u64().is_some());
    let spec: Value = get("/openapi.json").await.json().await.expect("JSON");
    for path in [
        "/classify",
        "/healthz",
        "/readyz",
        "/v1/models",
        "/metrics",
        "/stats",
        "/openapi.json",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model}",
        "/v2/models/{model}/ready",
        "/v2/models/{model}/infer",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
    for admin_only in ["/metrics", "/stats"] {
        assert_eq!(
            get(admin_only).await.status(),
            404,
            "{admin_only} on the public port"
        );
        let on_admin = server
            .client
            .get(server.admin_url(admin_only))
            .send()
            .await
            .expect("admin request");
        assert_eq!(on_admin.status(), 200, "{admin_only} on the admin listener");
    }
    let admin_models: Value = json_of(server.client.get(server.admin_url("/v1/models"))).await;
    let source = admin_models["models"][0]["source"]
        .as_str()
        .expect("source");
    assert!(
        source.contains('/') && source.ends_with("tiny_timm_train.safetensors"),
        "the admin listener shows the host path: {source}"
    );
    assert_eq!(model["source"], "tiny_timm_train.safetensors");
    let missing = get("/nope").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("JSON error");
    assert_eq!(body["error_type"], "not_found");
    server.stop().await;
}

/// `--mean` / `--std`: crops are normalised with the statistics given (the image model's
/// logits equal the tensor model's on the reference crop normalised by hand with them), and
/// `/v1/models` and v2 metadata say which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_normalisation_is_applied_and_shown() {
    const MEAN: [f32; 3] = [0.5, 0.4, 0.3];
    const STD: [f32; 3] = [0.2, 0.3, 0.25];
    let server = TestServer::start(&[
        "--checkpoint",
        &tiny(),
        "--mean",
        "0.5,0.4,0.3",
        "--std",
        "0.2,0.3,0.25",
    ])
    .await;
    let answer: Value = server
        .client
        .post(server.url("/classify?logits=true"))
        .body(std::fs::read(fixture("images/chelsea.png")).expect("fixture"))
        .send()
        .await
        .expect("classify")
        .json()
        .await
        .expect("JSON");
    let crop = image::open(fixture("reference/chelsea.png.crop224.png"))
        .expect("reference crop")
        .to_rgb8();
    let plane = 224 * 224;
    let mut tensor = vec![0f32; 3 * plane];
    for (i, pixel) in crop.pixels().enumerate() {
        for c in 0..3 {
            tensor[c * plane + i] = (f32::from(pixel[c]) / 255.0 - MEAN[c]) / STD[c];
        }
    }
    let infer: Value = server
        .client
        .post(server.url("/v2/models/repvgg-tensor/infer"))
        .json(&serde_json::json!({"inputs": [{
            "name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": tensor,
        }]}))
        .send()
        .await
        .expect("infer")
        .json()
        .await
        .expect("JSON");
    let by_hand: Vec<f32> = infer["outputs"][0]["data"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    let delta = max_abs_diff(&logits(&answer), &by_hand);
    assert!(delta <= 1e-4, "image vs hand-normalised tensor: {delta}");

    let models: Value = json_of(server.client.get(server.url("/v1/models"))).await;
    let shown = &models["models"][0]["input"]["normalization"];
    let metadata: Value = json_of(server.client.get(server.url("/v2/models/repvgg-tensor"))).await;
    for stats in [shown, &metadata["parameters"]] {
        for (key, want) in [("mean", MEAN), ("std", STD)] {
            let got: Vec<f32> = stats[key]
                .as_array()
                .unwrap_or_else(|| panic!("{key} in {stats}"))
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect();
            assert_eq!(got, want, "{key}");
        }
    }
    server.stop().await;
}
