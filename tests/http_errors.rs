//! Every bad input answers a 4xx JSON error `{"error", "error_type"}` and the server keeps
//! serving: the next good request succeeds.

mod common;

use base64::Engine as _;
use common::server::TestServer;
use common::*;
use serde_json::Value;

/// A PNG chunk: length, type, data, CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(kind);
    out.extend(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend(crc.finalize().to_be_bytes());
    out
}

/// A PNG whose header declares `width x height` RGB pixels (the pixel data is a few bytes).
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// `horse.png` with one byte of its first IDAT chunk flipped: the chunk CRC no longer matches.
fn png_with_broken_crc() -> Vec<u8> {
    let mut png = std::fs::read(fixture("images/horse.png")).expect("fixture");
    let idat = png
        .windows(4)
        .position(|w| w == b"IDAT")
        .expect("an IDAT chunk");
    png[idat + 10] ^= 0xFF;
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_4xx_json_and_the_server_keeps_serving() {
    let checkpoint = fixture("checkpoints/tiny_official_train.pth");
    let server = TestServer::start(&[
        "--checkpoint",
        checkpoint.to_str().expect("utf-8"),
        "--max-body-bytes",
        "1000000",
        "--max-pixels",
        "40000000",
    ])
    .await;
    let jpeg = std::fs::read(fixture("images/chelsea_q90.jpg")).expect("fixture");
    let truncated_jpeg = jpeg[..jpeg.len() / 2].to_vec();
    let url = server.url("/classify");
    let client = &server.client;
    let raw = |body: Vec<u8>, content_type: &str| {
        client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("empty body", raw(vec![], "image/jpeg"), 400, "empty_body"),
        ("text as an image", raw(b"hello, world".to_vec(), "application/octet-stream"), 400, "undecodable_image"),
        ("text content type", raw(b"hello".to_vec(), "text/plain"), 415, "unsupported_media_type"),
        ("truncated JPEG", raw(truncated_jpeg, "image/jpeg"), 400, "undecodable_image"),
        ("PNG with a broken CRC", raw(png_with_broken_crc(), "image/png"), 400, "undecodable_image"),
        ("PNG declaring 50000x50000", raw(png_declaring(50_000, 50_000), "image/png"), 422, "too_many_pixels"),
        ("unsupported image format (ICO)", raw(b"\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00\x01\x00\x20\x00\x68\x04\x00\x00\x16\x00\x00\x00".to_vec(), "application/octet-stream"), 415, "unsupported_image_format"),
        ("body over the limit", raw(vec![0u8; 2_000_000], "image/png"), 413, "payload_too_large"),
        (
            "malformed multipart",
            raw(b"--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nabc".to_vec(), "multipart/form-data; boundary=xyz"),
            400,
            "bad_request",
        ),
        ("multipart without a boundary", raw(b"abc".to_vec(), "multipart/form-data"), 400, "bad_request"),
        ("bad base64", client.post(&url).json(&serde_json::json!({"image": "%%% not base64 %%%"})), 400, "bad_request"),
        ("JSON without images", client.post(&url).json(&serde_json::json!({"picture": "x"})), 400, "bad_request"),
        ("bad query", raw(jpeg.clone(), "image/jpeg").query(&[("top_k", "many")]), 400, "bad_request"),
    ];
    for (name, request, status, error_type) in cases {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(response.status().as_u16(), status, "{name}");
        if status == 413 {
            // The rest of the body was never read: the client must not reuse the connection.
            assert_eq!(response.headers()["connection"], "close", "{name}");
        }
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        assert_eq!(body["error_type"], error_type, "{name}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: {body}"
        );
        // The next request is served normally.
        let ok = server
            .client
            .post(&url)
            .json(&serde_json::json!({"image": base64::engine::general_purpose::STANDARD.encode(&jpeg)}))
            .send()
            .await
            .expect("good request");
        assert_eq!(ok.status(), 200, "after {name}");
    }
    server.stop().await;
}

/// A client trickling its body (one byte every 100 ms of a declared 100 kB) gets a 408 JSON
/// answer within the body timeout plus 1 s, and its connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_body_gets_408_within_the_body_timeout() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = TestServer::start(&["--checkpoint", &tiny(), "--body-timeout-ms", "1000"]).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let started = Instant::now();
    stream
        .write_all(
            b"POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: image/jpeg\r\n\
              content-length: 100000\r\n\r\n",
        )
        .await
        .expect("headers");
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b"\xff").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer))
        .await
        .expect("answered and closed within 5 s")
        .expect("read");
    let took = started.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error_type\":\"body_timeout\""), "{text}");
    assert!(
        took <= Duration::from_secs(2),
        "408 after {took:?}, body timeout 1 s"
    );
    // The server goes on serving.
    let good = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    assert_eq!(server.classify(good).await.status(), 200);
    server.stop().await;
}

/// 1,000 idle connections (opened, nothing sent) do not keep a normal request waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_block_a_request() {
    use std::time::{Duration, Instant};

    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(
            tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("idle connection"),
        );
    }
    let good = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(server.url("/classify"))
        .body(good)
        .send()
        .await
        .expect("request");
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(
        took <= Duration::from_secs(1),
        "answered after {took:?} with 1,000 idle connections open"
    );
    drop(idle);
    server.stop().await;
}
