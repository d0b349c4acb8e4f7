//! A model repository in a temp dir and the admin listener's model-control calls, for the
//! model-control tests.

use std::path::Path;

use serde_json::{json, Value};

use super::server::TestServer;

/// Writes `bytes` as the weights file of `model`'s `version` under `dir`.
pub fn put_version(dir: &Path, model: &str, version: u64, bytes: &[u8]) {
    let target = dir.join(model).join(version.to_string());
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("weights.pth"), bytes).expect("write");
}

/// Writes `bytes` under `file` in `model`'s `version` directory under `dir`.
pub fn put_file(dir: &Path, model: &str, version: u64, file: &str, bytes: &[u8]) {
    let target = dir.join(model).join(version.to_string());
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join(file), bytes).expect("write");
}

/// Another model made from the tiny timm checkpoint (a `.safetensors` file's bytes): its
/// classifier keeps the first `classes` rows, scaled by `scale`, with `shift` added to the
/// bias; every other tensor as trained. Other weights, or another class count, for tests that
/// must tell models and versions apart by their logits.
pub fn derived_checkpoint(classes: usize, scale: f32, shift: f32) -> Vec<u8> {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    let bytes =
        std::fs::read(super::fixture("checkpoints/tiny_timm_train.safetensors")).expect("fixture");
    let tensors = SafeTensors::deserialize(&bytes).expect("safetensors");
    let floats = |raw: &[u8]| -> Vec<f32> {
        raw.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            let mut shape = view.shape().to_vec();
            let data = match name.as_str() {
                "head.fc.weight" | "head.fc.bias" => {
                    let row = shape[1..].iter().product::<usize>();
                    shape[0] = classes;
                    let mut values = floats(view.data());
                    values.truncate(classes * row);
                    let add = if name.ends_with("bias") { shift } else { 0.0 };
                    let values = values.iter().map(|v| v * scale + add);
                    values.flat_map(f32::to_le_bytes).collect()
                }
                _ => view.data().to_vec(),
            };
            (name, shape, data)
        })
        .collect();
    let views = owned.iter().map(|(name, shape, data)| {
        let view = TensorView::new(Dtype::F32, shape.clone(), data).expect("view");
        (name.clone(), view)
    });
    safetensors::serialize(views, None).expect("serialize")
}

/// A server on the repository in `dir` with `--model-control explicit`.
pub async fn explicit(dir: &Path) -> TestServer {
    explicit_with(dir, &[]).await
}

/// [`explicit`] with more flags.
pub async fn explicit_with(dir: &Path, flags: &[&str]) -> TestServer {
    let dir = dir.to_str().expect("utf-8");
    let mut args = vec!["--model-repository", dir, "--model-control", "explicit"];
    args.extend_from_slice(flags);
    TestServer::start(&args).await
}

/// Loads `model` and requires the refusal: 400 `load_failed` with every one of `words` in its
/// error.
pub async fn refused_load(server: &TestServer, model: &str, words: &[&str]) {
    let path = format!("/v2/repository/models/{model}/load");
    let (status, answer) = control(server, &path, json!({})).await;
    assert_eq!(
        (status, answer["error_type"].as_str()),
        (400, Some("load_failed")),
        "{answer}"
    );
    let error = answer["error"].as_str().expect("error");
    for words in words {
        assert!(error.contains(words), "{words:?} in: {error}");
    }
}

/// `POST` on the admin listener; the status and the JSON answer.
pub async fn control(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = server
        .client
        .post(server.admin_url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

pub async fn index(server: &TestServer) -> Vec<(String, String, String)> {
    let (status, entries) = control(server, "/v2/repository/index", json!({})).await;
    assert_eq!(status, 200, "{entries}");
    entries
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().expect("string").to_owned();
            (field("name"), field("version"), field("state"))
        })
        .collect()
}

/// Polls `check` every 50 ms for at most 10 s; whether it came true.
pub async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
