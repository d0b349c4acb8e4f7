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

/// A server on the repository in `dir` with `--model-control explicit`.
pub async fn explicit(dir: &Path) -> TestServer {
    let dir = dir.to_str().expect("utf-8");
    TestServer::start(&["--model-repository", dir, "--model-control", "explicit"]).await
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
