//! Series of the trace exporter: spans exported, dropped at the full queue, and lost in failed
//! exports. The exporter counts them itself (it starts before the service's metrics exist);
//! each scrape copies its counts.

use std::sync::Arc;

use metrics::{Key, Recorder};

use super::{names, Metrics, METADATA};
use crate::telemetry::ExportCounts;

impl Metrics {
    /// Reports `counts` from now on (once; tracing starts once per process).
    pub(crate) fn follow_trace_export(&self, counts: Arc<ExportCounts>) {
        let _ = self.trace_export.set(counts);
    }

    pub(super) fn trace_export_upkeep(&self) {
        let Some(counts) = self.trace_export.get() else {
            return;
        };
        let (exported, dropped, failed) = counts.get();
        for (name, value) in [
            (names::TRACE_SPANS_EXPORTED, exported),
            (names::TRACE_SPANS_DROPPED, dropped),
            (names::TRACE_SPANS_FAILED, failed),
        ] {
            self.recorder
                .register_counter(&Key::from_static_name(name), &METADATA)
                .absolute(value);
        }
    }
}
