//! The Open Inference Protocol over gRPC (tonic): `inference.GRPCInferenceService`, as
//! `tritonclient.grpc` speaks it, on its own port (`--grpc-port`). Each method is a thin
//! adapter: [`convert`] the message, call [`crate::v2`] (and through it the one
//! [`crate::pipeline`]), convert back. Requests are counted in the same series as HTTP's, with
//! `protocol="grpc"`, the method path as `route` and the status code's name as `status`.

mod convert;

/// The code generated from `proto/grpc_service.proto` (build.rs).
#[allow(missing_debug_implementations, clippy::all, clippy::unwrap_used)]
mod proto {
    tonic::include_proto!("inference");
}

use std::future::Future;
use std::time::Instant;

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::http::AppState;
use crate::metrics::Protocol;
use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::*;

/// The service, over the same state as the HTTP routes.
#[derive(Debug)]
struct Service {
    state: AppState,
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting and lets the calls in
/// flight finish (the caller bounds that by the grace period).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let limit = state.limits.max_body_bytes;
    let service = GrpcInferenceServiceServer::new(Service { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

impl Service {
    /// Runs one call with the in-flight gauge and the request series.
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let metrics = &self.state.metrics;
        metrics.inflight(1.0);
        let result = call.await;
        metrics.inflight(-1.0);
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        metrics.request_done(
            Protocol::Grpc,
            method,
            &format!("{code:?}"),
            started.elapsed(),
        );
        if code != tonic::Code::Ok {
            tracing::info!(method, ?code, "grpc call failed");
        }
        result.map(Response::new)
    }

    fn ready(&self) -> bool {
        self.state.readiness.is_ready()
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        self.observed("/inference.GRPCInferenceService/ServerLive", async {
            Ok(ServerLiveResponse { live: true })
        })
        .await
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        self.observed("/inference.GRPCInferenceService/ServerReady", async {
            Ok(ServerReadyResponse {
                ready: self.ready(),
            })
        })
        .await
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        self.observed("/inference.GRPCInferenceService/ModelReady", async {
            let ModelReadyRequest { name, version } = request.into_inner();
            self.state
                .catalog
                .find(&name, Some(&version))
                .map_err(convert::status)?;
            Ok(ModelReadyResponse {
                ready: self.ready(),
            })
        })
        .await
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.observed("/inference.GRPCInferenceService/ServerMetadata", async {
            Ok(ServerMetadataResponse {
                name: "repvgg-serve".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                extensions: crate::v2::EXTENSIONS
                    .iter()
                    .map(|e| e.to_string())
                    .collect(),
            })
        })
        .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        self.observed("/inference.GRPCInferenceService/ModelMetadata", async {
            let ModelMetadataRequest { name, version } = request.into_inner();
            let catalog = &self.state.catalog;
            let kind = catalog
                .find(&name, Some(&version))
                .map_err(convert::status)?;
            Ok(convert::metadata(catalog.metadata(kind)))
        })
        .await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let arrived = Instant::now();
        let deadline = arrived + self.state.limits.request_timeout;
        let span = tracing::info_span!("grpc", method = "ModelInfer");
        self.observed("/inference.GRPCInferenceService/ModelInfer", async {
            let request = convert::request(request.into_inner()).map_err(convert::status)?;
            let answer = crate::v2::infer(
                &self.state.catalog,
                &self.state.pipeline,
                request,
                arrived,
                deadline,
            )
            .await
            .map_err(convert::status)?;
            Ok(convert::response(answer))
        })
        .instrument(span)
        .await
    }
}
