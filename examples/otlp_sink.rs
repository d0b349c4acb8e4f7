//! An OTLP/gRPC trace receiver that only counts: the collector end of `make bench-access`'s
//! traced setup, so tracing is measured with a real export (protobuf over gRPC) and nothing
//! heavier than the server on the machine. Prints the spans received so far on every change.
//!
//! cargo run --release --example otlp_sink -- 127.0.0.1:4317

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

#[derive(Debug, Default)]
struct Sink(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let total = self.0.fetch_add(spans as u64, Ordering::Relaxed) + spans as u64;
        eprintln!("spans received: {total}");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into())
        .parse()?;
    eprintln!("otlp sink on {addr}");
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Sink::default()))
        .serve(addr)
        .await?;
    Ok(())
}
