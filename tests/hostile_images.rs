//! Decompression bombs within the limits: a 7000 x 7000 RGBA PNG at 16 bits (49 MP, under the
//! 50 MP default; ~0.4 MB on the wire, 392 MB decoded) sent 16 times at once to the real binary
//! with default flags. Every request is answered (200, or JSON 4xx/503: the decode budget turns
//! away what does not fit), the server stays up, and its peak RSS stays under 1 GiB.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::fixture;
use futures_util::future::join_all;

const PEAK_RSS_LIMIT: u64 = 1 << 30;

fn bomb() -> Vec<u8> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let (w, h) = (7000u32, 7000u32);
    let pixels = vec![0u8; (w * h * 8) as usize];
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&pixels, w, h, image::ExtendedColorType::Rgba16)
        .expect("encode the bomb");
    png
}

/// The server process, killed when the test ends however it ends (a failed assertion must
/// not leave it running).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_bombs_stay_under_a_gibibyte() {
    let bomb = bomb();
    assert!(bomb.len() < 2 << 20, "the bomb is small on the wire");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
            .args([
                "--log-format",
                "json",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-cache",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn repvgg-serve"),
    );
    let stderr = server.0.stderr.take().expect("stderr");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["fields"]["message"] == "listening" {
                    let _ =
                        addr_tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server listening");
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
    let peak = peak_rss(server.0.id());
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
        server.0.try_wait().expect("wait").is_none(),
        "the server process ended"
    );
    assert!(
        peak < PEAK_RSS_LIMIT,
        "peak RSS {} MiB >= 1 GiB; statuses {statuses:?}",
        peak >> 20
    );
}
