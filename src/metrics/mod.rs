//! Metrics: Prometheus series (names and buckets defined here, in one place) and the rolling
//! windows behind `GET /stats`.
//!
//! Each [`Metrics`] owns its own recorder (nothing global), so several servers in one process
//! (tests) do not mix their counts. Histogram buckets are per metric, chosen from measured
//! latencies on 2-core machines (docs/observability.md):
//! preprocessing a photo takes 1-40 ms, a batch of 8 A0 images about 100 ms, queue waits
//! range from 0 to the request deadline.

mod access;
mod model;
pub mod names;
mod stats;
mod traces;

use std::time::Duration;

use metrics::{Counter, Gauge, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub use model::ModelMetrics;
pub use stats::{StageTimings, StatsReport};

/// What finally happened to one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Classified and answered.
    Ok,
    /// Refused: bad input (4xx) or queue full (503).
    Rejected,
    /// Inference failed (500).
    Failed,
    /// Deadline passed before it was computed (504).
    Expired,
    /// The client went away first.
    Cancelled,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The protocol a request came in by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A request counted in `repvgg_inflight_requests` while this lives.
#[derive(Debug)]
pub struct Inflight<'a>(&'a Metrics);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.inflight.decrement(1.0);
    }
}

/// The service's metrics. Cheap to share (`Arc`), safe from any thread.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    /// Images waiting for a batch, over every model version (`/stats`).
    queue_depth_total: std::sync::atomic::AtomicUsize,
    inflight: Gauge,
    connections: Gauge,
    connections_rejected: Counter,
    grpc_connections: Gauge,
    grpc_connections_rejected: Counter,
    admission_in_use: Gauge,
    admission_capacity: Gauge,
    body_bytes: Gauge,
    body_rejected: Counter,
    ready: Gauge,
    windows: stats::Windows,
    /// The trace exporter's counts, when tracing is on; copied into counters at each scrape.
    trace_export: std::sync::OnceLock<std::sync::Arc<crate::telemetry::ExportCounts>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        use names::*;
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in [
            (REQUEST_DURATION, REQUEST_BUCKETS),
            (QUEUE_WAIT, QUEUE_BUCKETS),
            (PREPROCESS_DURATION, PREPROCESS_BUCKETS),
            (INFERENCE_DURATION, INFERENCE_BUCKETS),
            (BATCH_SIZE, BATCH_SIZE_BUCKETS),
        ] {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
                .expect("non-empty buckets");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            recorder.describe_counter(KeyName::from_const_str(name), unit, help.into());
        };
        describe(
            REQUESTS_TOTAL,
            None,
            "HTTP requests by matched route and status",
        );
        describe(
            REQUEST_DURATION,
            Some(Unit::Seconds),
            "HTTP request duration by route",
        );
        describe(
            IMAGES_TOTAL,
            None,
            "Images by outcome (ok, rejected, failed, expired, cancelled)",
        );
        describe(BATCHES_TOTAL, None, "Batches run by ONNX Runtime");
        describe(
            KEEP_WARM_RUNS_TOTAL,
            None,
            "Warm runs of an idle model (--keep-warm-ms), not counted as batches",
        );
        describe(
            QUEUE_WAIT,
            Some(Unit::Seconds),
            "Time an image waited for its batch",
        );
        describe(
            PREPROCESS_DURATION,
            Some(Unit::Seconds),
            "Decode + resize + crop per image",
        );
        describe(
            INFERENCE_DURATION,
            Some(Unit::Seconds),
            "ONNX Runtime run time per batch",
        );
        describe(BATCH_SIZE, None, "Images per batch");
        describe(QUEUE_DEPTH, None, "Images waiting for a batch");
        describe(INFLIGHT_REQUESTS, None, "HTTP requests being handled");
        describe(CONNECTIONS, None, "Open HTTP connections");
        describe(
            CONNECTIONS_REJECTED,
            None,
            "Connections answered 503 and closed because --max-connections were open",
        );
        describe(GRPC_CONNECTIONS, None, "Open gRPC connections");
        describe(
            GRPC_CONNECTIONS_REJECTED,
            None,
            "gRPC connections closed at once because --max-connections were open",
        );
        describe(
            ADMISSION_IN_USE,
            None,
            "Admission places taken: images being preprocessed, queued or inferred",
        );
        describe(
            ADMISSION_CAPACITY,
            None,
            "Admission places in all (--queue-capacity)",
        );
        describe(
            BODY_BYTES_IN_USE,
            None,
            "Request body bytes held in memory across every connection (HTTP and gRPC)",
        );
        describe(
            BODY_BUDGET_REJECTED,
            None,
            "Requests refused because --max-inflight-body-bytes were held by other requests",
        );
        describe(
            DECODE_BYTES_IN_USE,
            None,
            "Decoding memory reserved by images being decoded now (bytes)",
        );
        describe(
            DECODE_BYTES_CAPACITY,
            None,
            "The decode memory budget (--max-decode-bytes)",
        );
        describe(
            TLS_HANDSHAKE_FAILURES,
            None,
            "TLS handshakes that failed or timed out, by listener (http, grpc, admin)",
        );
        describe(
            TLS_RELOADS,
            None,
            "Changes of the TLS files seen, by result (applied, invalid: previous certificate kept)",
        );
        describe(
            ACCESS_DENIED,
            None,
            "Calls refused for their API key, by protocol and reason (unauthorized, forbidden)",
        );
        describe(
            API_KEY_RELOADS,
            None,
            "Changes of the API key file seen, by result (applied, invalid: previous keys kept)",
        );
        describe(
            TRACE_SPANS_EXPORTED,
            None,
            "Trace spans sent to the OTLP collector",
        );
        describe(
            TRACE_SPANS_DROPPED,
            None,
            "Trace spans dropped because the export queue was full (the collector is slow or down)",
        );
        describe(
            TRACE_SPANS_FAILED,
            None,
            "Trace spans lost in exports the collector refused or did not answer",
        );
        describe(
            READY,
            None,
            "1 when the model is loaded, warmed up and not shutting down",
        );
        describe(
            MODEL_INFO,
            None,
            "A served model version (value is always 1)",
        );
        describe(
            MODEL_VERSIONS_STOPPING,
            None,
            "Retired model versions still answering their last requests or releasing their memory",
        );
        describe(
            MODEL_CONTROL,
            None,
            "Model loads and unloads while serving, by op, model and result (ok, failed)",
        );
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(&recorder, || process.describe());
        let key = |name: &'static str| Key::from_static_name(name);
        Self {
            queue_depth_total: std::sync::atomic::AtomicUsize::new(0),
            inflight: recorder.register_gauge(&key(INFLIGHT_REQUESTS), &METADATA),
            connections: recorder.register_gauge(&key(CONNECTIONS), &METADATA),
            connections_rejected: recorder.register_counter(&key(CONNECTIONS_REJECTED), &METADATA),
            grpc_connections: recorder.register_gauge(&key(GRPC_CONNECTIONS), &METADATA),
            grpc_connections_rejected: recorder
                .register_counter(&key(GRPC_CONNECTIONS_REJECTED), &METADATA),
            admission_in_use: recorder.register_gauge(&key(ADMISSION_IN_USE), &METADATA),
            admission_capacity: recorder.register_gauge(&key(ADMISSION_CAPACITY), &METADATA),
            body_bytes: recorder.register_gauge(&key(BODY_BYTES_IN_USE), &METADATA),
            body_rejected: recorder.register_counter(&key(BODY_BUDGET_REJECTED), &METADATA),
            ready: recorder.register_gauge(&key(READY), &METADATA),
            windows: stats::Windows::new(),
            trace_export: std::sync::OnceLock::new(),
            process,
            handle,
            recorder,
        }
    }

    /// The Prometheus text exposition, with process metrics and trace export counts refreshed.
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&self.recorder, || self.process.collect());
        self.trace_export_upkeep();
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// A request answered: `route` is the matched HTTP route or the gRPC method path, `status`
    /// the HTTP status code or the gRPC status name.
    pub fn request_done(&self, protocol: Protocol, route: &str, status: &str, elapsed: Duration) {
        let labels = vec![
            Label::new("protocol", protocol.label()),
            Label::new("route", route.to_owned()),
            Label::new("status", status.to_owned()),
        ];
        self.recorder
            .register_counter(&Key::from_parts(names::REQUESTS_TOTAL, labels), &METADATA)
            .increment(1);
        let route = vec![
            Label::new("protocol", protocol.label()),
            Label::new("route", route.to_owned()),
        ];
        self.recorder
            .register_histogram(&Key::from_parts(names::REQUEST_DURATION, route), &METADATA)
            .record(elapsed.as_secs_f64());
    }

    /// An API request (not a probe, scrape or `/stats` poll) answered, for `/stats`; `error`:
    /// its error type when it failed.
    pub fn api_request(&self, error: Option<&str>) {
        self.windows.request(error);
    }

    /// One more request in flight until the guard is dropped: however the request ends
    /// (answered, failed, or its future dropped because the client left or a gRPC deadline
    /// passed), the gauge comes back down.
    pub fn inflight(&self) -> Inflight<'_> {
        self.inflight.increment(1.0);
        Inflight(self)
    }

    /// A connection opened (+1) or closed (-1).
    pub fn connections(&self, delta: f64) {
        self.connections.increment(delta);
    }

    pub fn connection_rejected(&self) {
        self.connections_rejected.increment(1);
    }

    /// A gRPC connection opened (+1) or closed (-1).
    pub fn grpc_connections(&self, delta: f64) {
        self.grpc_connections.increment(delta);
    }

    pub fn grpc_connection_rejected(&self) {
        self.grpc_connections_rejected.increment(1);
    }

    /// Admission places taken (+n) or given back (-n); `capacity` set once at start.
    pub fn admission(&self, delta: f64) {
        self.admission_in_use.increment(delta);
        self.windows.admission(delta as i64);
    }

    pub fn set_admission_capacity(&self, capacity: usize) {
        self.admission_capacity.set(capacity as f64);
        self.windows.set_admission_capacity(capacity);
    }

    /// Request body bytes reserved (+n) or released (-n).
    pub fn body_bytes(&self, delta: f64) {
        self.body_bytes.increment(delta);
    }

    pub fn body_budget_rejected(&self) {
        self.body_rejected.increment(1);
    }

    /// The decode budget's gauge of bytes in use, with its total set once.
    pub(crate) fn decode_budget(&self, total: u64) -> Gauge {
        let key = |name: &'static str| Key::from_static_name(name);
        self.recorder
            .register_gauge(&key(names::DECODE_BYTES_CAPACITY), &METADATA)
            .set(total as f64);
        self.recorder
            .register_gauge(&key(names::DECODE_BYTES_IN_USE), &METADATA)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(if ready { 1.0 } else { 0.0 });
        self.windows.set_ready(ready);
    }

    /// A model control operation (`op`: load, unload) on a model of the repository ended.
    pub fn model_control(&self, op: &'static str, model: &str, result: &'static str) {
        let labels = vec![
            Label::new("op", op),
            Label::new("model", model.to_owned()),
            Label::new("result", result),
        ];
        self.recorder
            .register_counter(&Key::from_parts(names::MODEL_CONTROL, labels), &METADATA)
            .increment(1);
    }

    /// Retired versions that have not stopped yet: more (+n) or fewer (-n).
    pub fn versions_stopping(&self, delta: f64) {
        self.recorder
            .register_gauge(
                &Key::from_static_name(names::MODEL_VERSIONS_STOPPING),
                &METADATA,
            )
            .increment(delta);
    }

    /// `GET /stats`.
    pub fn stats(&self) -> StatsReport {
        self.windows.report()
    }
}
