//! A model repository that changes under the real server: `--model-control poll` (the
//! repository's contents decide what is served) and canaries (`traffic_split` between versions,
//! promotion by one config change).

mod common;

use common::repository::{control, eventually, explicit, put_version};
use common::server::{series_sum, TestServer};
use common::*;
use serde_json::{json, Value};

/// `--model-control poll`: a version renamed into place is served; a version written in place
/// file by file, slowly, is not touched before it is complete, then served; a new model
/// directory appears; a half-written version that looks finished fails to load and leaves the
/// serving one; a removed model directory is unloaded; load and unload calls are refused (the
/// repository decides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_serves_what_the_repository_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let train = std::fs::read(fixture("checkpoints/tiny_official_train.pth")).expect("fixture");
    put_version(dir.path(), "m", 1, &train);
    let server = TestServer::start(&[
        "--model-repository",
        dir.path().to_str().expect("utf-8"),
        "--model-control",
        "poll",
        "--model-poll-interval-ms",
        "200",
    ])
    .await;
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    let version_of = |model: &'static str| {
        let (server, image) = (&server, &image);
        async move {
            let (status, body) = server.classify_with(&format!("model={model}"), image).await;
            (status == 200)
                .then(|| body["model"]["version"].as_u64())
                .flatten()
        }
    };
    assert_eq!(version_of("m").await, Some(1));

    // Version 2 written under a hidden name, then renamed into place.
    put_version(dir.path(), "m", 2, &train);
    std::fs::rename(dir.path().join("m/2"), dir.path().join("m/.2")).expect("hide");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        version_of("m").await,
        Some(1),
        "a hidden version is not loaded"
    );
    std::fs::rename(dir.path().join("m/.2"), dir.path().join("m/2")).expect("rename");
    assert!(
        eventually(async || version_of("m").await == Some(2)).await,
        "version 2 served"
    );

    // Version 3 written in place, file by file, slowly: a README first, then the weights in
    // 20 pieces 30 ms apart (600 ms, three scans). No scan tries it until it is complete; then
    // it is served.
    let version = dir.path().join("m/3");
    std::fs::create_dir_all(&version).expect("mkdir");
    std::fs::write(version.join("README"), "version 3, being copied\n").expect("write");
    let mut file = std::fs::File::create(version.join("weights.pth")).expect("create");
    for piece in train.chunks(train.len().div_ceil(20)) {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        std::io::Write::write_all(&mut file, piece).expect("write");
        assert_eq!(
            version_of("m").await,
            Some(2),
            "version 2 while 3 is copied"
        );
    }
    drop(file);
    assert!(
        eventually(async || version_of("m").await == Some(3)).await,
        "version 3 served once complete"
    );
    let failed = [("op", "load"), ("model", "m"), ("result", "failed")];
    let metrics = server.metrics().await;
    assert_eq!(
        series_sum(&metrics, "repvgg_model_control_total", &failed),
        0.0,
        "no load was tried on the half-copied version"
    );

    // A half-written version 4 that looks finished: version 3 keeps serving, and the index says why.
    put_version(dir.path(), "m", 4, &train[..train.len() / 3]);
    assert!(
        eventually(async || {
            let (_, entries) = control(&server, "/v2/repository/index", json!({})).await;
            entries.as_array().expect("entries").iter().any(|e| {
                e["version"] == "4"
                    && e["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("version 4"))
            })
        })
        .await,
        "the failed load is in the index"
    );
    assert_eq!(version_of("m").await, Some(3));

    // A new model directory is served; a removed one is unloaded.
    put_version(dir.path(), "n", 1, &train);
    assert!(
        eventually(async || version_of("n").await == Some(1)).await,
        "model n served"
    );
    std::fs::remove_dir_all(dir.path().join("m")).expect("rm");
    assert!(
        eventually(async || version_of("m").await.is_none()).await,
        "model m unloaded"
    );
    assert_eq!(version_of("n").await, Some(1));

    let (status, answer) = control(&server, "/v2/repository/models/n/unload", json!({})).await;
    assert_eq!(
        (status, answer["error_type"].as_str()),
        (400, Some("model_control_off"))
    );
    server.stop().await;
}

/// A canary: `traffic_split` {"1": 90, "2": 10} sends between 850 and 950 of 1,000 requests
/// without a version to version 1, the per-version series count both, and promotion is one
/// config change and a load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_split_divides_requests_and_promotion_is_one_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let train = std::fs::read(fixture("checkpoints/tiny_official_train.pth")).expect("fixture");
    put_version(dir.path(), "m", 1, &train);
    put_version(dir.path(), "m", 2, &train);
    let config = |split: Value| {
        let config = json!({"version_policy": {"all": {}}, "traffic_split": split});
        std::fs::write(dir.path().join("m/config.json"), config.to_string()).expect("config");
    };
    config(json!({"1": 90, "2": 10}));
    let server = explicit(dir.path()).await;
    let image = std::fs::read(fixture("images/coffee.png")).expect("fixture");
    let versions = |count: usize| {
        let (server, image) = (&server, &image);
        async move {
            let mut seen = Vec::with_capacity(count);
            let mut pending = futures_util::stream::FuturesUnordered::new();
            for _ in 0..count {
                pending.push(server.classify_with("model=m", image));
                if pending.len() == 8 {
                    let (status, body) = futures_util::StreamExt::next(&mut pending)
                        .await
                        .expect("answer");
                    assert_eq!(status, 200, "{body}");
                    seen.push(body["model"]["version"].as_u64().expect("version"));
                }
            }
            while let Some((status, body)) = futures_util::StreamExt::next(&mut pending).await {
                assert_eq!(status, 200, "{body}");
                seen.push(body["model"]["version"].as_u64().expect("version"));
            }
            seen
        }
    };
    let seen = versions(1000).await;
    let first = seen.iter().filter(|&&v| v == 1).count();
    assert!((850..=950).contains(&first), "{first} of 1000 to version 1");
    let metrics = server.metrics().await;
    let count = |version: &str| {
        series_sum(
            &metrics,
            "repvgg_images_total",
            &[("model", "m"), ("version", version), ("outcome", "ok")],
        )
    };
    assert_eq!(
        (count("1"), count("2")),
        (first as f64, (1000 - first) as f64)
    );

    // Promotion: one config change and a load; every request goes to version 2.
    config(json!({"2": 100}));
    let (status, answer) = control(&server, "/v2/repository/models/m/load", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert!(versions(50).await.iter().all(|&v| v == 2));
    // A split naming a version that is not served is refused, and the promotion stays.
    config(json!({"1": 50, "7": 50}));
    let (status, answer) = control(&server, "/v2/repository/models/m/load", json!({})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("version 7"),
        "{answer}"
    );
    assert!(versions(20).await.iter().all(|&v| v == 2));
    server.stop().await;
}
