//! Model control through the real server: `--model-control explicit` (the v2 repository
//! extension on the admin listener: load beside the serving version with no request lost, a
//! failed load that changes nothing, unload; only the repository loads), off by default, and
//! reloads that return their memory. Poll mode and canaries: tests/model_poll_and_canary.rs.

mod common;

use common::repository::{control, eventually, explicit, index, put_version};
use common::server::{series_sum, TestServer};
use common::*;
use serde_json::{json, Value};

/// `--model-control explicit`: a new version is loaded beside the serving one and takes over
/// with no request lost (traffic runs throughout); a corrupt version fails to load and leaves
/// the serving one untouched, saying why; unload stops serving; nothing outside the repository
/// or from the request body is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_control_loads_and_unloads_versions_while_serving_and_drops_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let train = std::fs::read(fixture("checkpoints/tiny_official_train.pth")).expect("fixture");
    let deploy = std::fs::read(fixture("checkpoints/tiny_official_deploy.pth")).expect("fixture");
    put_version(dir.path(), "m", 1, &train);
    let server = explicit(dir.path()).await;
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    let ready = |version: &str| ("m".to_owned(), version.to_owned(), "READY".to_owned());
    let unavailable =
        |version: &str| ("m".to_owned(), version.to_owned(), "UNAVAILABLE".to_owned());
    assert_eq!(index(&server).await, [ready("1")]);

    // Version 2 appears on disk: listed, not served until loaded.
    put_version(dir.path(), "m", 2, &deploy);
    assert_eq!(index(&server).await, [ready("1"), unavailable("2")]);

    // Load it while four clients classify without pause: every request is answered 200, by
    // version 1 before the swap and by version 2 after it, never by anything else.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = (0..4).map(|_| {
        let (stop, image) = (stop.clone(), image.clone());
        let client = server.client.clone();
        let url = server.url("/classify?model=m");
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let response = client
                    .post(&url)
                    .body(image.clone())
                    .send()
                    .await
                    .expect("send");
                let status = response.status().as_u16();
                let body: Value = response.json().await.expect("JSON");
                seen.push((status, body["model"]["version"].as_u64()));
            }
            seen
        })
    });
    let traffic: Vec<_> = traffic.collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, answer) = control(&server, "/v2/repository/models/m/load", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = Vec::new();
    for client in traffic {
        seen.extend(client.await.expect("client"));
    }
    assert!(seen.iter().all(|(status, _)| *status == 200), "{seen:?}");
    let first_new = seen.iter().position(|(_, v)| *v == Some(2));
    assert!(
        first_new.is_some(),
        "version 2 answered after the load: {seen:?}"
    );
    assert!(
        seen.iter().any(|(_, v)| *v == Some(1)),
        "version 1 answered before it"
    );
    assert!(seen.iter().all(|(_, v)| matches!(v, Some(1 | 2))));
    assert_eq!(index(&server).await, [unavailable("1"), ready("2")]);

    // A truncated version 3 fails to load: version 2 keeps serving, and everyone is told why.
    put_version(dir.path(), "m", 3, &train[..train.len() / 2]);
    let (status, answer) = control(&server, "/v2/repository/models/m/load", json!({})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error_type"], "load_failed");
    let error = answer["error"].as_str().expect("error");
    assert!(
        error.contains("version 3")
            && error.contains("3/weights.pth")
            && error.contains("unchanged"),
        "the version, the file and what became of the serving one: {error}"
    );
    let ready = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "still ready");
    let (status, body) = server.classify_with("model=m", &image).await;
    assert_eq!(
        (status, body["model"]["version"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    let (_, entries) = control(&server, "/v2/repository/index", json!({})).await;
    let three = entries
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["version"] == "3")
        .expect("version 3 listed");
    assert_eq!(three["state"], "UNAVAILABLE");
    assert!(
        three["reason"]
            .as_str()
            .expect("reason")
            .contains("version 3"),
        "{three}"
    );
    let metrics = server.metrics().await;
    assert_eq!(
        series_sum(
            &metrics,
            "repvgg_model_control_total",
            &[("op", "load"), ("model", "m"), ("result", "failed")]
        ),
        1.0
    );
    std::fs::remove_dir_all(dir.path().join("m/3")).expect("rm");

    // Nothing but the repository loads: no other paths, no files or configuration in the body.
    for (path, body, status, error_type) in [
        (
            "/v2/repository/models/..%2Fetc/load",
            json!({}),
            400,
            "bad_request",
        ),
        (
            "/v2/repository/models/.hidden/load",
            json!({}),
            400,
            "bad_request",
        ),
        (
            "/v2/repository/models/absent/load",
            json!({}),
            404,
            "unknown_model",
        ),
        (
            "/v2/repository/models/m/load",
            json!({"parameters": {"config": "{}"}}),
            400,
            "bad_request",
        ),
        (
            "/v2/repository/models/m/load",
            json!({"parameters": {"file:1/model.onnx": "AAAA"}}),
            400,
            "bad_request",
        ),
    ] {
        let (got, answer) = control(&server, path, body).await;
        assert_eq!(
            (got, answer["error_type"].as_str()),
            (status, Some(error_type)),
            "{path}: {answer}"
        );
    }

    // Unload: the model is gone from every door, and listed as unloaded.
    let (status, answer) = control(&server, "/v2/repository/models/m/unload", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let (status, body) = server.classify_with("model=m", &image).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(index(&server).await, [unavailable("1"), unavailable("2")]);
    // And it comes back with a load.
    let (status, answer) = control(&server, "/v2/repository/models/m/load", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.classify_with("model=m", &image).await.0, 200);
    // The public port has no control routes.
    let public = server
        .client
        .post(server.url("/v2/repository/index"))
        .send()
        .await
        .expect("send");
    assert_eq!(public.status(), 404);
    server.stop().await;
}

/// Without `--model-control explicit` the repository routes answer 400 and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_control_is_off_by_default() {
    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    let (status, answer) = control(&server, "/v2/repository/models/repvgg/unload", json!({})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error_type"], "model_control_off");
    assert_eq!(
        index(&server).await,
        [("repvgg".to_owned(), "1".to_owned(), "READY".to_owned())]
    );
    server.stop().await;
}

/// Reloads return their memory (Triton's #4528): A0 (36 MB of weights) unloaded and loaded
/// again ten times, then loaded beside itself and retired five times, stays near the first
/// cycle's resident size instead of keeping every retired version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_and_unload_cycles_return_their_memory() {
    use common::process::{proc_status_bytes, ServerProcess};
    let Some(a0) = shared_fixture("checkpoints/a0_official_train.pth") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let version = |n: u64| dir.path().join(format!("a0/{n}"));
    std::fs::create_dir_all(version(1)).expect("mkdir");
    std::fs::copy(&a0, version(1).join("a0.pth")).expect("copy");
    let admin_port = free_port().to_string();
    let server = ServerProcess::start(&[
        "--model-repository",
        dir.path().to_str().expect("utf-8"),
        "--model-control",
        "explicit",
        "--admin-port",
        &admin_port,
    ]);
    let admin = server.admin_addr.clone().expect("admin on");
    let pid = server.child.id().to_string();
    let client = reqwest::Client::new();
    let call = |op: &'static str| {
        let (client, admin) = (&client, &admin);
        async move {
            let response = client
                .post(format!("http://{admin}/v2/repository/models/a0/{op}"))
                .send()
                .await
                .expect("call");
            let status = response.status();
            assert_eq!(status, 200, "{}", response.text().await.unwrap_or_default());
            // A retired version stops once idle (nothing is in flight here): wait until it has.
            let stopped = eventually(async || {
                let metrics = text_of(client.get(format!("http://{admin}/metrics"))).await;
                metrics.contains("repvgg_model_versions_stopping 0\n")
            })
            .await;
            assert!(stopped, "the retired version stopped");
        }
    };
    let unload_and_load = || async {
        call("unload").await;
        call("load").await;
    };
    let beside_itself = || async {
        std::fs::create_dir_all(version(2)).expect("mkdir");
        std::fs::copy(&a0, version(2).join("a0.pth")).expect("copy");
        call("load").await; // version 2 beside 1, then 1 retired
        std::fs::remove_dir_all(version(2)).expect("rm");
        call("load").await; // version 1 again, then 2 retired
    };
    let mib = |b: u64| (b as f64 / (1 << 20) as f64).round();
    unload_and_load().await;
    let first = proc_status_bytes(&pid, "VmRSS");
    let mut sizes = Vec::new();
    for _ in 0..10 {
        unload_and_load().await;
        sizes.push(proc_status_bytes(&pid, "VmRSS"));
    }
    for _ in 0..5 {
        beside_itself().await;
        sizes.push(proc_status_bytes(&pid, "VmRSS"));
    }
    let sizes_mib: Vec<f64> = sizes.iter().map(|&b| mib(b)).collect();
    println!(
        "resident after the first cycle {} MiB, then {sizes_mib:?} MiB",
        mib(first)
    );
    // Measured on a 2-core EPYC (freed pages handed back after every load and stop, sizes read
    // once the retired version stopped): 111-121 MiB after the first cycle, 117-183 over ten
    // unload/load cycles and 148-248 over loads beside itself; a creep that is not explained
    // yet (the issue asks for 10 %: not met). Retired versions kept alive instead add ~115 MiB
    // every cycle; this bound catches that within two cycles.
    for size in sizes {
        assert!(
            size < first + (192 << 20),
            "resident {} MiB against {} MiB after the first cycle: {sizes_mib:?}",
            mib(size),
            mib(first)
        );
    }
}
