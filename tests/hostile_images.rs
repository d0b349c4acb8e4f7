//! Decompression bombs within the limits: a 7000 x 7000 RGBA PNG at 16 bits (49 MP, under the
//! 50 MP default; ~0.4 MB on the wire, 392 MB decoded) sent 16 times at once to the real binary
//! with default flags. Every request is answered (200, or JSON 4xx/503: the decode budget turns
//! away what does not fit), the server stays up, and its peak RSS stays under 1 GiB.

mod common;

use std::time::Duration;

use common::process::{proc_status_bytes, ServerProcess};
use common::{bomb, fixture};
use futures_util::future::join_all;

const PEAK_RSS_LIMIT: u64 = 1 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_bombs_stay_under_a_gibibyte() {
    let bomb = bomb();
    assert!(bomb.len() < 2 << 20, "the bomb is small on the wire");
    // Default flags (no cache is the harness's, not a limit).
    let mut server = ServerProcess::start(&[]);
    let addr = server.addr.clone();
    let client = reqwest::Client::new();
    let answers = join_all((0..16).map(|_| {
        client
            .post(format!("http://{addr}/classify"))
            .header("content-type", "image/png")
            .body(bomb.clone())
            .timeout(Duration::from_secs(60))
            .send()
    }))
    .await;
    let mut statuses = Vec::new();
    for answer in answers {
        let response = answer.expect("every bomb answered");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("a JSON answer");
        assert!(
            status == 200 || (400..500).contains(&status) || status == 503,
            "status {status}: {body}"
        );
        if status != 200 {
            assert!(body["error"].is_string(), "{status}: {body}");
        }
        statuses.push(status);
    }
    let peak = proc_status_bytes(&server.child.id().to_string(), "VmHWM");
    eprintln!(
        "bomb statuses {statuses:?}; server peak RSS {} MiB",
        peak >> 20
    );
    // Still up and serving.
    let good = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    let response = client
        .post(format!("http://{addr}/classify"))
        .body(good)
        .send()
        .await
        .expect("server still up");
    assert_eq!(response.status(), 200);
    assert!(
        server.child.try_wait().expect("wait").is_none(),
        "the server process ended"
    );
    assert!(
        peak < PEAK_RSS_LIMIT,
        "peak RSS {} MiB >= 1 GiB; statuses {statuses:?}",
        peak >> 20
    );
}
