//! OpenTelemetry traces, off unless an OTLP endpoint is configured.
//!
//! Our spans are `tracing` spans; the `tracing-opentelemetry` layer turns them into OTLP spans
//! and [`export`] sends them to the collector over gRPC without ever making a request wait.
//! A request's span (`request` on HTTP, `grpc` on gRPC, opened by each door) takes the
//! client's W3C `traceparent` as its parent ([`adopt`]); the pipeline opens its children
//! ([`STAGES`]: `admission`, `preprocess`, `queue`, `inference`), and each inference thread
//! opens one `batch` span per model run, linked to every request it carried.
//!
//! The stage spans are at DEBUG under the target [`STAGES`]: the log output (INFO by default)
//! never builds them, so they cost nothing while tracing is off.

mod export;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter as _};
use opentelemetry_sdk::Resource;
use tracing::level_filters::LevelFilter;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

pub use export::ExportCounts;

/// The target of the pipeline's stage spans and the inference threads' batch spans.
pub const STAGES: &str = "repvgg_serve::stages";

/// Where and how traces are exported (`--otlp-endpoint` and friends).
#[derive(Clone, Debug)]
pub struct TraceConfig {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    pub service_name: String,
    /// Finished spans waiting for export at most; more are dropped (and counted).
    pub queue_capacity: usize,
    /// How long a started export batch waits for more spans.
    pub export_delay: Duration,
}

/// The running trace pipeline: the tracer provider and its export task.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: export::Exporting,
    counts: Arc<ExportCounts>,
}

impl Telemetry {
    /// Builds the OTLP exporter and starts its export task; call inside the async runtime
    /// (the gRPC channel and the task live there). The collector is connected lazily: one
    /// that is down costs failed exports (counted), never a failed start.
    pub fn start(config: &TraceConfig) -> anyhow::Result<Self> {
        use opentelemetry_otlp::WithExportConfig;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| anyhow::anyhow!("OTLP exporter for {}: {e}", config.endpoint))?;
        // Our queue owns the exporter, so it gets the resource here rather than from the
        // provider.
        exporter.set_resource(&resource);
        let counts = Arc::new(ExportCounts::default());
        let (queue, exporting) = export::start(
            exporter,
            export::QueueConfig {
                capacity: config.queue_capacity,
                batch: 512,
                delay: config.export_delay,
            },
            counts.clone(),
        );
        // The sampler follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: the
        // client's decision when it sent a traceparent, else every request).
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue)
            .with_resource(resource)
            .build();
        Ok(Self {
            provider,
            exporting,
            counts,
        })
    }

    /// The `tracing` layer that turns our spans into OTLP spans: the request spans of the
    /// doors (INFO) and the stage spans ([`STAGES`], DEBUG); nothing from dependencies.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let targets = Targets::new()
            .with_target("repvgg_serve", LevelFilter::INFO)
            .with_target(STAGES, LevelFilter::DEBUG);
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("repvgg-serve"))
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_filter(targets)
    }

    /// Spans exported, dropped and failed, for the Prometheus counters.
    pub fn counts(&self) -> Arc<ExportCounts> {
        self.counts.clone()
    }

    /// Exports what is still queued (at most `timeout`), at shutdown.
    pub async fn finish(self, timeout: Duration) {
        self.exporting.finish(timeout).await;
        let _ = self.provider.shutdown();
    }
}

/// The client's W3C trace context (`traceparent`, `tracestate`; HTTP headers and gRPC
/// metadata alike) becomes the parent of `span`, which must not have been entered yet.
/// Without a valid `traceparent`, or with tracing off, `span` stays as it is.
pub(crate) fn adopt(span: &tracing::Span, headers: &http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed (tracing off).
        let _ = span.set_parent(parent);
    }
}

/// Links `batch` (a model run) to the request span `request` it carried.
pub(crate) fn link(batch: &tracing::Span, request: &tracing::Span) {
    if batch.is_disabled() {
        return;
    }
    batch.add_link(request.context().span().span_context().clone());
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
