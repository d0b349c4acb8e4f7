//! The Open Inference Protocol (KServe v2) through the real clients: Triton's `tritonclient`
//! (HTTP and gRPC, pinned in tests/v2/requirements.txt, in .venv-triton from
//! scripts/setup-tritonclient.sh, which `make test` runs) and a plain HTTP client, against a
//! server on 127.0.0.1. The checks themselves are in tests/v2/client_checks.py; every answer is
//! compared with the same server's `/classify`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::process::ServerProcess;
use common::repository::{derived_checkpoint, put_file, put_version};
use common::server::{metric_value, TestServer};
use common::*;

/// Images the checked server admits at once: a request of five is refused with a 400 that says
/// so.
const QUEUE_CAPACITY: &str = "4";

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-triton/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup-tritonclient.sh (make test does)",
        python.display()
    );
    python
}

/// Runs client_checks.py with `args`; fails the test with its output unless it passed, and
/// returns what it printed.
fn client_checks(args: &[&str]) -> String {
    let script = fixture("../v2/client_checks.py");
    let output = Command::new(python())
        .arg(&script)
        .args(args)
        .arg("--fixtures")
        .arg(fixture(""))
        .output()
        .expect("running client_checks.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "client checks failed:\n{stdout}\n{stderr}"
    );
    stdout.into_owned()
}

/// Runs client_checks.py off the async runtime and requires `expected` passed checks.
async fn checks_pass<const N: usize>(args: [&str; N], expected: usize) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let report = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        client_checks(&args)
    })
    .await
    .expect("client checks");
    assert_eq!(
        report.matches("ok   ").count(),
        expected,
        "checks missing:\n{report}"
    );
}

async fn checks(protocol: &'static str) {
    let tiny = tiny();
    let server =
        TestServer::start(&["--checkpoint", &tiny, "--queue-capacity", QUEUE_CAPACITY]).await;
    // A server whose queue fills deterministically: two places, and a lone image waits 3 s
    // for company, so while one is queued a request of two gets 503 "queue full".
    let busy = TestServer::start(&[
        "--checkpoint",
        &tiny,
        "--queue-capacity",
        "2",
        "--max-queue-delay-ms",
        "3000",
        "--max-batch-size",
        "8",
    ])
    .await;
    let http = server.addr.to_string();
    let grpc = server.grpc_addr.to_string();
    let busy_http = busy.addr.to_string();
    let busy_grpc = busy.grpc_addr.to_string();
    let report = tokio::task::spawn_blocking(move || {
        client_checks(&[
            "checks",
            "--protocol",
            protocol,
            "--http",
            &http,
            "--grpc",
            &grpc,
            "--queue-capacity",
            QUEUE_CAPACITY,
            "--busy-http",
            &busy_http,
            "--busy-grpc",
            &busy_grpc,
        ])
    })
    .await
    .expect("client checks");
    assert!(
        report.matches("ok   ").count() >= 7,
        "checks missing:\n{report}"
    );
    // Every call was counted, under its protocol.
    let metrics = server.metrics().await;
    let series = match protocol {
        "http" => {
            r#"repvgg_requests_total{protocol="http",route="/v2/models/{model}/infer",status="200"}"#
        }
        _ => {
            r#"repvgg_requests_total{protocol="grpc",route="/inference.GRPCInferenceService/ModelInfer",status="Ok"}"#
        }
    };
    assert!(
        metric_value(&metrics, series) >= 5.0,
        "{series} in\n{metrics}"
    );
    server.stop().await;
    busy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_http_and_plain_http() {
    checks("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_grpc() {
    checks("grpc").await;
}

/// SIGTERM while v2 REST and gRPC requests wait in the batching queue: every one is answered,
/// and the process exits cleanly.
#[test]
fn sigterm_answers_accepted_v2_requests_on_both_protocols() {
    let grpc_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let admin_port = free_port().to_string();
    let tiny = tiny();
    let server = ServerProcess::start(&[
        "--checkpoint",
        &tiny,
        "--grpc-port",
        &grpc_port,
        // The client waits on /stats until every image is admitted, then sends SIGTERM.
        "--admin-port",
        &admin_port,
        // Hold each batch so that the requests are still queued when SIGTERM comes.
        "--max-queue-delay-ms",
        "1500",
        "--max-batch-size",
        "32",
    ]);
    let pid = server.child.id().to_string();
    let report = client_checks(&[
        "sigterm",
        "--http",
        &server.addr,
        "--grpc",
        &format!("127.0.0.1:{grpc_port}"),
        "--pid",
        &pid,
        "--admin",
        &format!("127.0.0.1:{admin_port}"),
    ]);
    assert!(
        report.contains("http 6/6, grpc 6/6"),
        "not every request answered:\n{report}"
    );
    let (status, logs) = server.wait();
    assert!(status.success(), "exit {status:?}:\n{}", logs.join("\n"));
    assert!(
        logs.iter().any(|l| l.contains("shutdown complete")),
        "{}",
        logs.join("\n")
    );
}

/// With `--api-keys-file`, tritonclient (HTTP and gRPC) infers with
/// `headers={"Authorization": "Bearer <key>"}` and is refused without it or with a wrong key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_passes_an_api_key_in_headers() {
    const KEY: &str = "tritonclient-0123456789";
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = TestServer::with_keys(dir.path(), &format!("inference {KEY}\n")).await;
    let (http, grpc) = (server.addr.to_string(), server.grpc_addr.to_string());
    checks_pass(["keys", "--http", &http, "--grpc", &grpc, "--key", KEY], 6).await;
    server.stop().await;
}

/// With `--tls-cert`/`--tls-key`, tritonclient infers over HTTPS (`ssl=True`) and gRPC over TLS
/// (`ssl=True, root_certificates=...`), trusting the test's CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_speaks_tls_on_both_ports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = common::tls::Ca::new("test CA");
    let leaf = ca.server();
    let cert = common::tls::write(dir.path(), "tls.crt", &leaf.cert);
    let key = common::tls::write(dir.path(), "tls.key", &leaf.key);
    let ca_file = common::tls::write(dir.path(), "ca.pem", &ca.pem);
    let server = TestServer::start(&[
        "--checkpoint",
        &tiny(),
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ])
    .await;
    let http = format!("localhost:{}", server.addr.port());
    let grpc = format!("localhost:{}", server.grpc_addr.port());
    checks_pass(
        ["tls", "--http", &http, "--grpc", &grpc, "--ca", &ca_file],
        2,
    )
    .await;
    server.stop().await;
}

/// `--model-control explicit` as tritonclient drives it, on a repository of two models with
/// different weights, class counts and labels (`m`: versions 1 and 2, both served; `n`: seven
/// classes): the repository index, each version's readiness, labels and logits against
/// `/classify`, then unload and load (HTTP on the admin listener, gRPC on the gRPC port, both
/// with an admin key); an inference key may not control models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_controls_models_in_a_repository() {
    const KEY: &str = "tritonclient-0123456789";
    const ADMIN: &str = "tritonclient-admin-0123456789";
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("inference {KEY}\nadmin {ADMIN}\n")).expect("keys");
    let models = dir.path().join("models");
    let tiny = std::fs::read(tiny()).expect("fixture");
    put_version(&models, "m", 1, &tiny);
    put_file(
        &models,
        "m",
        2,
        "m.safetensors",
        &derived_checkpoint(10, 1.5, 0.25),
    );
    let all = r#"{"version_policy": {"all": {}}}"#;
    std::fs::write(models.join("m/config.json"), all).expect("config");
    put_file(
        &models,
        "n",
        1,
        "n.safetensors",
        &derived_checkpoint(7, 0.5, -0.1),
    );
    let labels = "n-zero\nn-one\nn-two\nn-three\nn-four\nn-five\nn-six\n";
    std::fs::write(models.join("n/labels.txt"), labels).expect("labels");
    let config = r#"{"labels": "labels.txt"}"#;
    std::fs::write(models.join("n/config.json"), config).expect("config");
    let server = TestServer::start(&[
        "--model-repository",
        models.to_str().expect("utf-8"),
        "--model-control",
        "explicit",
        "--api-keys-file",
        keys.to_str().expect("utf-8"),
    ])
    .await;
    let (http, grpc) = (server.addr.to_string(), server.grpc_addr.to_string());
    let admin = server.admin_addr.to_string();
    let args = [
        "repository",
        "--http",
        &http,
        "--grpc",
        &grpc,
        "--admin",
        &admin,
        "--key",
        KEY,
        "--admin-key",
        ADMIN,
    ];
    checks_pass(args, 6).await;
    server.stop().await;
}
