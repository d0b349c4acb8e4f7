//! Connection limits and the end of the grace period, over real sockets: the open-connection
//! cap answers 503 beyond it, idle and slow-header connections are closed by the idle timeout,
//! and connections still busy when the grace period ends are closed in-process.

mod common;

use std::time::{Duration, Instant};

use common::server::{metric_value, TestServer};
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `within` passes); what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_json_and_the_cap_frees_up() {
    let tiny = tiny();
    let server = TestServer::start(&["--checkpoint", &tiny, "--max-connections", "8"]).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    // Let the accept loop take all eight before the ninth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut ninth = TcpStream::connect(server.addr).await.expect("connect");
    ninth
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut ninth, Duration::from_secs(3))
        .await
        .expect("the refused connection is closed within the refusal time");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let body: Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).expect("body")).expect("JSON body");
    assert_eq!(body["error_type"], "too_many_connections");
    assert!(body["error"].as_str().expect("message").contains("limit 8"));

    drop(held);
    // The freed slots serve again, as soon as the server has seen the sockets close; refusals
    // meanwhile are counted.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut refused = 1;
    loop {
        let r = server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .expect("answered");
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        refused += 1;
        assert!(Instant::now() < deadline, "not served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(&metrics, "repvgg_http_connections_rejected_total"),
        f64::from(refused)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_connections_are_closed_by_the_idle_timeout() {
    let tiny = tiny();
    let server = TestServer::start(&["--checkpoint", &tiny, "--idle-timeout-ms", "400"]).await;

    // Opened, nothing sent.
    let started = Instant::now();
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    read_until_closed(&mut idle, Duration::from_secs(3))
        .await
        .expect("idle connection closed");
    let idle_took = started.elapsed();

    // Headers sent one byte every 100 ms: never complete within 400 ms.
    let started = Instant::now();
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    let trickle = async {
        for byte in b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(8), trickle)
        .await
        .expect("trickle ends");
    let slow_closed = read_until_closed(&mut slow, Duration::from_secs(1)).await;
    let slow_took = started.elapsed();

    // Kept alive after a request, then idle.
    let mut kept = TcpStream::connect(server.addr).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let answer = read_until_closed(&mut kept, Duration::from_secs(3))
        .await
        .expect("kept-alive connection closed when idle");
    let kept_took = started.elapsed();

    assert!(
        idle_took >= Duration::from_millis(350) && idle_took < Duration::from_millis(1400),
        "idle connection closed after {idle_took:?} (timeout 400 ms)"
    );
    assert!(slow_closed.is_some(), "slow-header connection still open");
    // Closed at the 400 ms timeout, long before its 7 s of headers end: without the timeout
    // the trickle would finish (or hyper's own 30 s default would close it).
    assert!(
        slow_took < Duration::from_millis(2500),
        "slow-header connection lasted {slow_took:?} (timeout 400 ms)"
    );
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(
        kept_took < Duration::from_millis(1400),
        "kept-alive connection closed after {kept_took:?}"
    );
    server.stop().await;
}

/// A request whose body stalls (the body timeout is longer than the grace period) is cut when
/// the grace period ends: the server finishes its shutdown within grace + 1 s and the stalled
/// connection is closed in-process, not left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_busy_past_the_grace_period_are_closed_in_process() {
    let tiny = tiny();
    let server = TestServer::start(&[
        "--checkpoint",
        &tiny,
        "--shutdown-grace-s",
        "1",
        "--body-timeout-ms",
        "60000",
    ])
    .await;
    let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
    stalled
        .write_all(
            b"POST /classify HTTP/1.1\r\nhost: test\r\ncontent-type: image/png\r\n\
              content-length: 100000\r\n\r\n\x89PNG",
        )
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let mut server = server;
    server.request_stop();
    server
        .ended_within(Duration::from_secs(3))
        .await
        .expect("clean shutdown");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2000),
        "shutdown took {took:?} with a 1 s grace period"
    );
    let closed = read_until_closed(&mut stalled, Duration::from_secs(1)).await;
    assert!(closed.is_some(), "the stalled connection is still open");
}
