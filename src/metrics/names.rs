//! Metric names, in one place, and the histogram buckets of each (seconds, or images for the
//! batch size), chosen from measured latencies (see `crate::metrics`).

pub const REQUESTS_TOTAL: &str = "repvgg_requests_total";
pub const REQUEST_DURATION: &str = "repvgg_request_duration_seconds";
pub const IMAGES_TOTAL: &str = "repvgg_images_total";
pub const BATCHES_TOTAL: &str = "repvgg_batches_total";
pub const KEEP_WARM_RUNS_TOTAL: &str = "repvgg_keep_warm_runs_total";
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
pub const MODEL_CONTROL: &str = "repvgg_model_control_total";
pub const MODEL_VERSIONS_STOPPING: &str = "repvgg_model_versions_stopping";
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

/// Histogram buckets, per metric (seconds, or images for the batch size).
pub(super) const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
    30.0,
];
pub(super) const QUEUE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
pub(super) const PREPROCESS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.12, 0.25, 0.5, 1.0,
];
pub(super) const INFERENCE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
];
pub(super) const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
