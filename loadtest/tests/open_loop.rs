//! The generator against an in-process server with a known service time (one request at a
//! time, 20 ms each: capacity 50/s), answering as version 7 of a model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use loadtest::report::Answer;
use loadtest::{run, Arrivals, Bodies, Encoding, Mode, RunConfig};
use tokio::sync::Semaphore;

const SERVICE: Duration = Duration::from_millis(20);

async fn start_server() -> String {
    let gate = Arc::new(Semaphore::new(1));
    let app = axum::Router::new().route(
        "/classify",
        post(move || {
            let gate = gate.clone();
            async move {
                let _permit = gate.acquire().await.expect("semaphore");
                tokio::time::sleep(SERVICE).await;
                r#"{"model": {"name": "m", "version": 7}}"#
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/classify")
}

fn config(url: String, mode: Mode, duration: f64) -> RunConfig {
    RunConfig {
        url,
        mode,
        encoding: Encoding::Raw,
        duration: Some(Duration::from_secs_f64(duration)),
        requests: None,
        timeout: Duration::from_secs(30),
        progress: false,
        allow_remote: false,
        client: Default::default(),
        timeline: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_includes_queueing_that_closed_loop_hides() {
    let url = start_server().await;
    let bodies = Arc::new(Bodies::from_bytes("x", vec![1, 2, 3]));
    // Twice the capacity for 2 s: requests queue up; each waits longer than the one before.
    let open = run(
        &config(
            url.clone(),
            Mode::Open {
                rate: 100.0,
                arrivals: Arrivals::Poisson { seed: 1 },
            },
            2.0,
        ),
        bodies.clone(),
    )
    .await
    .expect("open run");
    // One closed-loop client never queues: it sees the bare service time.
    let closed = run(&config(url, Mode::Closed { concurrency: 1 }, 1.0), bodies)
        .await
        .expect("closed run");
    let service_ms = SERVICE.as_secs_f64() * 1e3;
    assert!(
        closed.latency_ms.p50 < 3.0 * service_ms,
        "closed p50 {}",
        closed.latency_ms.p50
    );
    // Open loop: ~200 requests arrive, ~100 are served in the 2 s window, the rest queue;
    // the median request waited for about half the backlog, far beyond the service time.
    assert!(
        open.latency_ms.p50 > 10.0 * service_ms,
        "open p50 {} ms",
        open.latency_ms.p50
    );
    assert!(open.latency_ms.p99 > open.latency_ms.p50);
    assert!(
        open.throughput_rps < 60.0,
        "cannot exceed capacity: {}",
        open.throughput_rps
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_stops_on_time() {
    let url = start_server().await;
    let bodies = Arc::new(Bodies::from_bytes("x", vec![1]));
    let started = Instant::now();
    let report = run(
        &config(url.clone(), Mode::Closed { concurrency: 4 }, 1.0),
        bodies.clone(),
    )
    .await
    .expect("run");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    // Sending stops at 1 s; the last answers come within a few service times.
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert!(report.ok > 10);
    // A count bound stops too.
    let counted = RunConfig {
        duration: None,
        requests: Some(7),
        ..config(
            url.clone(),
            Mode::Open {
                rate: 200.0,
                arrivals: Arrivals::Even,
            },
            0.0,
        )
    };
    assert_eq!(run(&counted, bodies.clone()).await.expect("run").sent, 7);
    // Only loopback targets without --allow-remote.
    let remote = config(
        "http://192.0.2.1/classify".into(),
        Mode::Closed { concurrency: 1 },
        1.0,
    );
    assert!(run(&remote, bodies).await.is_err());
}

/// `--timeline` keeps every answer: its intended send time (in order), latency, status and the
/// version that answered; the CSV has one line per answer after its two header lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_keeps_every_answer_with_its_version() {
    let url = start_server().await;
    let dir = std::env::temp_dir().join(format!("loadtest-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("a.jpg"), b"not really an image").expect("body");
    let bodies = Arc::new(Bodies::load(&dir).expect("bodies"));
    let mode = Mode::Open {
        rate: 20.0,
        arrivals: Arrivals::Even,
    };
    let config = RunConfig {
        timeline: true,
        ..config(url, mode, 0.5)
    };
    let report = run(&config, bodies).await.expect("run");
    assert_eq!(report.timeline.len() as u64, report.sent);
    assert!(report.sent >= 9, "{} sent", report.sent);
    assert!(report.started_unix_ms > 1_600_000_000_000);
    let sent: Vec<f64> = report.timeline.iter().map(|a| a.sent_ms).collect();
    assert!(
        sent.windows(2).all(|w| (w[1] - w[0] - 50.0).abs() < 1.0),
        "{sent:?}"
    );
    for answer in &report.timeline {
        assert_eq!((answer.status.as_str(), answer.version), ("200", Some(7)));
        assert!(answer.latency_ms >= 20.0, "{answer:?}");
    }
    let csv = Answer::csv(report.started_unix_ms, &report.timeline);
    assert_eq!(csv.lines().count(), report.timeline.len() + 2);
    assert!(
        csv.lines().nth(2).expect("a row").ends_with(",200,7"),
        "{csv}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
