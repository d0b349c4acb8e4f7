//! An OTLP/gRPC trace receiver: the collector end of `make bench-access`'s traced setup (it
//! only counts, so tracing is measured with a real export, protobuf over gRPC, and nothing
//! heavier than the server on the machine) and of `scripts/anatomy.py` (with a file to dump
//! to, it also writes every span as one JSON line: trace, span and parent ids, name, start and
//! end in Unix nanoseconds, attributes). Prints the spans received so far on every change.
//!
//! cargo run --release --example otlp_sink -- 127.0.0.1:4317 [spans.jsonl]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Map, Value};

#[derive(Debug, Default)]
struct Sink {
    received: Arc<AtomicU64>,
    dump: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One span as a JSON object (ids in hex).
fn span_json(span: &Span) -> Value {
    let attributes: Map<String, Value> = span
        .attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::IntValue(i) => json!(i),
                AnyValue::DoubleValue(d) => json!(d),
                AnyValue::StringValue(s) => json!(s),
                AnyValue::BoolValue(b) => json!(b),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect();
    json!({
        "trace": hex(&span.trace_id),
        "span": hex(&span.span_id),
        "parent": hex(&span.parent_span_id),
        "name": span.name,
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "attributes": attributes,
    })
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans);
        let mut count = 0u64;
        let mut dump = self
            .dump
            .as_ref()
            .map(|d| d.lock().unwrap_or_else(|p| p.into_inner()));
        for span in spans {
            count += 1;
            if let Some(file) = dump.as_mut() {
                writeln!(file, "{}", span_json(span))
                    .and_then(|()| file.flush())
                    .map_err(|e| tonic::Status::internal(format!("dump: {e}")))?;
            }
        }
        let total = self.received.fetch_add(count, Ordering::Relaxed) + count;
        eprintln!("spans received: {total}");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:4317".into())
        .parse()?;
    let dump = args
        .next()
        .map(|path| {
            std::fs::File::create(&path)
                .map(|f| Mutex::new(std::io::BufWriter::new(f)))
                .map_err(|e| anyhow::anyhow!("cannot create {path}: {e}"))
        })
        .transpose()?;
    eprintln!("otlp sink on {addr}");
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Sink {
            received: Arc::default(),
            dump,
        }))
        .serve(addr)
        .await?;
    Ok(())
}
