//! Metrics: Prometheus series (names and buckets defined here, in one place) and the rolling
//! windows behind `GET /stats`.
//!
//! Each [`Metrics`] owns its own recorder (nothing global), so several servers in one process
//! (tests) do not mix their counts. Histogram buckets are per metric, chosen from measured
//! latencies on 2-core machines (docs/observability.md):
//! preprocessing a photo takes 1-40 ms, a batch of 8 A0 images about 100 ms, queue waits
//! range from 0 to the request deadline.

mod access;
mod stats;
mod traces;

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub use stats::{StageTimings, StatsReport};

use crate::inference::Precision;

/// Metric names.
pub mod names {
    pub const REQUESTS_TOTAL: &str = "repvgg_requests_total";
    pub const REQUEST_DURATION: &str = "repvgg_request_duration_seconds";
    pub const IMAGES_TOTAL: &str = "repvgg_images_total";
    pub const BATCHES_TOTAL: &str = "repvgg_batches_total";
    pub const QUEUE_WAIT: &str = "repvgg_queue_wait_seconds";
    pub const PREPROCESS_DURATION: &str = "repvgg_preprocess_duration_seconds";
    pub const INFERENCE_DURATION: &str = "repvgg_inference_duration_seconds";
    pub const BATCH_SIZE: &str = "repvgg_batch_size";
    pub const QUEUE_DEPTH: &str = "repvgg_queue_depth";
    pub const INFLIGHT_REQUESTS: &str = "repvgg_inflight_requests";
    pub const READY: &str = "repvgg_ready";
    pub const CONNECTIONS: &str = "repvgg_http_connections";
    pub const CONNECTIONS_REJECTED: &str = "repvgg_http_connections_rejected_total";
    pub const MODEL_INFO: &str = "repvgg_model_info";
    pub const GRPC_CONNECTIONS: &str = "repvgg_grpc_connections";
    pub const GRPC_CONNECTIONS_REJECTED: &str = "repvgg_grpc_connections_rejected_total";
    pub const ADMISSION_IN_USE: &str = "repvgg_admission_in_use";
    pub const ADMISSION_CAPACITY: &str = "repvgg_admission_capacity";
    pub const BODY_BYTES_IN_USE: &str = "repvgg_request_body_bytes_in_use";
    pub const BODY_BUDGET_REJECTED: &str = "repvgg_request_body_budget_rejected_total";
    pub const DECODE_BYTES_IN_USE: &str = "repvgg_decode_budget_bytes_in_use";
    pub const DECODE_BYTES_CAPACITY: &str = "repvgg_decode_budget_bytes";
    pub const TLS_HANDSHAKE_FAILURES: &str = "repvgg_tls_handshake_failures_total";
    pub const TLS_RELOADS: &str = "repvgg_tls_reloads_total";
    pub const ACCESS_DENIED: &str = "repvgg_access_denied_total";
    pub const API_KEY_RELOADS: &str = "repvgg_api_key_reloads_total";
    pub const TRACE_SPANS_EXPORTED: &str = "repvgg_trace_spans_exported_total";
    pub const TRACE_SPANS_DROPPED: &str = "repvgg_trace_spans_dropped_total";
    pub const TRACE_SPANS_FAILED: &str = "repvgg_trace_spans_failed_total";
}

/// Histogram buckets, per metric (seconds, or images for the batch size).
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
    30.0,
];
const QUEUE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const PREPROCESS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.12, 0.25, 0.5, 1.0,
];
const INFERENCE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
];
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

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
    batches: Counter,
    batch_size: Histogram,
    inference: Histogram,
    queue_wait: Histogram,
    preprocess: Histogram,
    queue_depth: Gauge,
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
        describe(MODEL_INFO, None, "The served model (value is always 1)");
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(&recorder, || process.describe());
        let key = |name: &'static str| Key::from_static_name(name);
        Self {
            batches: recorder.register_counter(&key(BATCHES_TOTAL), &METADATA),
            batch_size: recorder.register_histogram(&key(BATCH_SIZE), &METADATA),
            inference: recorder.register_histogram(&key(INFERENCE_DURATION), &METADATA),
            queue_wait: recorder.register_histogram(&key(QUEUE_WAIT), &METADATA),
            preprocess: recorder.register_histogram(&key(PREPROCESS_DURATION), &METADATA),
            queue_depth: recorder.register_gauge(&key(QUEUE_DEPTH), &METADATA),
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
        self.windows.request();
    }

    pub fn image_outcome(&self, outcome: Outcome) {
        let labels = vec![Label::new("outcome", outcome.label())];
        self.recorder
            .register_counter(&Key::from_parts(names::IMAGES_TOTAL, labels), &METADATA)
            .increment(1);
    }

    /// An image answered successfully, with its stage timings.
    pub fn image_timings(&self, timings: StageTimings) {
        self.queue_wait.record(timings.queue.as_secs_f64());
        self.windows.image(timings);
    }

    pub fn preprocessed(&self, elapsed: Duration) {
        self.preprocess.record(elapsed.as_secs_f64());
    }

    pub fn batch_done(&self, size: usize, inference: Duration) {
        self.batches.increment(1);
        self.batch_size.record(size as f64);
        self.inference.record(inference.as_secs_f64());
        self.windows.batch(size);
    }

    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as f64);
        self.windows.set_queue_depth(depth);
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
    }

    pub fn set_admission_capacity(&self, capacity: usize) {
        self.admission_capacity.set(capacity as f64);
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
    }

    pub fn set_model_info(
        &self,
        variant: &str,
        classes: usize,
        sha256: &str,
        fused: bool,
        precision: Precision,
    ) {
        let labels = vec![
            Label::new("variant", variant.to_owned()),
            Label::new("classes", classes.to_string()),
            Label::new("checkpoint_sha256", sha256.to_owned()),
            Label::new("fused", fused.to_string()),
            Label::new("precision", precision.as_str()),
            Label::new("engine", precision.engine()),
        ];
        self.recorder
            .register_gauge(&Key::from_parts(names::MODEL_INFO, labels), &METADATA)
            .set(1.0);
    }

    /// `GET /stats`.
    pub fn stats(&self) -> StatsReport {
        self.windows.report()
    }
}
