//! `ServeArgs` -> the validated `ServeConfig` the server starts from: checks across flags,
//! files that must exist, the CPU for bf16, and the defaults that depend on the machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::model_plan::{ModelPlan, PlanDefaults};
use super::repository::{self, ModelSettings};
use super::ServeArgs;
use crate::inference::precision::{CpuBf16, Precision};
use crate::model::ModelSource;
use crate::preprocess::normalize::{MEAN, STD};

/// Validated serve settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// gRPC listener; `None` when `--grpc-port 0`.
    pub grpc_addr: Option<SocketAddr>,
    /// Admin listener; `None` when `--admin-port 0`.
    pub admin_addr: Option<SocketAddr>,
    /// The page at `/` and the dashboard at `/dashboard` (`--ui`).
    pub ui: bool,
    pub access: AccessConfig,
    /// TLS on every listener; `None`: plaintext.
    pub tls: Option<crate::tls::TlsFiles>,
    /// What is served: one model version from --checkpoint / --model (or the demo), or every
    /// version a model repository's policies pick. Never empty.
    pub models: Vec<ModelPlan>,
    /// Repository models whose `config.json` splits traffic between versions.
    pub splits: BTreeMap<String, repository::Split>,
    /// What a version loaded later takes from the flags.
    pub defaults: PlanDefaults,
    /// `--model-control`: whether versions change while serving.
    pub model_control: crate::models::ModelControl,
    /// `--model-poll-interval-ms`.
    pub model_poll_interval: Duration,
    /// `--memory-limit-mib` (bytes), or the container's limit: what loads while serving must
    /// fit under. `None`: loads are not checked.
    pub memory_limit: Option<u64>,
    /// `--load-nice`: nice steps below serving for a load's preparation.
    pub load_nice: i32,
    /// `--model-repository`, when the models come from one.
    pub repository: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub ort_dylib: Option<PathBuf>,
    pub batching: BatchingConfig,
    pub inference: InferenceConfig,
    pub preprocess: PreprocessLimits,
    pub connections: crate::http::connections::ConnectionLimits,
    pub grpc: GrpcConfig,
    pub drain_delay: Duration,
    pub shutdown_grace: Duration,
    /// OpenTelemetry export; `None`: tracing off.
    pub traces: Option<crate::telemetry::TraceConfig>,
}

/// Who may call what.
#[derive(Clone, Debug, Default)]
pub struct AccessConfig {
    /// `--api-keys-file`: checked (it must parse) when the server starts.
    pub api_keys_file: Option<PathBuf>,
    /// Origins allowed for CORS (`--cors-allow-origin`); empty: CORS off.
    pub cors_allow_origins: Vec<http::HeaderValue>,
}

#[derive(Clone, Debug)]
pub struct BatchingConfig {
    pub max_queue_delay: Duration,
    pub queue_capacity: usize,
    pub request_timeout: Duration,
    /// `--keep-warm-ms`, `None` when off.
    pub keep_warm: Option<crate::batching::KeepWarm>,
}

#[derive(Clone, Debug)]
pub struct InferenceConfig {
    pub precision: Precision,
    /// bf16 only: the speed-up over fp32 it must show at start-up.
    pub bf16_min_speedup: f64,
    pub spinning: bool,
    pub wide_session: bool,
    /// `--core-budget`: cores shared by decoding and inference, `None` when off.
    pub core_budget: Option<usize>,
}

/// HTTP/2 limits of the gRPC port.
#[derive(Clone, Debug)]
pub struct GrpcConfig {
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    pub max_connection_age: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct PreprocessLimits {
    pub workers: usize,
    pub max_decode_bytes: u64,
    pub max_body_bytes: usize,
    /// Body bytes held in memory across every connection.
    pub max_inflight_body_bytes: usize,
    /// Images one `/classify` request may carry.
    pub max_images_per_request: usize,
    pub body_timeout: Duration,
    pub max_pixels: u64,
    pub jpeg_dct_scaling: bool,
    /// `--mean` / `--std`.
    pub normalization: crate::preprocess::normalize::Normalization,
}

impl ServeArgs {
    /// Checks what clap's parsers cannot (one flag against another, files, the CPU); the
    /// message names the flag.
    pub fn validate(self) -> Result<ServeConfig, String> {
        let Self {
            listen,
            access,
            model,
            batching,
            threads,
            request_limits: limits,
            grpc,
            preprocess,
            shutdown,
            traces,
        } = self;
        let traces = trace_config(traces)?;
        if limits.max_inflight_body_bytes < limits.max_body_bytes {
            return Err(format!(
                "--max-inflight-body-bytes {} is less than --max-body-bytes {}: one request of \
                 the largest size could never be read",
                limits.max_inflight_body_bytes, limits.max_body_bytes
            ));
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let ip: std::net::IpAddr = listen
            .host
            .parse()
            .map_err(|_| format!("--host `{}` is not an IP address", listen.host))?;
        if listen.grpc_port != 0 && listen.grpc_port == listen.port {
            return Err(format!(
                "--grpc-port {} is also --port: give gRPC its own port (0 turns it off)",
                listen.grpc_port
            ));
        }
        if listen.admin_port != 0 && [listen.port, listen.grpc_port].contains(&listen.admin_port) {
            return Err(format!(
                "--admin-port {} is also --port or --grpc-port: give the admin listener its own \
                 port (0 turns it off)",
                listen.admin_port
            ));
        }
        let admin_ip: std::net::IpAddr = match &listen.admin_host {
            Some(host) => host
                .parse()
                .map_err(|_| format!("--admin-host `{host}` is not an IP address"))?,
            None => ip,
        };
        let tls = match (access.tls_cert, access.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                cert: existing(cert, "--tls-cert")?,
                key: existing(key, "--tls-key")?,
                client_ca: access
                    .tls_client_ca
                    .map(|ca| existing(ca, "--tls-client-ca"))
                    .transpose()?,
            }),
            _ => None,
        };
        let access = AccessConfig {
            api_keys_file: access
                .api_keys_file
                .map(|p| existing(p, "--api-keys-file"))
                .transpose()?,
            cors_allow_origins: access
                .cors_allow_origin
                .iter()
                .map(|origin| cors_origin(origin))
                .collect::<Result<_, _>>()?,
        };
        if let (Some(resize), Some(crop)) = (preprocess.resize, preprocess.crop) {
            if crop > resize {
                return Err(format!("--crop {crop} is larger than --resize {resize}"));
            }
        }
        let defaults = PlanDefaults {
            resize: preprocess.resize,
            crop: preprocess.crop,
            max_batch_size: batching.max_batch_size,
            sessions: threads.sessions,
            intra_threads: threads.intra_threads,
            cores,
            precision: model.precision,
        };
        let mut splits = BTreeMap::new();
        let models = match &model.model_repository {
            Some(dir) => repository::scan(dir)?
                .into_iter()
                .flat_map(|model| {
                    if let Some(split) = &model.split {
                        splits.insert(model.name.clone(), split.clone());
                    }
                    defaults.plans(model)
                })
                .collect(),
            None => {
                repository::check_name(&model.model_name)
                    .map_err(|e| format!("--model-name: {e}"))?;
                let settings = ModelSettings {
                    labels: model.labels.map(|p| existing(p, "--labels")).transpose()?,
                    ..ModelSettings::default()
                };
                let source = model_source(model.checkpoint, model.model, model.demo_variant)?;
                vec![defaults.plan(model.model_name, 1, source, settings)]
            }
        };
        if model.model_control != crate::models::ModelControl::None
            && model.model_repository.is_none()
        {
            return Err("--model-control explicit or poll needs --model-repository DIR".into());
        }
        if model.precision == Precision::Bf16 {
            CpuBf16::detect().require_native()?;
        }
        Ok(ServeConfig {
            addr: SocketAddr::new(ip, listen.port),
            grpc_addr: (listen.grpc_port != 0).then(|| SocketAddr::new(ip, listen.grpc_port)),
            admin_addr: (listen.admin_port != 0)
                .then(|| SocketAddr::new(admin_ip, listen.admin_port)),
            ui: listen.ui,
            access,
            tls,
            models,
            splits,
            defaults,
            model_control: model.model_control,
            model_poll_interval: Duration::from_millis(model.model_poll_interval_ms),
            memory_limit: model
                .memory_limit_mib
                .map(|mib| mib << 20)
                .or_else(crate::memory::container_limit),
            load_nice: model.load_nice,
            repository: model.model_repository,
            cache_dir: (!model.no_cache).then_some(model.cache_dir),
            ort_dylib: model.ort_dylib,
            batching: BatchingConfig {
                max_queue_delay: Duration::from_millis(batching.max_queue_delay_ms),
                queue_capacity: batching.queue_capacity,
                request_timeout: Duration::from_millis(batching.request_timeout_ms),
                keep_warm: (batching.keep_warm_ms > 0).then(|| crate::batching::KeepWarm {
                    period: Duration::from_millis(batching.keep_warm_ms),
                    horizon: Duration::from_secs(batching.keep_warm_for_s),
                }),
            },
            inference: InferenceConfig {
                precision: model.precision,
                bf16_min_speedup: model.bf16_min_speedup,
                spinning: threads.ort_spinning,
                wide_session: threads.wide_session,
                core_budget: threads.core_budget.then(|| threads.cores.unwrap_or(cores)),
            },
            preprocess: PreprocessLimits {
                workers: threads.preprocess_workers.unwrap_or(cores),
                max_body_bytes: limits.max_body_bytes,
                max_inflight_body_bytes: limits.max_inflight_body_bytes,
                max_images_per_request: limits.max_images_per_request,
                max_decode_bytes: limits
                    .max_decode_bytes
                    .unwrap_or_else(crate::preprocess::budget::default_budget),
                body_timeout: Duration::from_millis(limits.body_timeout_ms),
                max_pixels: limits.max_pixels,
                jpeg_dct_scaling: preprocess.jpeg_dct_scaling,
                normalization: crate::preprocess::normalize::Normalization {
                    mean: channels(preprocess.mean.as_deref(), "--mean", MEAN, |_| true)?,
                    std: channels(preprocess.std.as_deref(), "--std", STD, |v| v > 0.0)?,
                },
            },
            connections: crate::http::connections::ConnectionLimits {
                max_connections: limits.max_connections,
                idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
            },
            grpc: GrpcConfig {
                max_concurrent_streams: grpc.grpc_max_concurrent_streams,
                keepalive_interval: (grpc.grpc_keepalive_interval_ms > 0)
                    .then(|| Duration::from_millis(grpc.grpc_keepalive_interval_ms)),
                keepalive_timeout: Duration::from_millis(grpc.grpc_keepalive_timeout_ms),
                max_connection_age: (grpc.grpc_max_connection_age_ms > 0)
                    .then(|| Duration::from_millis(grpc.grpc_max_connection_age_ms)),
            },
            drain_delay: Duration::from_millis(shutdown.drain_delay_ms),
            shutdown_grace: Duration::from_secs(shutdown.shutdown_grace_s),
            traces,
        })
    }
}

/// Three per-channel numbers (R, G, B) from a flag, or `default`; each must be finite and pass
/// `valid`.
fn channels(
    given: Option<&[f32]>,
    flag: &str,
    default: [f32; 3],
    valid: impl Fn(f32) -> bool,
) -> Result<[f32; 3], String> {
    let Some(values) = given else {
        return Ok(default);
    };
    match <[f32; 3]>::try_from(values) {
        Ok(three) if three.iter().all(|v| v.is_finite() && valid(*v)) => Ok(three),
        _ => Err(format!(
            "{flag} takes three numbers (R,G,B on the 0..1 scale{}), got {values:?}",
            if flag == "--std" { ", above 0" } else { "" }
        )),
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn cors_origin(origin: &str) -> Result<http::HeaderValue, String> {
    let error = || {
        format!(
            "--cors-allow-origin `{origin}` is not an origin like `https://app.example.com` \
             (scheme, host and optional port, no path)"
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(error)?;
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !matches!(scheme, "http" | "https") || !host_ok {
        return Err(error());
    }
    http::HeaderValue::from_str(origin).map_err(|_| error())
}

/// The one model of `--checkpoint`, `--model`, or the demo.
fn model_source(
    checkpoint: Option<PathBuf>,
    onnx: Option<PathBuf>,
    demo_variant: String,
) -> Result<ModelSource, String> {
    Ok(match (checkpoint, onnx) {
        (Some(path), None) => ModelSource::Checkpoint(existing(path, "--checkpoint")?),
        (None, Some(path)) => ModelSource::Onnx(existing(path, "--model")?),
        _ => {
            if crate::model::variants::find(&demo_variant).is_none() {
                return Err(format!(
                    "--demo-variant `{demo_variant}` is not a RepVGG variant (known: {})",
                    crate::model::variants::names().join(", ")
                ));
            }
            ModelSource::Demo {
                variant: demo_variant,
                seed: 0,
            }
        }
    })
}

fn existing(path: PathBuf, flag: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{flag} {}: no such file", path.display()))
    }
}

/// Tracing is on when an endpoint is given (flag, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
/// OTEL_EXPORTER_OTLP_ENDPOINT) and OTEL_SDK_DISABLED is not `true`. Only OTLP over plaintext
/// gRPC is spoken: another protocol or an `https` endpoint is refused here rather than
/// silently exporting nothing.
fn trace_config(
    args: super::serve_args::TraceArgs,
) -> Result<Option<crate::telemetry::TraceConfig>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let Some(endpoint) = args
        .otlp_endpoint
        .filter(|e| !e.trim().is_empty())
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
    else {
        return Ok(None);
    };
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = var(name).filter(|p| !p.trim().eq_ignore_ascii_case("grpc")) {
            return Err(format!(
                "{name}={protocol}: traces are exported over OTLP/gRPC only (use `grpc`, the \
                 collector's port 4317)"
            ));
        }
    }
    if !endpoint.starts_with("http://") {
        return Err(format!(
            "--otlp-endpoint `{endpoint}`: give a plaintext gRPC address as \
             http://host:4317 (TLS to the collector is not supported; run the collector \
             beside the service)"
        ));
    }
    Ok(Some(crate::telemetry::TraceConfig {
        endpoint,
        service_name: args.otel_service_name,
        queue_capacity: args.otlp_queue_size as usize,
        export_delay: Duration::from_millis(args.otlp_export_delay_ms),
    }))
}
