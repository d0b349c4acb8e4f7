//! Observability against real components: `promtool check metrics` on the live exposition,
//! a real Prometheus server scraping the service, `/stats` under a known load, and every
//! request and error path counted exactly once.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{metric_value, series_sum, TestServer};
use common::*;
use serde_json::Value;

async fn classify(server: &TestServer, image: &str) -> u16 {
    let bytes = std::fs::read(fixture(&format!("images/{image}"))).expect("fixture");
    server
        .client
        .post(server.url("/classify"))
        .body(bytes)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Tools from Debian's `prometheus` package, installed by `scripts/setup-test-tools.sh`.
fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} not installed: run scripts/setup-test-tools.sh (make test does)"
    );
    name.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_live_metrics() {
    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    for image in ["chelsea.png", "camera.png", "chelsea_q90.jpg"] {
        assert_eq!(classify(&server, image).await, 200);
    }
    let _ = server
        .client
        .post(server.url("/classify"))
        .body("junk")
        .send()
        .await;
    let text = server.metrics().await;
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
}

async fn prom_query(client: &reqwest::Client, base: &str, query: &str) -> Vec<Value> {
    let Ok(response) = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
    else {
        return vec![];
    };
    let body: Value = response.json().await.unwrap_or_default();
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_service() {
    let server = TestServer::start(&["--checkpoint", &tiny(), "--max-queue-delay-ms", "5"]).await;
    const SENT: usize = 7;
    for (i, image) in IMAGES.iter().cycle().take(SENT).enumerate() {
        assert_eq!(classify(&server, image).await, 200, "request {i}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: repvgg\n    static_configs:\n      - targets: ['{}']\n",
            server.admin_addr
        ),
    )
    .expect("config");
    let port = free_port();
    let mut prometheus = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let query = r#"sum(repvgg_requests_total{route="/classify"})"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut counted = None;
    while Instant::now() < deadline {
        if let Some(v) = prom_query(&client, &base, query).await.first() {
            counted = v["value"][1].as_str().and_then(|s| s.parse::<f64>().ok());
            if counted.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let series = [
        "repvgg_requests_total",
        "repvgg_request_duration_seconds_bucket",
        "repvgg_images_total",
        "repvgg_batches_total",
        "repvgg_queue_wait_seconds_bucket",
        "repvgg_preprocess_duration_seconds_bucket",
        "repvgg_inference_duration_seconds_bucket",
        "repvgg_batch_size_bucket",
        "repvgg_queue_depth",
        "repvgg_inflight_requests",
        "repvgg_ready",
        "repvgg_model_info",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ];
    let mut missing = Vec::new();
    for name in series {
        if prom_query(&client, &base, name).await.is_empty() {
            missing.push(name);
        }
    }
    // Every query of the Grafana dashboard is valid PromQL over these series.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/repvgg-serve-dashboard.json"
        ))
        .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut bad_queries = Vec::new();
    for target in dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
    {
        let expr = target["expr"]
            .as_str()
            .expect("expr")
            .replace("$job", ".*")
            .replace("$model", ".*")
            .replace("$version", ".*")
            .replace("$__rate_interval", "1m");
        let body: Value = client
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", expr.as_str())])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("JSON");
        if body["status"] != "success" {
            bad_queries.push((expr, body));
        }
    }
    let ready = prom_query(&client, &base, "repvgg_ready").await;
    let info = prom_query(&client, &base, "repvgg_model_info").await;
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(
        counted,
        Some(SENT as f64),
        "Prometheus counted {counted:?} classify requests"
    );
    assert!(
        missing.is_empty(),
        "series missing in Prometheus: {missing:?}"
    );
    assert!(
        bad_queries.is_empty(),
        "dashboard queries Prometheus rejects: {bad_queries:?}"
    );
    assert_eq!(ready[0]["value"][1], "1");
    assert_eq!(info[0]["metric"]["classes"], "10");
    assert_eq!(info[0]["metric"]["fused"], "true");
    assert_eq!(info[0]["metric"]["model"], "repvgg");
    assert_eq!(info[0]["metric"]["version"], "1");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_agree_with_a_known_load() {
    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    const N: usize = 12;
    for image in IMAGES.iter().cycle().take(N) {
        assert_eq!(classify(&server, image).await, 200);
    }
    let stats: Value = json_of(server.client.get(server.admin_url("/stats"))).await;
    assert_eq!(stats["totals"]["images"], N);
    assert_eq!(stats["totals"]["requests"], N);
    assert!(stats["totals"]["batches"].as_u64().expect("batches") >= 1);
    for window in ["last_10s", "last_60s"] {
        let w = &stats[window];
        assert!(
            w["images_per_second"].as_f64().expect("rate") > 0.0,
            "{window}"
        );
        assert!(
            w["requests_per_second"].as_f64().expect("rate") > 0.0,
            "{window}"
        );
        assert!(
            w["mean_batch_size"].as_f64().expect("batch") >= 1.0,
            "{window}"
        );
        for stage in ["queue", "preprocess", "inference", "total"] {
            let p = &w["latency_ms"][stage];
            let v = |k: &str| p[k].as_f64().expect("percentile");
            assert_eq!(p["count"], N, "{window} {stage}");
            assert!(
                v("p50") <= v("p90") && v("p90") <= v("p99") && v("p99") <= v("max"),
                "{window} {stage}: {p}"
            );
        }
        assert!(
            w["latency_ms"]["total"]["p50"].as_f64() > w["latency_ms"]["inference"]["p50"].as_f64()
        );
    }
    assert!(stats["uptime_seconds"].as_f64().expect("uptime") > 0.0);
    assert_eq!(stats["queue_depth"], 0);
    server.stop().await;
}

/// `(requests_total{status}, images_total{outcome})` before and after one request.
async fn counts(server: &TestServer, status: u16, outcome: &str) -> (f64, f64) {
    let text = server.metrics().await;
    (
        metric_value(
            &text,
            &format!(
                r#"repvgg_requests_total{{protocol="http",route="/classify",status="{status}"}}"#
            ),
        ),
        series_sum(&text, "repvgg_images_total", &[("outcome", outcome)]),
    )
}

/// (server flags, body, content type, expected status, image outcome when an image was seen)
type Case = (
    Vec<&'static str>,
    Vec<u8>,
    &'static str,
    u16,
    Option<&'static str>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_and_error_path_is_counted_once() {
    let good = std::fs::read(fixture("images/chelsea.png")).expect("fixture");
    // (server flags, body, content type, expected status, image outcome or None when the
    // request never got as far as an image)
    let cases: Vec<Case> = vec![
        (vec![], good.clone(), "image/png", 200, Some("ok")),
        (
            vec![],
            b"garbage".to_vec(),
            "image/png",
            400,
            Some("rejected"),
        ),
        (vec![], vec![], "image/png", 400, None),
        (
            vec!["--max-body-bytes", "1000"],
            good.clone(),
            "image/png",
            413,
            None,
        ),
        (vec![], b"text".to_vec(), "text/plain", 415, None),
        (
            vec!["--max-pixels", "1000"],
            good.clone(),
            "image/png",
            422,
            Some("rejected"),
        ),
        (
            vec!["--request-timeout-ms", "1"],
            good.clone(),
            "image/png",
            504,
            Some("expired"),
        ),
    ];
    for (flags, body, content_type, status, outcome) in cases {
        let mut args = vec!["--checkpoint".to_owned(), tiny()];
        args.extend(flags.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = TestServer::start(&args).await;
        let outcome_label = outcome.unwrap_or("ok");
        let before = counts(&server, status, outcome_label).await;
        let response = server
            .client
            .post(server.url("/classify"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), status, "{flags:?}");
        let after = counts(&server, status, outcome_label).await;
        assert_eq!(
            after.0 - before.0,
            1.0,
            "{status}: requests counted {}",
            after.0 - before.0
        );
        let images = if outcome.is_some() { 1.0 } else { 0.0 };
        assert_eq!(
            after.1 - before.1,
            images,
            "{status}: images_total{{{outcome_label}}}"
        );
        server.stop().await;
    }
    // Lame duck (shutdown started, readiness cleared): /readyz answers 503 with Retry-After,
    // classification is still served and counted as usual.
    let server = TestServer::start(&["--checkpoint", &tiny()]).await;
    server.state.readiness.set(false);
    let before = counts(&server, 200, "ok").await;
    let ready = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["retry-after"], "1");
    assert_eq!(server.classify(good).await.status(), 200);
    let after = counts(&server, 200, "ok").await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (1.0, 1.0));
    server.stop().await;
}
