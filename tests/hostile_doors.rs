//! The v2 REST and gRPC doors under attack (docs/reliability.md has a row for each test): the
//! amplification requests refused with the server's peak memory barely moved, the gRPC port's
//! connection cap, idle timeout and message arrival timeout, cancelled requests that leave no
//! count behind, progressive JPEGs with thousands of scans, and a hung inference run caught by
//! the watchdog.

mod common;

use std::time::{Duration, Instant};

use common::grpc::{self, MODEL_INFER};
use common::process::{proc_status_bytes, ServerProcess};
use common::server::{metric_value, series_sum, TestServer};
use common::*;
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

/// The server process's peak memory growth while `attack` runs.
async fn peak_growth<F: std::future::Future<Output = ()>>(
    server: &ServerProcess,
    attack: F,
) -> u64 {
    let pid = server.child.id().to_string();
    let before = proc_status_bytes(&pid, "VmHWM");
    attack.await;
    proc_status_bytes(&pid, "VmHWM").saturating_sub(before)
}

/// Warms the server's allocator with ordinary traffic so the peak measures the attack.
async fn warm(http: &str, grpc_addr: &str, image: &[u8]) {
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let answer = client
            .post(format!("http://{http}/classify"))
            .body(image.to_vec())
            .send()
            .await
            .expect("classify");
        assert_eq!(answer.status(), 200);
        let answer = grpc::call(
            grpc_addr,
            MODEL_INFER,
            &grpc::infer_request("repvgg", image),
            &[],
        )
        .await;
        assert_eq!(answer.status, 0, "{}", answer.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_amplification_attacks_are_refused_without_the_memory() {
    let port = free_port().to_string();
    let server = ServerProcess::start(&["--checkpoint", &tiny(), "--grpc-port", &port]);
    let grpc_addr = server.grpc_addr.clone().expect("gRPC on");
    let image = std::fs::read(fixture("images/chelsea_q90.jpg")).expect("fixture");
    warm(&server.addr, &grpc_addr, &image).await;

    // v2 REST: one photo, `logits` asked for 20,000 times (447 KB took the process to 1.2 GB).
    use base64::Engine as _;
    let outputs: Vec<_> = (0..20_000)
        .map(|_| serde_json::json!({"name": "logits"}))
        .collect();
    let body = serde_json::json!({
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                    "data": [base64::engine::general_purpose::STANDARD.encode(&image)]}],
        "outputs": outputs,
    });
    let url = format!("http://{}/v2/models/repvgg/infer", server.addr);
    let growth = peak_growth(&server, async {
        let answer = reqwest::Client::new()
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("infer");
        assert_eq!(answer.status(), 400);
        let error: serde_json::Value = answer.json().await.expect("JSON error");
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|e| e.contains("at most 2")),
            "{error}"
        );
    })
    .await;
    assert!(
        growth < 64 * MIB,
        "v2 REST attack: peak RSS grew by {} MiB",
        growth / MIB
    );

    // gRPC: 2,000,000 empty `inputs` entries, 4 MB on the wire (it took 748 MB).
    let attack: Vec<u8> = std::iter::repeat_n([0x2A_u8, 0x00], 2_000_000)
        .flatten()
        .collect();
    let growth = peak_growth(&server, async {
        let answer = grpc::call(&grpc_addr, MODEL_INFER, &attack, &[]).await;
        assert_eq!(answer.status, 3, "INVALID_ARGUMENT: {}", answer.message);
        assert!(answer.message.contains("inputs"), "{}", answer.message);
    })
    .await;
    assert!(
        growth < 64 * MIB,
        "gRPC attack: peak RSS grew by {} MiB",
        growth / MIB
    );
}

/// Whether the server closes a fresh connection at once (EOF or reset within `within`).
async fn closed_at_once(addr: &str, within: Duration) -> bool {
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, socket.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_port_caps_connections() {
    let server = TestServer::start(&["--checkpoint", &tiny(), "--max-connections", "50"]).await;
    let addr = server.grpc_addr.to_string();
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(grpc::connect(&addr).await);
    }
    let started = Instant::now();
    assert!(
        closed_at_once(&addr, Duration::from_secs(1)).await,
        "connection 51 was kept open"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let metrics = server.metrics().await;
    assert_eq!(metric_value(&metrics, "repvgg_grpc_connections"), 50.0);
    assert!(metric_value(&metrics, "repvgg_grpc_connections_rejected_total") >= 1.0);
    // The cap counts connections, not calls: one of the 50 still infers.
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    let client = held.pop().expect("a connection");
    let answer = grpc::call_on(
        client,
        &addr,
        MODEL_INFER,
        &grpc::infer_request("repvgg", &image),
        &[],
    )
    .await;
    assert_eq!(answer.status, 0, "{}", answer.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_grpc_connections_do_not_keep_a_normal_call_out() {
    let port = free_port().to_string();
    let server = ServerProcess::start(&[
        "--checkpoint",
        &tiny(),
        "--grpc-port",
        &port,
        "--max-connections",
        "20",
        "--idle-timeout-ms",
        "300",
    ]);
    let addr = server.grpc_addr.clone().expect("gRPC on");
    // 1,000 connections that never send a byte: 20 take every place, the rest are closed.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        if let Ok(socket) = tokio::net::TcpStream::connect(&addr).await {
            idle.push(socket);
        }
    }
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    let message = grpc::infer_request("repvgg", &image);
    let started = Instant::now();
    // A client reconnects when its connection is refused, as gRPC clients do.
    let answer = loop {
        let attempt = async {
            let socket = tokio::net::TcpStream::connect(&addr).await.ok()?;
            let (client, connection) = h2::client::handshake(socket).await.ok()?;
            tokio::spawn(connection);
            grpc::try_call_on(client, &addr, MODEL_INFER, &message, &[])
                .await
                .ok()
        };
        match tokio::time::timeout(Duration::from_millis(500), attempt).await {
            Ok(Some(answer)) => break answer,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        assert!(started.elapsed() < Duration::from_secs(2), "no call got in");
    };
    let took = started.elapsed();
    assert_eq!(answer.status, 0, "{}", answer.message);
    assert!(took <= Duration::from_secs(1), "the call took {took:?}");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_grpc_message_is_cut_within_the_arrival_timeout() {
    let server = TestServer::start(&["--checkpoint", &tiny(), "--body-timeout-ms", "500"]).await;
    let addr = server.grpc_addr.to_string();
    let started = Instant::now();
    let answer = grpc::half_message(&addr, 100_000, 1_000, Duration::from_secs(3)).await;
    let took = started.elapsed();
    assert_eq!(answer, Some(Ok(4)), "DEADLINE_EXCEEDED after {took:?}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "cut after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_leave_no_count_and_no_place_behind() {
    // Every image waits 2 s in the queue for company: the clients leave before that.
    let server = TestServer::start(&[
        "--checkpoint",
        &tiny(),
        "--max-queue-delay-ms",
        "2000",
        "--max-batch-size",
        "256",
        "--queue-capacity",
        "512",
    ])
    .await;
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    let http_request = format!(
        "POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: {}\r\n\r\n",
        image.len()
    );
    let addr = server.addr;
    let http = (0..100).map(|_| {
        let head = http_request.clone();
        let image = image.clone();
        async move {
            let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
            socket.write_all(head.as_bytes()).await.expect("head");
            socket.write_all(&image).await.expect("body");
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(socket); // gone while its image is queued
        }
    });
    let grpc_addr = server.grpc_addr.to_string();
    let message = grpc::infer_request("repvgg", &image);
    let grpc = (0..100).map(|_| async {
        // gRPC deadline of 300 ms: tonic cancels the call while its image is queued.
        let answer = grpc::call(
            &grpc_addr,
            MODEL_INFER,
            &message,
            &[("grpc-timeout", "300m")],
        )
        .await;
        // tonic ends a call past its grpc-timeout with CANCELLED ("Timeout expired").
        assert!(
            [1, 4].contains(&answer.status),
            "cancelled by its deadline: {} {}",
            answer.status,
            answer.message
        );
    });
    tokio::join!(join_all(http), join_all(grpc));

    let deadline = Instant::now() + Duration::from_secs(5);
    let (inflight, admitted) = loop {
        let metrics = server.metrics().await;
        // This scrape is itself a request in flight.
        let inflight = metric_value(&metrics, "repvgg_inflight_requests") - 1.0;
        let admitted = metric_value(&metrics, "repvgg_admission_in_use");
        if (inflight, admitted) == (0.0, 0.0) || Instant::now() > deadline {
            break (inflight, admitted);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(inflight, 0.0, "requests still counted in flight");
    assert_eq!(admitted, 0.0, "admission places still taken");
    let metrics = server.metrics().await;
    assert!(metrics.contains(r#"repvgg_queue_depth{model="repvgg",version="1"}"#));
    assert_eq!(series_sum(&metrics, "repvgg_queue_depth", &[]), 0.0);
    assert_eq!(metric_value(&metrics, "repvgg_admission_capacity"), 512.0);
    // And the places are really free: a request is served at once.
    assert_eq!(server.classify(image).await.status(), 200);
}

/// `camera_progressive.jpg` with its shortest scan (569 bytes) repeated `scans` more times
/// before the end-of-image marker.
fn progressive_with_scans(scans: usize) -> Vec<u8> {
    let jpeg = std::fs::read(fixture("images/camera_progressive.jpg")).expect("fixture");
    let eoi = jpeg.len() - 2;
    let mut starts: Vec<usize> = (0..eoi)
        .filter(|&i| jpeg[i..i + 2] == [0xFF, 0xDA])
        .collect();
    starts.push(eoi);
    let shortest = starts
        .windows(2)
        .min_by_key(|w| w[1] - w[0])
        .expect("scans");
    let mut crafted = jpeg[..eoi].to_vec();
    for _ in 0..scans {
        crafted.extend_from_slice(&jpeg[shortest[0]..shortest[1]]);
    }
    crafted.extend_from_slice(&[0xFF, 0xD9]);
    crafted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_jpegs_with_thousands_of_scans_do_not_hold_the_workers() {
    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    let crafted = progressive_with_scans(5000);
    let normal = std::fs::read(fixture("images/chelsea_q90.jpg")).expect("fixture");
    let attacks = join_all((0..4).map(|_| server.classify(crafted.clone())));
    let started = Instant::now();
    let (attacks, answer) = tokio::join!(attacks, async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let answer = server.classify(normal.clone()).await;
        (answer.status(), started.elapsed())
    });
    assert_eq!(answer.0, 200);
    assert!(
        answer.1 < Duration::from_secs(1),
        "a normal request took {:?} beside four crafted JPEGs",
        answer.1
    );
    for attack in attacks {
        assert_eq!(attack.status(), 422);
        let body: serde_json::Value = attack.json().await.expect("JSON");
        assert_eq!(body["error_type"], "too_many_scans", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_batch_fails_readiness_and_the_server_within_the_watchdog_bound() {
    use repvgg_serve::supervise::FaultPoint;
    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    assert_eq!(server.classify(image.clone()).await.status(), 200);
    // The tiny model warms up in milliseconds: the bound is the floor.
    let bound = repvgg_serve::supervise::WATCHDOG_FLOOR;
    server.state.supervisor.inject(FaultPoint::InferenceHang);
    let started = Instant::now();
    let answer = server.classify(image).await;
    let took = started.elapsed();
    assert_eq!(answer.status(), 500);
    let body: serde_json::Value = answer.json().await.expect("JSON");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("hung")),
        "{body}"
    );
    assert!(
        took >= bound && took < bound + Duration::from_millis(1500),
        "answered after {took:?} (bound {bound:?})"
    );
    while server.state.readiness.is_ready() && started.elapsed() < bound + Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !server.state.readiness.is_ready(),
        "/readyz would still say 200"
    );
    let ended = server.ended_within(Duration::from_secs(5)).await;
    let err = ended.expect_err("the server ends with an error (the binary exits non-zero)");
    assert!(err.to_string().contains("watchdog"), "{err}");
}
