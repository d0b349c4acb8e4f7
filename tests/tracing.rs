//! OpenTelemetry traces, end to end: the real binary exports over OTLP/gRPC to a receiver this
//! test starts (the collector's `TraceService`, from the official protobufs in
//! `opentelemetry-proto`). A request sent with a W3C `traceparent` becomes a span of the
//! client's trace, with the pipeline's stages as its children, on HTTP and on gRPC; the batch
//! that carried it links back to it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::grpc::{self, MODEL_INFER};
use common::process::ServerProcess;
use common::server::metric_value;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;

/// An OTLP trace receiver: every span it is sent goes down the channel, with the
/// `service.name` of its resource.
struct Receiver(mpsc::UnboundedSender<(String, Span)>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                let _ = self.0.send((service.clone(), span));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts the receiver on 127.0.0.1; its endpoint URL and the spans it receives.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(String, Span)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let (sender, spans) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(sender)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (endpoint, spans)
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the receiver holds for one client trace.
struct ClientTrace<'a> {
    request: &'a Span,
    children: HashMap<String, &'a Span>,
    /// Batch spans (each a root of its own trace) with a link to the request span.
    batches: Vec<&'a Span>,
}

/// The request span of trace `trace_id` whose parent is the client's `parent_id`, its children
/// by name, and the batch spans linked to it; `None` until all have arrived.
fn find<'a>(spans: &'a [Span], trace_id: &str, parent_id: &str) -> Option<ClientTrace<'a>> {
    let request = spans
        .iter()
        .find(|s| hex(&s.trace_id) == trace_id && hex(&s.parent_span_id) == parent_id)?;
    let children: HashMap<String, &Span> = spans
        .iter()
        .filter(|s| s.trace_id == request.trace_id && s.parent_span_id == request.span_id)
        .map(|s| (s.name.clone(), s))
        .collect();
    let batches: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.links
                .iter()
                .any(|l| l.trace_id == request.trace_id && l.span_id == request.span_id)
        })
        .collect();
    let complete = ["admission", "preprocess", "queue", "inference"]
        .iter()
        .all(|name| children.contains_key(*name))
        && !batches.is_empty();
    complete.then_some(ClientTrace {
        request,
        children,
        batches,
    })
}

/// Checks what every request span must carry, and its stage children's order in time.
fn check_request(trace: &ClientTrace<'_>, name: &str, request_id: &str) {
    let request = trace.request;
    assert_eq!(request.name, name);
    assert_eq!(request.kind, SpanKind::Server as i32, "{request:?}");
    assert_eq!(
        attribute(request, "id"),
        Some(&Value::StringValue(request_id.to_owned())),
        "the request id on the span: {request:?}"
    );
    let stage = |name: &str| trace.children[name];
    // Admission, then preprocessing, then the queue, then inference; each inside the request.
    let order = ["admission", "preprocess", "queue", "inference"].map(stage);
    for pair in order.windows(2) {
        assert!(
            pair[0].end_time_unix_nano <= pair[1].start_time_unix_nano + 1_000_000,
            "{} ends before {} starts",
            pair[0].name,
            pair[1].name
        );
    }
    for span in order {
        assert!(span.start_time_unix_nano >= request.start_time_unix_nano);
        assert!(span.end_time_unix_nano <= request.end_time_unix_nano);
    }
    let inference = stage("inference");
    assert!(
        matches!(attribute(inference, "batch_size"), Some(Value::IntValue(n)) if *n >= 1),
        "{inference:?}"
    );
    let batch = trace.batches[0];
    assert_eq!(batch.name, "batch");
    assert!(
        batch.parent_span_id.is_empty(),
        "the batch span is a root of its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_traceparent_parents_the_request_and_stage_spans_on_http_and_grpc() {
    let (endpoint, mut received) = receiver().await;
    let grpc_port = free_port().to_string();
    let admin_port = free_port().to_string();
    let server = ServerProcess::start_with_env(
        &[
            "--checkpoint",
            &tiny(),
            "--grpc-port",
            &grpc_port,
            "--admin-port",
            &admin_port,
            "--otlp-endpoint",
            &endpoint,
            "--otlp-export-delay-ms",
            "50",
        ],
        &[("OTEL_SERVICE_NAME", "traced-under-test")],
    );
    let image = std::fs::read(fixture("images/chelsea.png")).expect("fixture");

    let http_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let http_parent = "00f067aa0ba902b7";
    let answer = reqwest::Client::new()
        .post(format!("http://{}/classify", server.addr))
        .header("traceparent", format!("00-{http_trace}-{http_parent}-01"))
        .header("x-request-id", "traced-http")
        .body(image.clone())
        .send()
        .await
        .expect("classify");
    assert_eq!(answer.status(), 200);

    let grpc_trace = "0af7651916cd43dd8448eb211c80319c";
    let grpc_parent = "b7ad6b7169203331";
    let traceparent = format!("00-{grpc_trace}-{grpc_parent}-01");
    let answer = grpc::call(
        server.grpc_addr.as_deref().expect("gRPC on"),
        MODEL_INFER,
        &grpc::infer_request("repvgg", &image),
        &[
            ("traceparent", &traceparent),
            ("x-request-id", "traced-grpc"),
        ],
    )
    .await;
    assert_eq!(answer.status, 0, "{}", answer.message);

    // Spans arrive in batches as they end; wait (bounded) until both traces are complete.
    let mut spans = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while find(&spans, http_trace, http_parent).is_none()
        || find(&spans, grpc_trace, grpc_parent).is_none()
    {
        let next = tokio::time::timeout_at(deadline, received.recv()).await;
        let (service, span) = next
            .expect("both traces within 30 s")
            .expect("receiver open");
        assert_eq!(service, "traced-under-test", "OTEL_SERVICE_NAME");
        spans.push(span);
    }
    let http = find(&spans, http_trace, http_parent).expect("HTTP trace");
    check_request(&http, "POST /classify", "traced-http");
    assert!(matches!(
        attribute(http.request, "http.response.status_code"),
        Some(Value::IntValue(200))
    ));
    let grpc = find(&spans, grpc_trace, grpc_parent).expect("gRPC trace");
    check_request(
        &grpc,
        "inference.GRPCInferenceService/ModelInfer",
        "traced-grpc",
    );

    // The exporter's counters on the admin listener: what it sent, nothing dropped. It counts an
    // export once the receiver has answered, which can be just after the spans reached the test,
    // so read until the count arrives (bounded).
    let admin = server.admin_addr.as_deref().expect("admin on");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metric_value(&metrics, "repvgg_trace_spans_exported_total") >= 12.0
            || tokio::time::Instant::now() > deadline
        {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        metric_value(&metrics, "repvgg_trace_spans_exported_total") >= 12.0,
        "spans exported within 10 s"
    );
    assert_eq!(
        metric_value(&metrics, "repvgg_trace_spans_dropped_total"),
        0.0
    );
}

/// A collector protocol we do not speak is refused at start, naming the variable, rather than
/// exporting nothing.
#[test]
fn an_unsupported_otlp_protocol_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
        .args(["serve"])
        .args(LOCAL_SERVE)
        .args(["--otlp-endpoint", "http://127.0.0.1:4318"])
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf") && stderr.contains("gRPC"),
        "{stderr}"
    );
}
