//! The Open Inference Protocol over gRPC (tonic): `inference.GRPCInferenceService`, as
//! `tritonclient.grpc` speaks it, on its own port (`--grpc-port`). Each method is a thin
//! adapter: [`convert`] the message, call [`crate::v2`] (and through it the one
//! [`crate::pipeline`]), convert back. Requests are counted in the same series as HTTP's, with
//! `protocol="grpc"`, the method path as `route` and the status code's name as `status`.

pub(crate) mod codec;
pub(crate) mod connections;
pub(crate) mod convert;
mod gate;
mod message_limit;

/// The code generated from `proto/grpc_service.proto` (build.rs).
#[allow(missing_debug_implementations, clippy::all, clippy::unwrap_used)]
pub(crate) mod proto {
    tonic::include_proto!("inference");
}

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::metrics::Protocol;
use crate::service::AppState;
use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::*;

/// The service, over the same state as the HTTP routes.
#[derive(Debug)]
struct Service {
    state: AppState,
}

/// The gRPC port's limits (see [`connections`]).
#[derive(Clone, Debug)]
pub(crate) struct GrpcLimits {
    pub connections: connections::ConnectionLimits,
    pub http2: crate::config::GrpcConfig,
    pub budget: crate::body_budget::BodyBudget,
    /// A request message must have arrived this long after its call started.
    pub arrival_timeout: Duration,
    /// Who may call (API keys).
    pub access: crate::access::Access,
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting and lets the calls in
/// flight finish; the caller bounds that by the grace period, after which it cancels
/// `limits.connections.cut` and every connection ends.
pub(crate) async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: GrpcLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let message_limit = message_limit::MessageLimit {
        models: state.models.clone(),
        max_body_bytes: state.limits.max_body_bytes,
    };
    let metrics = state.metrics.clone();
    let health = health(state.readiness.watch());
    let service = GrpcInferenceServiceServer::new(Service { state })
        // The real limit follows the models served ([`message_limit`]); no message larger than
        // the body budget could ever be held.
        .max_decoding_message_size(limits.budget.limit())
        .max_encoding_message_size(usize::MAX);
    let http2 = &limits.http2;
    let mut server = tonic::transport::Server::builder()
        .max_concurrent_streams(http2.max_concurrent_streams)
        .http2_keepalive_interval(http2.keepalive_interval)
        .http2_keepalive_timeout(Some(http2.keepalive_timeout))
        .http2_max_header_list_size(64 * 1024);
    if let Some(age) = http2.max_connection_age {
        server = server.max_connection_age(age);
    }
    let incoming =
        connections::incoming(listener, limits.connections.clone(), Arc::clone(&metrics));
    server
        .layer(connections::CallLimits {
            budget: limits.budget,
            message_limit,
            arrival_timeout: limits.arrival_timeout,
            access: limits.access,
            metrics: Arc::clone(&metrics),
        })
        .add_service(health)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// `grpc.health.v1.Health` (tonic-health), following readiness: SERVING once the model is
/// warmed up, NOT_SERVING from the start of shutdown (the lame duck) or a failure, for the
/// whole server (`""`) and for `inference.GRPCInferenceService`, so Kubernetes gRPC probes
/// see what `/readyz` says.
fn health(
    mut ready: tokio::sync::watch::Receiver<bool>,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        loop {
            let status = if *ready.borrow_and_update() {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            for name in ["", SERVICE_NAME] {
                reporter.set_service_status(name, status).await;
            }
            if ready.changed().await.is_err() {
                return;
            }
        }
    });
    service
}

/// The inference service's full name, as health checks ask for it.
const SERVICE_NAME: &str = "inference.GRPCInferenceService";

/// Calls that probes make: not counted as API requests in `/stats`.
const PROBES: &[&str] = &[SERVER_LIVE, SERVER_READY, MODEL_READY];
const SERVER_LIVE: &str = "/inference.GRPCInferenceService/ServerLive";
const SERVER_READY: &str = "/inference.GRPCInferenceService/ServerReady";
const MODEL_READY: &str = "/inference.GRPCInferenceService/ModelReady";

impl Service {
    /// Runs one call with the in-flight gauge and the request series.
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let metrics = &self.state.metrics;
        let inflight = metrics.inflight();
        let result = call.await;
        drop(inflight);
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
        if !PROBES.contains(&method) {
            metrics.api_request(
                (code != tonic::Code::Ok)
                    .then(|| format!("{code:?}"))
                    .as_deref(),
            );
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
        self.observed(SERVER_LIVE, async { Ok(ServerLiveResponse { live: true }) })
            .await
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        self.observed(SERVER_READY, async {
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
        self.observed(MODEL_READY, async {
            let ModelReadyRequest { name, version } = request.into_inner();
            self.state
                .models
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
            let models = &self.state.models;
            let (served, kind) = models
                .find(&name, Some(&version))
                .map_err(convert::status)?;
            let versions = models.versions(&served.name);
            Ok(convert::metadata(served.catalog.metadata(kind, &versions)))
        })
        .await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let arrived = Instant::now();
        let deadline = arrived + self.state.limits.request_timeout;
        self.observed("/inference.GRPCInferenceService/ModelInfer", async {
            let request = convert::request(request.into_inner()).map_err(convert::status)?;
            let (served, kind) = self
                .state
                .models
                .find(&request.model, request.version.as_deref())
                .map_err(convert::status)?;
            let target = crate::v2::Target {
                catalog: &served.catalog,
                pipeline: &served.pipeline,
                kind,
                version: served.version,
            };
            let answer = crate::v2::infer(target, request, arrived, deadline)
                .await
                .map_err(convert::status)?;
            Ok(convert::response(answer))
        })
        .await
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        self.observed("/inference.GRPCInferenceService/RepositoryIndex", async {
            let entries = self.state.control.index(request.into_inner().ready);
            Ok(convert::index(entries))
        })
        .await
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        self.observed(
            "/inference.GRPCInferenceService/RepositoryModelLoad",
            async {
                let request = request.into_inner();
                let parameters = request.parameters.keys().map(String::as_str);
                self.state
                    .control
                    .load(&request.model_name, parameters)
                    .await
                    .map_err(convert::status)?;
                Ok(RepositoryModelLoadResponse {})
            },
        )
        .await
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        self.observed(
            "/inference.GRPCInferenceService/RepositoryModelUnload",
            async {
                let request = request.into_inner();
                let parameters = request.parameters.keys().map(String::as_str);
                self.state
                    .control
                    .unload(&request.model_name, parameters)
                    .await
                    .map_err(convert::status)?;
                Ok(RepositoryModelUnloadResponse {})
            },
        )
        .await
    }
}
