//! Graceful shutdown of the real binary: with requests in flight, SIGTERM turns readiness to
//! 503 at once, requests still routed during the lame-duck delay are served, every accepted
//! request gets its 200, and the process exits with 0.

mod common;

use std::time::Duration;

use common::process::ServerProcess;
use common::*;
use futures_util::future::join_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_cleanly() {
    // Every image waits up to 1.5 s in the queue for company: the requests are certainly in
    // flight when SIGTERM arrives, and answered during the drain.
    let server = ServerProcess::start(&[
        "--max-batch-size",
        "64",
        "--max-queue-delay-ms",
        "1500",
        "--drain-delay-ms",
        "1000",
    ]);
    let addr = server.addr.clone();
    let client = reqwest::Client::new();
    let image = std::fs::read(fixture("images/chelsea_q90.jpg")).expect("fixture");

    // Requests in flight: the A0 demo model takes tens of ms per image on two cores.
    let in_flight: Vec<_> = (0..12)
        .map(|_| {
            let request = client
                .post(format!("http://{addr}/classify"))
                .header("content-type", "image/jpeg")
                .body(image.clone())
                .send();
            tokio::spawn(async move {
                let status = request.await.map(|r| r.status().as_u16());
                (status, std::time::Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let terminated = std::time::Instant::now();
    server.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Lame duck: readiness says 503 so that load balancers stop routing here, while what they
    // still route (a new request, on a new connection) is served.
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .expect("readyz during drain");
    assert_eq!(ready.status(), 503);
    let late = reqwest::Client::new()
        .post(format!("http://{addr}/classify"))
        .header("content-type", "image/jpeg")
        .body(image.clone())
        .send()
        .await
        .expect("classify during the lame-duck delay");
    assert_eq!(
        late.status(),
        200,
        "a request routed during the delay is served"
    );

    let answered: Vec<_> = join_all(in_flight)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert!(
        answered.iter().all(|(_, at)| *at > terminated),
        "every request was still in flight at SIGTERM"
    );
    let statuses: Vec<u16> = answered
        .into_iter()
        .map(|(status, _)| status.expect("in-flight request answered"))
        .collect();
    assert!(
        statuses.iter().all(|&s| s == 200),
        "in-flight answers: {statuses:?}"
    );

    let (status, logs) = server.wait();
    assert_eq!(status.code(), Some(0), "logs:\n{}", logs.join("\n"));
    assert!(logs.iter().any(|l| l.contains("shutdown complete")));
    // One structured line per request, with its id and status.
    let request_lines: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request done" && v["span"]["route"] == "/classify")
        .collect();
    assert_eq!(request_lines.len(), 13, "one log line per classify request");
    assert!(request_lines
        .iter()
        .all(|v| v["fields"]["status"] == 200 && v["span"]["id"].is_string()));
    // The listener is gone.
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

/// A request still running when the grace period ends (here a client that never finishes its
/// body) does not hold the process: it exits within grace + 1 s, and the stalled client's
/// connection is answered or closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_ends_the_work_and_the_process() {
    use std::io::{Read, Write};

    let mut server = ServerProcess::start(&["--shutdown-grace-s", "1"]);
    let addr = server.addr.clone();
    // Headers and the first bytes of a 100 kB body, then nothing.
    let mut stalled = std::net::TcpStream::connect(&addr).expect("connect");
    stalled
        .write_all(
            b"POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: image/jpeg\r\n\
              content-length: 100000\r\n\r\n\xff\xd8\xff",
        )
        .expect("send");
    std::thread::sleep(Duration::from_millis(300));
    let terminated = std::time::Instant::now();
    server.terminate();
    loop {
        if server.child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            terminated.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM with a 1 s grace period"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = terminated.elapsed();
    let (status, logs) = server.wait();
    assert!(
        took <= Duration::from_secs(2),
        "exited {took:?} after SIGTERM (grace 1 s); logs:\n{}",
        logs.join("\n")
    );
    assert_eq!(status.code(), Some(0), "logs:\n{}", logs.join("\n"));
    // The stalled client sees its connection answered or closed, not left hanging.
    stalled
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut answer = Vec::new();
    let read = stalled.read_to_end(&mut answer);
    assert!(
        read.is_ok() || answer.starts_with(b"HTTP/1.1 503"),
        "stalled connection neither answered nor closed: {read:?}"
    );
}
