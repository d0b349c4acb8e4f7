//! Dynamic batching through the real server: concurrent requests share batches and get the
//! same answers as one at a time; a full queue answers 503 without computing; an expired
//! deadline answers 504 without computing, also while the image waits for a preprocessing
//! worker.

mod common;

use common::server::{series_sum, TestServer};
use common::*;
use futures_util::future::join_all;
use serde_json::Value;

async fn post_image(server: &TestServer, bytes: Vec<u8>) -> (u16, Value, Option<String>) {
    let response = server
        .client
        .post(server.url("/classify?logits=true"))
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (status, response.json().await.expect("JSON"), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_batches_and_answer_as_one_at_a_time() {
    let checkpoint = fixture("checkpoints/tiny_official_train.pth");
    let server = TestServer::start(&[
        "--checkpoint",
        checkpoint.to_str().expect("utf-8"),
        "--max-batch-size",
        "8",
        "--max-queue-delay-ms",
        "300",
    ])
    .await;
    let images: Vec<Vec<u8>> = IMAGES[..8]
        .iter()
        .map(|i| std::fs::read(fixture(&format!("images/{i}"))).expect("fixture"))
        .collect();
    let concurrent = join_all(images.iter().map(|b| post_image(&server, b.clone()))).await;
    let metrics = server.metrics().await;
    let batches = series_sum(&metrics, "repvgg_batch_size_count", &[]);
    let images_batched = series_sum(&metrics, "repvgg_batch_size_sum", &[]);
    assert_eq!(images_batched, 8.0);
    assert!(
        batches < 8.0,
        "8 concurrent requests ran in {batches} batches: no batching"
    );
    for (i, bytes) in images.iter().enumerate() {
        let (status, alone, _) = post_image(&server, bytes.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(concurrent[i].0, 200);
        let diff = max_abs_diff(&logits(&concurrent[i].1), &logits(&alone));
        assert!(
            diff < 1e-4,
            "{}: batched vs alone differ by {diff}",
            IMAGES[i]
        );
        assert_eq!(
            concurrent[i].1["predictions"][0]["class_id"],
            alone["predictions"][0]["class_id"]
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_without_computing() {
    // The A0 demo model is slow enough (tens of ms per image) for requests to pile up.
    let server = TestServer::start(&[
        "--max-batch-size",
        "1",
        "--max-queue-delay-ms",
        "0",
        "--queue-capacity",
        "1",
        "--preprocess-workers",
        "1",
    ])
    .await;
    let image = std::fs::read(fixture("images/horse.png")).expect("fixture");
    let answers = join_all((0..24).map(|_| post_image(&server, image.clone()))).await;
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let full: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!(ok + full.len(), answers.len(), "only 200 and 503 expected");
    assert!(
        !full.is_empty(),
        "24 concurrent requests never filled a queue of 1"
    );
    assert!(ok >= 1);
    for (_, body, retry_after) in &full {
        assert_eq!(body["error_type"], "queue_full");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    let metrics = server.metrics().await;
    // Only the answered images were computed, and the refused ones were not even decoded:
    // admission happens on arrival, before preprocessing.
    assert_eq!(
        series_sum(&metrics, "repvgg_batch_size_sum", &[]),
        ok as f64
    );
    assert_eq!(
        series_sum(&metrics, "repvgg_preprocess_duration_seconds_count", &[]),
        ok as f64
    );
    assert_eq!(
        series_sum(&metrics, "repvgg_images_total", &[("outcome", "ok")]),
        ok as f64
    );
    assert_eq!(
        series_sum(&metrics, "repvgg_images_total", &[("outcome", "rejected")]),
        full.len() as f64
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_deadline_answers_504_without_computing() {
    let checkpoint = fixture("checkpoints/tiny_official_train.pth");
    let server = TestServer::start(&[
        "--checkpoint",
        checkpoint.to_str().expect("utf-8"),
        "--request-timeout-ms",
        "1",
    ])
    .await;
    // Decoding and resizing a 512x512 PNG alone takes longer than 1 ms.
    let image = std::fs::read(fixture("images/astronaut.png")).expect("fixture");
    let (status, body, _) = post_image(&server, image).await;
    assert_eq!(status, 504);
    assert_eq!(body["error_type"], "deadline_exceeded");
    let metrics = server.metrics().await;
    assert_eq!(series_sum(&metrics, "repvgg_batch_size_count", &[]), 0.0);
    assert_eq!(
        series_sum(&metrics, "repvgg_images_total", &[("outcome", "expired")]),
        1.0
    );
    server.stop().await;
}

/// Admission is the one limit and every wait has the request's deadline: an image queued
/// behind slow decodes (the only worker busy for seconds with four bombs, ~0.65 s each on a
/// 2-core EPYC) is answered 504 at its deadline, not when the worker frees up; and no admitted
/// image is refused later (no 503).
///
/// The image's deadline must come before the bombs' (decodes stop at their own deadlines, which
/// would free the worker): its headers go first, which starts its clock, the bombs 100 ms later,
/// and its body only once the bombs hold the worker and the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_preprocessing_worker_ends_at_the_deadline() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let checkpoint = fixture("checkpoints/tiny_official_train.pth");
    let server = TestServer::start(&[
        "--checkpoint",
        checkpoint.to_str().expect("utf-8"),
        "--preprocess-workers",
        "1",
        "--request-timeout-ms",
        "1000",
    ])
    .await;
    let image = std::fs::read(fixture("images/horse.png")).expect("fixture");
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let sent = Instant::now();
    let head = format!(
        "POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        image.len()
    );
    stream.write_all(head.as_bytes()).await.expect("headers");
    let queued = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.write_all(&image).await.expect("body");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("answer");
        (
            String::from_utf8_lossy(&answer).into_owned(),
            sent.elapsed(),
        )
    };
    let bomb = bomb();
    let bombs = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        join_all((0..4).map(|_| post_image(&server, bomb.clone()))).await
    };
    let (bombs, (answer, waited)) = tokio::join!(bombs, queued);
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(
        answer.contains("\"error_type\":\"deadline_exceeded\""),
        "{answer}"
    );
    assert!(
        waited < Duration::from_millis(1600),
        "answered after {waited:?} with a 1000 ms deadline"
    );
    for (status, body, _) in bombs {
        assert!(status == 200 || status == 504, "{status}: {body}");
    }
    server.stop().await;
}
