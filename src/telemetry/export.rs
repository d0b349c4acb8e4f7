//! The span export queue: finished spans go into a bounded channel (never waiting: a full
//! queue drops the span and counts it) and one task on the async runtime sends them to the
//! OTLP collector in batches. The SDK's own batch processor works the same way but keeps its
//! drop count private; ours is a Prometheus counter, so an operator sees lost spans.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, Notify};

/// Spans exported, dropped at the full queue, and lost in failed exports, since the start.
#[derive(Debug, Default)]
pub struct ExportCounts {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl ExportCounts {
    /// `(exported, dropped, failed)`.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.exported.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// How spans are batched for export.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueConfig {
    /// Spans waiting for export at most; more are dropped.
    pub capacity: usize,
    /// Spans per export call at most.
    pub batch: usize,
    /// How long a started batch waits for more spans.
    pub delay: Duration,
}

/// The processor the tracer provider calls when a span ends.
#[derive(Debug)]
pub(crate) struct BoundedQueue {
    spans: mpsc::Sender<SpanData>,
    counts: Arc<ExportCounts>,
}

impl SpanProcessor for BoundedQueue {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.spans.try_send(span).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    /// The export task drains the queue when [`Exporting::finish`] is called.
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The running export task.
#[derive(Debug)]
pub(crate) struct Exporting {
    finish: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporting {
    /// Sends what is queued (waiting at most `timeout`), then stops.
    pub(crate) async fn finish(self, timeout: Duration) {
        self.finish.notify_one();
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("trace export did not finish in time; queued spans are lost");
        }
    }
}

/// The processor for the tracer provider and the task that exports what it queues (spawned
/// on the current runtime).
pub(crate) fn start<E: SpanExporter + 'static>(
    exporter: E,
    config: QueueConfig,
    counts: Arc<ExportCounts>,
) -> (BoundedQueue, Exporting) {
    let (sender, receiver) = mpsc::channel(config.capacity.max(1));
    let finish = Arc::new(Notify::new());
    let task = tokio::spawn(export_loop(
        exporter,
        receiver,
        config,
        counts.clone(),
        finish.clone(),
    ));
    (
        BoundedQueue {
            spans: sender,
            counts,
        },
        Exporting { finish, task },
    )
}

async fn export_loop<E: SpanExporter>(
    exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    config: QueueConfig,
    counts: Arc<ExportCounts>,
    finish: Arc<Notify>,
) {
    let mut finishing = false;
    let mut failures_logged = false;
    loop {
        // Wait for a first span (or the end), then gather a batch for at most `delay`.
        let first = tokio::select! {
            span = spans.recv() => span,
            () = finish.notified(), if !finishing => {
                finishing = true;
                spans.close();
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + config.delay;
        while batch.len() < config.batch {
            let next = tokio::select! {
                next = tokio::time::timeout_at(until, spans.recv()) => next,
                () = finish.notified(), if !finishing => {
                    finishing = true;
                    spans.close();
                    continue;
                }
            };
            match next {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let size = batch.len() as u64;
        match exporter.export(batch).await {
            Ok(()) => {
                counts.exported.fetch_add(size, Ordering::Relaxed);
            }
            Err(e) => {
                counts.failed.fetch_add(size, Ordering::Relaxed);
                // Once: a collector that is down would otherwise log on every batch.
                if !failures_logged {
                    failures_logged = true;
                    tracing::warn!(error = %e, spans = size, "trace export failed (counted in repvgg_trace_spans_failed_total; logged once)");
                }
            }
        }
    }
    let _ = exporter.shutdown();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what it is given.
    #[derive(Clone, Debug, Default)]
    struct Counting(Arc<AtomicU64>);

    impl SpanExporter for Counting {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
            Ok(())
        }
    }

    fn span() -> SpanData {
        use opentelemetry::trace::{SpanContext, SpanKind, Status};
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "test".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    /// A full queue drops (and counts) instead of waiting; what was queued is exported when
    /// the task finishes.
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_finish_exports_the_rest() {
        let exporter = Counting::default();
        let counts = Arc::new(ExportCounts::default());
        let config = QueueConfig {
            capacity: 4,
            batch: 2,
            delay: Duration::from_secs(60),
        };
        let (queue, exporting) = start(exporter.clone(), config, counts.clone());
        // The export task has not run yet (single-threaded test runtime): 4 fit, 3 dropped.
        for _ in 0..7 {
            queue.on_end(span());
        }
        assert_eq!(counts.get().1, 3);
        exporting.finish(Duration::from_secs(5)).await;
        assert_eq!(counts.get(), (4, 3, 0));
        assert_eq!(exporter.0.load(Ordering::Relaxed), 4);
    }
}
