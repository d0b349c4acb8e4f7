//! A model repository (`--model-repository`, Triton's layout) through the real server: several
//! models and versions side by side, each found by name and version on every door (`/classify`,
//! v2 REST, gRPC) with its own labels and preprocessing, and a repository with a mistake refused
//! at start, naming the file.

mod common;

use std::path::Path;

use common::server::TestServer;
use common::*;
use serde_json::json;

/// Classes of the tiny fixture checkpoints.
const CLASSES: usize = 10;

/// `official`: versions 1 (training checkpoint) and 2 (deploy checkpoint), both served
/// (policy `all`), with its own labels; `timm`: versions 4 and 5, only the latest served,
/// with a smaller resize and crop than the checkpoint's.
fn repository(dir: &Path) {
    let put = |model: &str, version: u64, file: &str| {
        let target = dir.join(model).join(version.to_string());
        std::fs::create_dir_all(&target).expect("mkdir");
        std::fs::copy(fixture(&format!("checkpoints/{file}")), target.join(file)).expect("copy");
    };
    put("official", 1, "tiny_official_train.pth");
    put("official", 2, "tiny_official_deploy.pth");
    put("timm", 4, "tiny_timm_train.safetensors");
    put("timm", 5, "tiny_timm_train.safetensors");
    let labels: Vec<String> = (0..CLASSES).map(|i| format!("official-{i}")).collect();
    std::fs::write(dir.join("official/labels.txt"), labels.join("\n")).expect("labels");
    let config = json!({"labels": "labels.txt", "version_policy": {"all": {}}});
    std::fs::write(dir.join("official/config.json"), config.to_string()).expect("config");
    let config = json!({"resize": 128, "crop": 112});
    std::fs::write(dir.join("timm/config.json"), config.to_string()).expect("config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_versions_of_a_repository_are_served_side_by_side_on_every_door() {
    let dir = tempfile::tempdir().expect("temp dir");
    repository(dir.path());
    let server =
        TestServer::start(&["--model-repository", dir.path().to_str().expect("utf-8")]).await;
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");

    // Every served version, described.
    let models = json_of(server.client.get(server.url("/v1/models"))).await;
    let served: Vec<(String, u64, u64)> = models["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| {
            let name = m["name"].as_str().expect("name").to_owned();
            (
                name,
                m["version"].as_u64().expect("version"),
                m["input"]["crop"].as_u64().expect("crop"),
            )
        })
        .collect();
    assert_eq!(
        served,
        [
            ("official".to_owned(), 1, 224),
            ("official".to_owned(), 2, 224),
            ("timm".to_owned(), 5, 112),
        ]
    );

    // /classify: the model must be named when there are several; the newest version by default.
    let (status, body) = server.classify_with("", &image).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("official, timm"),
        "{body}"
    );
    let (status, newest) = server.classify_with("model=official", &image).await;
    assert_eq!(status, 200, "{newest}");
    assert_eq!(
        (
            newest["model"]["name"].as_str(),
            newest["model"]["version"].as_u64()
        ),
        (Some("official"), Some(2))
    );
    let reference = Reference::load();
    let top1 = reference.top5("tiny", "chelsea.png")[0];
    assert_eq!(
        newest["predictions"][0]["label"],
        format!("official-{top1}"),
        "its own labels"
    );
    let (status, first) = server
        .classify_with("model=official&version=1", &image)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["model"]["version"], 1);
    // Training and deploy forms of the same weights: the same logits (PyTorch's fused-vs-unfused
    // difference on this model is 1.9e-5).
    assert!(max_abs_diff(&logits(&first), &logits(&newest)) < 1e-4);
    let expected = reference.logits("tiny", "chelsea.png");
    assert!(max_abs_diff(&logits(&first), &expected) < 1e-4);

    // The timm model crops 112 pixels: its answer is a single-model server's with the same
    // resize and crop, not the official model's at 224.
    let (status, timm) = server.classify_with("model=timm", &image).await;
    assert_eq!(status, 200, "{timm}");
    assert_eq!(timm["model"]["version"], 5);
    assert_eq!(
        timm["predictions"][0]["label"],
        format!("class_{}", top_k(&logits(&timm), 1)[0])
    );
    let alone = TestServer::start(&[
        "--checkpoint",
        fixture("checkpoints/tiny_timm_train.safetensors")
            .to_str()
            .expect("utf-8"),
        "--resize",
        "128",
        "--crop",
        "112",
    ])
    .await;
    let (status, single) = alone.classify_with("", &image).await;
    assert_eq!(status, 200, "{single}");
    assert!(max_abs_diff(&logits(&timm), &logits(&single)) < 1e-5);
    assert!(
        max_abs_diff(&logits(&timm), &expected) > 1e-3,
        "112-pixel crops differ"
    );
    alone.stop().await;

    // Unknown models and versions: 404 naming what there is.
    for (query, says) in [
        (
            "model=resnet",
            "'official', 'official-tensor', 'timm', 'timm-tensor'",
        ),
        ("model=timm&version=4", "versions: 5"),
    ] {
        let (status, body) = server.classify_with(query, &image).await;
        assert_eq!(status, 404, "{query}: {body}");
        assert_eq!(body["error_type"], "unknown_model");
        assert!(
            body["error"].as_str().expect("error").contains(says),
            "{body}"
        );
    }

    // v2 REST: metadata per model (every version, the tensor twin's own crop), inference by
    // name and version.
    let meta = json_of(server.client.get(server.url("/v2/models/official"))).await;
    assert_eq!(meta["versions"], json!(["1", "2"]));
    let meta = json_of(server.client.get(server.url("/v2/models/timm-tensor"))).await;
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 3, 112, 112]));
    let ready = server
        .client
        .get(server.url("/v2/models/official/versions/1/ready"));
    assert_eq!(ready.send().await.expect("ready").status(), 200);
    let missing = server
        .client
        .get(server.url("/v2/models/official/versions/3/ready"));
    assert_eq!(missing.send().await.expect("ready").status(), 404);
    let tensor = reference_crop_tensor("chelsea.png");
    let request = json!({"inputs": [{
        "name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": tensor
    }]});
    let answer = json_of(
        server
            .client
            .post(server.url("/v2/models/official-tensor/versions/1/infer"))
            .json(&request),
    )
    .await;
    assert_eq!(answer["model_name"], "official-tensor");
    assert_eq!(answer["model_version"], "1");
    let values: Vec<f32> = answer["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    assert!(max_abs_diff(&values, &expected) < 1e-4);

    // gRPC: by name, and by name and version.
    let grpc = server.grpc_addr.to_string();
    let answer = grpc::call(
        &grpc,
        grpc::MODEL_INFER,
        &grpc::infer_request("timm", &image),
        &[],
    )
    .await;
    assert_eq!(answer.status, 0, "{}", answer.message);
    let mut versioned = grpc::infer_request("official", &image);
    versioned.extend(grpc::field(2, b"1"));
    let answer = grpc::call(&grpc, grpc::MODEL_INFER, &versioned, &[]).await;
    assert_eq!(answer.status, 0, "{}", answer.message);
    let mut named = grpc::field(1, b"official");
    named.extend(grpc::field(2, b"1"));
    assert!(
        answer.body.starts_with(&named),
        "model_name and model_version answered"
    );
    let answer = grpc::call(
        &grpc,
        grpc::MODEL_INFER,
        &grpc::infer_request("resnet", &image),
        &[],
    )
    .await;
    assert_eq!(answer.status, 5, "NOT_FOUND: {}", answer.message);
    server.stop().await;
}

/// A repository with a mistake anywhere stops the start with a message naming the file; nothing
/// is served.
#[test]
fn a_repository_with_a_mistake_is_refused_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    repository(dir.path());
    std::fs::write(
        dir.path().join("timm/config.json"),
        r#"{"crop": 112, "resize": 100}"#,
    )
    .expect("config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
        .args(["serve"])
        .args(LOCAL_SERVE)
        .arg("--model-repository")
        .arg(dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("timm/config.json")
            && stderr.contains("crop 112 is larger than resize 100"),
        "{stderr}"
    );
}
