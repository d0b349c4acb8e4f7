//! One bounded run, closed or open loop.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;

use crate::arrivals::{Arrivals, Schedule};
use crate::report::{new_histogram, Answer, Report};
use crate::{Bodies, Encoding};

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `n` clients back to back.
    Closed { concurrency: usize },
    /// Arrivals at `rate` requests per second on average, spaced as `arrivals` says; latency
    /// from the intended send time.
    Open { rate: f64, arrivals: Arrivals },
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub url: String,
    pub mode: Mode,
    pub encoding: Encoding,
    /// Stop sending after this long...
    pub duration: Option<Duration>,
    /// ...or after this many requests, whichever comes first.
    pub requests: Option<u64>,
    /// Per-request client timeout.
    pub timeout: Duration,
    /// Print a progress line every second.
    pub progress: bool,
    /// Allow targets other than loopback addresses.
    pub allow_remote: bool,
    /// Headers and TLS trust for every request.
    pub client: ClientOptions,
    /// Keep every answer (`Report::timeline`), with the version that answered it.
    pub timeline: bool,
}

/// What every request carries and trusts beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Extra headers (`Authorization: Bearer ...` for a server with API keys).
    pub headers: Vec<(String, String)>,
    /// PEM of the CA to trust for `https://` targets (instead of the system's roots).
    pub ca_cert: Option<Vec<u8>>,
}

impl ClientOptions {
    fn client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
                reqwest::header::HeaderValue::from_str(value)?,
            );
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(4096)
            .default_headers(headers);
        if let Some(pem) = &self.ca_cert {
            builder = builder
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        Ok(builder.build()?)
    }
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, u64>,
    latencies: Option<hdrhistogram::Histogram<u64>>,
    timeline: Vec<Answer>,
}

impl Tally {
    fn record(&mut self, status: String, latency: Duration) {
        if status == "200" {
            let us = (latency.as_micros() as u64).clamp(1, 600_000_000);
            self.latencies
                .get_or_insert_with(new_histogram)
                .saturating_record(us);
        }
        *self.statuses.entry(status).or_default() += 1;
    }
}

/// Runs until the duration or count bound, then waits for outstanding answers.
pub async fn run(config: &RunConfig, bodies: Arc<Bodies>) -> anyhow::Result<Report> {
    check_target(&config.url, config.allow_remote)?;
    if config.duration.is_none() && config.requests.is_none() {
        bail!("a run needs --duration and/or --requests");
    }
    let client = config.client.client(config.timeout)?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let stop_at = config.duration.map(|d| started + d);
    let limit = config.requests.unwrap_or(u64::MAX);
    let progress = config
        .progress
        .then(|| spawn_progress(tally.clone(), started));

    let send = {
        let client = client.clone();
        let config = config.clone();
        let tally = tally.clone();
        move |i: u64, intended: Instant| {
            let request = bodies.request(&client, &config.url, config.encoding, i);
            let (tally, timeline) = (tally.clone(), config.timeline);
            async move {
                let (status, version) = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16().to_string();
                        let body = response.bytes().await.unwrap_or_default();
                        (status, timeline.then(|| answered_by(&body)).flatten())
                    }
                    Err(e) if e.is_timeout() => ("timeout".to_owned(), None),
                    Err(_) => ("error".to_owned(), None),
                };
                let latency = intended.elapsed();
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                if timeline {
                    tally.timeline.push(Answer {
                        sent_ms: (intended - started).as_secs_f64() * 1e3,
                        latency_ms: latency.as_secs_f64() * 1e3,
                        status: status.clone(),
                        version,
                    });
                }
                tally.record(status, latency);
            }
        }
    };

    let offered = match config.mode {
        Mode::Closed { concurrency } => {
            let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let workers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let next = next.clone();
                    let send = send.clone();
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i >= limit || stop_at.is_some_and(|t| Instant::now() >= t) {
                                break;
                            }
                            send(i, Instant::now()).await;
                        }
                    })
                })
                .collect();
            for w in workers {
                w.await?;
            }
            concurrency as f64
        }
        Mode::Open { rate, arrivals } => {
            if !(rate > 0.0 && rate.is_finite()) {
                bail!("--rate must be positive");
            }
            let mut outstanding = tokio::task::JoinSet::new();
            for (i, offset) in (0u64..).zip(Schedule::new(rate, arrivals)) {
                let intended = started + offset;
                if i >= limit || stop_at.is_some_and(|t| intended >= t) {
                    break;
                }
                tokio::time::sleep_until(intended).await;
                // The latency clock starts at the intended time, even if we are late.
                outstanding.spawn(send(i, intended));
                while outstanding.try_join_next().is_some() {}
            }
            while outstanding.join_next().await.is_some() {}
            rate
        }
    };
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    let elapsed = started.elapsed();
    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    let (mode, arrivals) = match config.mode {
        Mode::Closed { .. } => ("closed", None),
        Mode::Open { arrivals, .. } => ("open", Some(arrivals)),
    };
    let mut report = Report::new(
        mode,
        arrivals,
        offered,
        elapsed,
        tally.statuses.clone(),
        tally.latencies.as_ref().unwrap_or(&new_histogram()),
    );
    report.started_unix_ms = started_unix_ms;
    report.timeline = std::mem::take(&mut tally.timeline);
    report
        .timeline
        .sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    Ok(report)
}

/// The version a `/classify` answer names (`model.version`).
fn answered_by(body: &[u8]) -> Option<u64> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    answer["model"]["version"].as_u64()
}

fn spawn_progress(tally: Arc<Mutex<Tally>>, started: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let t = tally.lock().unwrap_or_else(|p| p.into_inner());
            let ok = t.statuses.get("200").copied().unwrap_or(0);
            let all: u64 = t.statuses.values().sum();
            let p99 = t
                .latencies
                .as_ref()
                .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1e3);
            eprint!(
                "\r{:>6.1}s  {all} answered, {ok} ok ({:.1}/s)  p99 {p99:.1} ms   ",
                started.elapsed().as_secs_f64(),
                ok as f64 / started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    })
}

/// Refuses non-loopback targets unless allowed.
fn check_target(target: &str, allow_remote: bool) -> anyhow::Result<()> {
    let url = url::Url::parse(target)?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        bail!("{host} is not a loopback address; pass --allow-remote to load another machine");
    }
    Ok(())
}
