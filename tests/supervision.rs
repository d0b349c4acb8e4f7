//! Supervision: when a part of the pipeline dies (a panic injected into the batching driver
//! or an inference thread), readiness drops, every request still waiting gets 500 within 1 s
//! of the fault (a healthy session may finish the batch it holds), and the server ends with an
//! error (the binary then exits non-zero). The second is counted from the fault, not from
//! the sending: decoding six images in a debug build on a busy CI machine is not what is
//! measured.

mod common;

use std::time::{Duration, Instant};

use common::server::TestServer;
use common::*;
use futures_util::future::join_all;
use repvgg_serve::supervise::FaultPoint;

async fn fault_fails_waiting_requests_and_the_server(point: FaultPoint) {
    // A queue delay keeps requests waiting in the queue when the fault strikes.
    let server = TestServer::start(&[
        "--checkpoint",
        &tiny(),
        "--max-queue-delay-ms",
        "300",
        "--max-batch-size",
        "64",
    ])
    .await;
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    assert_eq!(
        server.classify(image.clone()).await.status(),
        200,
        "serves before the fault"
    );

    server.state.supervisor.inject(point);
    let supervisor = server.state.supervisor.clone();
    let fault = tokio::spawn(async move {
        supervisor.failed().await;
        Instant::now()
    });
    let answers = join_all((0..6).map(|_| {
        server
            .client
            .post(server.url("/classify"))
            .body(image.clone())
            .send()
    }))
    .await;
    let answered = Instant::now();
    // The queued images are shared between the idle sessions when the delay ends: the batch
    // the dying thread took fails; a healthy session may finish its share first (200).
    let mut failed = 0;
    for answer in answers {
        let answer = answer.expect("answered");
        if answer.status() == 200 && point == FaultPoint::Inference {
            continue;
        }
        assert_eq!(answer.status(), 500, "{point:?}");
        failed += 1;
        let body: serde_json::Value = answer.json().await.expect("JSON");
        assert_eq!(body["error_type"], "inference_failed", "{body}");
        // Jobs of the batch the dying thread held, or every other waiting job.
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("pipeline failed") || e.contains("thread died")),
            "{body}"
        );
    }
    assert!(failed >= 1, "{point:?}: no request failed");
    let fault = fault.await.expect("the failure is recorded");
    let took = answered.saturating_duration_since(fault);
    assert!(
        took <= Duration::from_secs(1),
        "{point:?}: waiting requests answered {took:?} after the fault"
    );
    while server.state.readiness.is_ready() && fault.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !server.state.readiness.is_ready(),
        "{point:?}: readiness still up 1 s after the fault"
    );

    assert!(server
        .state
        .supervisor
        .failure()
        .is_some_and(|c| c.contains("panicked")));
    let ended = server.ended_within(Duration::from_secs(5)).await;
    let err = ended.expect_err("the server ends with an error (non-zero exit)");
    assert!(err.to_string().contains("pipeline failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_batching_driver_fails_waiting_requests_and_the_server() {
    fault_fails_waiting_requests_and_the_server(FaultPoint::Driver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_inference_thread_fails_waiting_requests_and_the_server() {
    fault_fails_waiting_requests_and_the_server(FaultPoint::Inference).await;
}
