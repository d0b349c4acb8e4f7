//! Who may call what, against the real server: API keys on `/classify`, v2 REST, gRPC and the
//! admin listener (401 / UNAUTHENTICATED without or with a wrong key, 403 for a key of another
//! role), refused uploads answered (not reset) and kept out of the body budget, probes that stay
//! open, a key file rotated under a running server, gRPC health that follows readiness, and
//! CORS only for the origins configured.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::grpc::{self, MODEL_INFER};
use common::server::{metric_value, TestServer};
use common::*;
use prost::Message;
use serde_json::{json, Value};

const INFERENCE_KEY: &str = "inference-0123456789abcdef";
const ADMIN_KEY: &str = "admin-fedcba9876543210";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// Writes `text` as the key file the way a Kubernetes Secret changes: a new file renamed over
/// the old one.
fn write_keys(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("write keys");
    std::fs::rename(&next, path).expect("rename keys");
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn image() -> Vec<u8> {
    std::fs::read(fixture("images/chelsea.png")).expect("fixture")
}

/// Status and JSON body of `request`.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The 401 every refused HTTP call gets: the same words whatever was wrong.
fn assert_unauthorized((status, body): (u16, Value), what: &str) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["error_type"], "unauthorized", "{what}");
    assert_eq!(
        body["error"], "a valid API key is required: send `Authorization: Bearer <key>`",
        "{what}"
    );
}

/// The admin listener's `/metrics`, with the admin key.
async fn admin_metrics(server: &TestServer) -> String {
    let request = server.client.get(server.admin_url("/metrics"));
    text_of(request.header("authorization", bearer(ADMIN_KEY))).await
}

/// `grpc.health.v1.Health/Check` for the whole server: the serving status (1 SERVING,
/// 2 NOT_SERVING).
async fn grpc_health(addr: &str) -> i32 {
    let answer = grpc::call(addr, HEALTH_CHECK, &[], &[]).await;
    assert_eq!(answer.status, 0, "{}", answer.message);
    tonic_health::pb::HealthCheckResponse::decode(answer.body)
        .expect("HealthCheckResponse")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_every_door_and_probes_stay_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = format!("# test keys\ninference {INFERENCE_KEY}\nadmin {ADMIN_KEY}\n");
    let (server, _) = TestServer::with_keys(dir.path(), &keys).await;
    let client = &server.client;
    let image = image();
    let classify = || client.post(server.url("/classify")).body(image.clone());
    let v2_body = json!({"inputs": [{
        "name": "image", "shape": [1], "datatype": "BYTES",
        "data": [base64::engine::general_purpose::STANDARD.encode(&image)],
    }]});
    let v2 = || {
        client
            .post(server.url("/v2/models/repvgg/infer"))
            .json(&v2_body)
    };

    // The public port without a key, with a wrong one, or a malformed header: one 401.
    assert_unauthorized(answer(classify()).await, "/classify, no key");
    assert_unauthorized(
        answer(classify().header("authorization", bearer("inference-0123456789abcdeX"))).await,
        "/classify, wrong key",
    );
    assert_unauthorized(
        answer(classify().header("authorization", INFERENCE_KEY)).await,
        "/classify, no Bearer scheme",
    );
    let refused = classify().send().await.expect("request");
    assert_eq!(
        refused
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_unauthorized(answer(v2()).await, "v2 infer, no key");
    assert_unauthorized(
        answer(v2().header("authorization", bearer("x".repeat(40).as_str()))).await,
        "v2 infer, wrong key",
    );
    assert_unauthorized(
        answer(client.get(server.url("/v1/models"))).await,
        "/v1/models",
    );

    // With the inference key.
    let (status, body) = answer(classify().header("authorization", bearer(INFERENCE_KEY))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = answer(v2().header("authorization", bearer(INFERENCE_KEY))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_name"], "repvgg");
    // An admin key is not an inference key.
    let (status, body) = answer(classify().header("authorization", bearer(ADMIN_KEY))).await;
    assert_eq!(
        (status, body["error_type"].clone()),
        (403, json!("forbidden"))
    );

    // gRPC: the same keys in metadata.
    let grpc_addr = server.grpc_addr.to_string();
    let message = grpc::infer_request("repvgg", &image);
    let no_key = grpc::call(&grpc_addr, MODEL_INFER, &message, &[]).await;
    assert_eq!(no_key.status, 16, "UNAUTHENTICATED: {}", no_key.message);
    assert!(no_key.message.contains("API key"), "{}", no_key.message);
    let wrong = bearer("inference-0123456789abcdeX");
    let wrong_key = grpc::call(
        &grpc_addr,
        MODEL_INFER,
        &message,
        &[("authorization", &wrong)],
    )
    .await;
    assert_eq!(
        (wrong_key.status, &wrong_key.message),
        (16, &no_key.message)
    );
    let good = bearer(INFERENCE_KEY);
    let allowed = grpc::call(
        &grpc_addr,
        MODEL_INFER,
        &message,
        &[("authorization", &good), ("x-request-id", "trace-me-42")],
    )
    .await;
    assert_eq!(allowed.status, 0, "{}", allowed.message);
    assert_eq!(
        allowed.request_id, "trace-me-42",
        "gRPC echoes x-request-id"
    );

    // Probes need no key, on both protocols.
    for probe in ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"] {
        let status = client
            .get(server.url(probe))
            .send()
            .await
            .expect("probe")
            .status();
        assert_eq!(status, 200, "{probe}");
    }
    assert_eq!(grpc_health(&grpc_addr).await, 1, "SERVING, without a key");
    let live = grpc::call(
        &grpc_addr,
        "/inference.GRPCInferenceService/ServerLive",
        &[],
        &[],
    )
    .await;
    assert_eq!(live.status, 0, "{}", live.message);

    // The admin listener takes the admin key only.
    for path in ["/metrics", "/stats", "/v1/models"] {
        let get = || client.get(server.admin_url(path));
        assert_unauthorized(answer(get()).await, path);
        let (status, body) = answer(get().header("authorization", bearer(INFERENCE_KEY))).await;
        assert_eq!(
            (status, body["error_type"].clone()),
            (403, json!("forbidden"))
        );
        let status = get()
            .header("authorization", bearer(ADMIN_KEY))
            .send()
            .await
            .expect("admin")
            .status();
        assert_eq!(status, 200, "{path} with the admin key");
    }
    let metrics = admin_metrics(&server).await;
    let denied = |protocol: &str, reason: &str| {
        metric_value(
            &metrics,
            &format!(r#"repvgg_access_denied_total{{protocol="{protocol}",reason="{reason}"}}"#),
        )
    };
    // Seven refusals on the public port and three on the admin listener; the admin key on
    // /classify and the inference key on the three admin routes.
    assert_eq!(denied("http", "unauthorized"), 10.0, "{metrics}");
    assert_eq!(denied("http", "forbidden"), 4.0, "{metrics}");
    assert_eq!(denied("grpc", "unauthorized"), 2.0, "{metrics}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_file_applies_within_seconds_on_open_connections() {
    const OLD: &str = "old-key-0123456789abcdef";
    const NEW: &str = "new-key-0123456789abcdef";
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = format!("admin {ADMIN_KEY}\n");
    let (server, keys) =
        TestServer::with_keys(dir.path(), &format!("inference {OLD}\n{admin}")).await;
    let grpc_addr = server.grpc_addr.to_string();
    // One HTTP/2 connection for the whole test: rotation must not need a new one.
    let connection = grpc::connect(&grpc_addr).await;
    let message = grpc::infer_request("repvgg", &image());
    let status_with = |key: &'static str| {
        let connection = connection.clone();
        let (addr, message) = (grpc_addr.clone(), message.clone());
        async move {
            let header = bearer(key);
            grpc::try_call_on(
                connection,
                &addr,
                MODEL_INFER,
                &message,
                &[("authorization", &header)],
            )
            .await
            .expect("the connection stays open")
            .status
        }
    };
    assert_eq!(status_with(OLD).await, 0);
    assert_eq!(status_with(NEW).await, 16);

    write_keys(&keys, &format!("inference {NEW}\n{admin}"));
    let rotated = Instant::now();
    while status_with(NEW).await != 0 {
        assert!(
            rotated.elapsed() < Duration::from_secs(5),
            "the new key was not accepted within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_with(OLD).await, 16, "the removed key is refused");

    // A broken file keeps the keys in force.
    write_keys(&keys, "inference short\n");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status_with(NEW).await, 0, "an invalid file changes nothing");
    let metrics = admin_metrics(&server).await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"repvgg_api_key_reloads_total{result="applied"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"repvgg_api_key_reloads_total{result="invalid"}"#
        ),
        1.0
    );
    server.stop().await;
}

/// The head of a raw HTTP/1.1 `POST /classify` without a key, announcing `length` bytes.
fn keyless_upload_head(length: usize) -> String {
    format!(
        "POST /classify HTTP/1.1\r\nhost: test\r\ncontent-type: application/octet-stream\r\n\
         content-length: {length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_gets_its_401_instead_of_a_reset_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) =
        TestServer::with_keys(dir.path(), &format!("inference {INFERENCE_KEY}\n")).await;
    // Far more than the socket buffers hold: a server that answered and closed without reading
    // it would have the kernel reset the connection under the client's feet.
    const LENGTH: usize = 24 * 1024 * 1024;
    let mut socket = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    socket
        .write_all(keyless_upload_head(LENGTH).as_bytes())
        .await
        .expect("head");
    let body = vec![0x5au8; LENGTH];
    socket
        .write_all(&body)
        .await
        .expect("the whole body is taken");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .expect("read without a reset");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.contains("\"error_type\":\"unauthorized\""),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_takes_nothing_from_the_body_budget() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    write_keys(&keys, &format!("inference {INFERENCE_KEY}\n"));
    // Room for one image (about 240 KB) next to nothing else large.
    let server = TestServer::start(&[
        "--checkpoint",
        &tiny(),
        "--api-keys-file",
        keys.to_str().expect("utf-8"),
        "--max-body-bytes",
        "1000000",
        "--max-inflight-body-bytes",
        "1000000",
    ])
    .await;
    // A keyless client sends 900 KB of a 1 MB body and stalls, while the server throws it away.
    let mut stalled = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stalled
        .write_all(keyless_upload_head(1_000_000).as_bytes())
        .await
        .expect("head");
    stalled.write_all(&vec![0u8; 900_000]).await.expect("part");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The budget is whole for a client with the key.
    let (status, body) = answer(
        server
            .client
            .post(server.url("/classify"))
            .header("authorization", bearer(INFERENCE_KEY))
            .body(image()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    drop(stalled);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_readiness_into_the_lame_duck() {
    let mut server =
        TestServer::start(&["--checkpoint", &tiny(), "--drain-delay-ms", "3000"]).await;
    let grpc_addr = server.grpc_addr.to_string();
    assert_eq!(grpc_health(&grpc_addr).await, 1, "SERVING when ready");
    let service = tonic_health::pb::HealthCheckRequest {
        service: "inference.GRPCInferenceService".into(),
    }
    .encode_to_vec();
    let answer = grpc::call(&grpc_addr, HEALTH_CHECK, &service, &[]).await;
    let status = tonic_health::pb::HealthCheckResponse::decode(answer.body)
        .expect("response")
        .status;
    assert_eq!(status, 1, "the inference service is SERVING");

    server.request_stop();
    let stopping = Instant::now();
    loop {
        let status = grpc_health(&grpc_addr).await;
        if status == 2 {
            break;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(2),
            "still {status} during the lame duck"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still answering (NOT_SERVING) while the lame duck lasts.
    assert!(!server.state.readiness.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_configured_origins() {
    const ORIGIN: &str = "https://app.example.com";
    let preflight = |server: &TestServer, origin: &str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, server.url("/classify"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed_origin = |response: &reqwest::Response| {
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    let server = TestServer::start(&["--checkpoint", &tiny(), "--cors-allow-origin", ORIGIN]).await;
    let answer = preflight(&server, ORIGIN).await.expect("preflight");
    assert_eq!(allowed_origin(&answer).as_deref(), Some(ORIGIN));
    let headers = answer
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    let other = preflight(&server, "https://evil.example")
        .await
        .expect("preflight");
    assert_eq!(allowed_origin(&other), None);
    let response = server
        .client
        .post(server.url("/classify"))
        .header("origin", ORIGIN)
        .body(image())
        .send()
        .await
        .expect("classify");
    assert_eq!(response.status(), 200);
    assert_eq!(allowed_origin(&response).as_deref(), Some(ORIGIN));
    server.stop().await;

    let closed = TestServer::start(&["--checkpoint", &tiny()]).await;
    let answer = preflight(&closed, ORIGIN).await.expect("preflight");
    assert_eq!(allowed_origin(&answer), None, "no CORS unless configured");
    closed.stop().await;
}
