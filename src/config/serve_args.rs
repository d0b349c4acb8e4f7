//! The `serve` flags, grouped by topic (each group is a section of `--help`); clap's parsers
//! check each value's range, [`super::serve_config`] what needs several flags together.

use std::path::PathBuf;

use clap::Args;

use crate::inference::precision::Precision;

/// The largest `--max-batch-size` (and `max_batch_size` of a repository model).
pub(crate) const MAX_BATCH_SIZE: usize = 256;

/// `repvgg-serve serve` flags, by topic (each group is a section of `--help`). Every flag has a
/// `REPVGG_*` environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub batching: BatchingArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub request_limits: RequestLimits,
    #[command(flatten)]
    pub grpc: GrpcArgs,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    #[command(flatten)]
    pub traces: TraceArgs,
}

/// Where the service listens.
#[derive(Debug, Args)]
#[command(next_help_heading = "Listening")]
pub struct ListenArgs {
    /// Address to listen on. Use 127.0.0.1 to keep the service local.
    #[arg(long, env = "REPVGG_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the log says which).
    #[arg(long, env = "REPVGG_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Port of the gRPC endpoint (the Open Inference Protocol's `GRPCInferenceService`, as
    /// `tritonclient.grpc` speaks it), on the same host; 0 turns it off.
    #[arg(long, env = "REPVGG_GRPC_PORT", default_value_t = 8081)]
    pub grpc_port: u16,
    /// Port of the admin listener: `/metrics`, `/stats` and the full `/v1/models` (with the
    /// checkpoint's path), kept off the public ports; 0 turns it off.
    #[arg(long, env = "REPVGG_ADMIN_PORT", default_value_t = 8082)]
    pub admin_port: u16,
    /// Address of the admin listener (default: --host). 127.0.0.1 keeps it to the machine
    /// (a sidecar or `kubectl port-forward`).
    #[arg(long, env = "REPVGG_ADMIN_HOST")]
    pub admin_host: Option<String>,
    /// The page to try the service at `/` on the public port (it calls `/classify` like any
    /// client) and the live dashboard at `/dashboard` on the admin listener. `false`: both 404.
    #[arg(long, env = "REPVGG_UI", default_value_t = true, action = clap::ArgAction::Set)]
    pub ui: bool,
}

/// Who may call what.
#[derive(Debug, Args)]
#[command(next_help_heading = "Access")]
pub struct AccessArgs {
    /// API keys, one per line as `<role> <key>` (`#` comments; roles `inference` for the public
    /// ports, `admin` for the admin listener; keys of at least 16 characters). Clients send
    /// `Authorization: Bearer <key>` (gRPC: the same metadata). Health and readiness stay open.
    /// The file is re-read when it changes (a rotated Secret), without a restart. Without it
    /// every call is allowed.
    #[arg(long, env = "REPVGG_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// An origin browsers may call the public port from (`https://app.example.com`), for
    /// cross-origin requests (CORS); repeat the flag, or separate with commas. None by default:
    /// browsers may then call only from the service's own origin.
    #[arg(long, env = "REPVGG_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,
    /// TLS certificate chain (PEM, leaf first) for every listener (HTTP, gRPC, admin); with
    /// --tls-key. Re-read when it changes (cert-manager renewals), without a restart.
    #[arg(long, env = "REPVGG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "REPVGG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by a CA in this PEM file.
    #[arg(long, env = "REPVGG_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// What is served, and how it is computed.
#[derive(Debug, Args)]
#[command(next_help_heading = "Model")]
pub struct ModelArgs {
    /// Training or deploy checkpoint (.pth or .safetensors, official or timm names) to serve.
    #[arg(long, env = "REPVGG_CHECKPOINT", conflicts_with = "model")]
    pub checkpoint: Option<PathBuf>,
    /// An ONNX model written by `repvgg-serve export`, served as it is.
    #[arg(long, env = "REPVGG_MODEL")]
    pub model: Option<PathBuf>,
    /// Serve every model of a repository in Triton's layout, DIR/<model>/<version>/<one
    /// checkpoint or .onnx>, with an optional DIR/<model>/config.json (README: Model
    /// repository). Instead of --checkpoint / --model; --model-name and --labels do not apply.
    #[arg(long, env = "REPVGG_MODEL_REPOSITORY", conflicts_with_all = ["checkpoint", "model", "labels"])]
    pub model_repository: Option<PathBuf>,
    /// `none`: the repository's versions are loaded at start and served until exit.
    /// `explicit`: also load, reload and unload models while serving through the v2 repository
    /// extension on the admin listener (`POST /v2/repository/models/{m}/load`, `.../unload`,
    /// `/v2/repository/index`; admin key), as Triton's EXPLICIT mode; everything is loaded at
    /// start.
    /// `poll`: the repository is scanned every --model-poll-interval-ms and what it holds is
    /// served (a version directory must appear complete: write `.N`, rename to `N`).
    #[arg(long, env = "REPVGG_MODEL_CONTROL", value_enum, default_value_t = crate::models::ModelControl::None)]
    pub model_control: crate::models::ModelControl,
    /// With --model-control poll: how often the repository is scanned.
    #[arg(long, env = "REPVGG_MODEL_POLL_INTERVAL_MS", value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(100..=3_600_000), default_value_t = 5_000)]
    pub model_poll_interval_ms: u64,
    /// With --model-control explicit or poll: the memory (MiB) this process may use, checked
    /// before each load while serving. A version whose estimated peak (the footprint formula of
    /// `repvgg-serve inspect`, fusion included) does not fit beside what the process holds now
    /// is refused with the numbers, and what was serving stays. Default: the container's memory
    /// limit (cgroup); without one, loads are not checked.
    #[arg(long, env = "REPVGG_MEMORY_LIMIT_MIB", value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    pub memory_limit_mib: Option<u64>,
    /// How far below serving a load's CPU-heavy part runs (nice steps, 0-19; 0: the same
    /// priority): reading and fusing the checkpoint and optimising the graph, most of a load,
    /// take the cores that serving leaves idle, so a reload while serving slows requests less
    /// and takes longer on a busy server (docs/bench/reload.md). Sessions are built and warmed
    /// at serving priority.
    #[arg(long, env = "REPVGG_LOAD_NICE", value_parser = clap::value_parser!(i32).range(0..=19), default_value_t = 10)]
    pub load_nice: i32,
    /// Variant of the random demo model used when neither --checkpoint nor --model is given.
    #[arg(long, env = "REPVGG_DEMO_VARIANT", default_value = "A0")]
    pub demo_variant: String,
    /// Name of the model in the v2 protocol (REST `/v2/models/{name}` and gRPC): `{name}` takes
    /// encoded images, `{name}-tensor` normalised tensors.
    #[arg(long, env = "REPVGG_MODEL_NAME", default_value = "repvgg")]
    pub model_name: String,
    /// Where fused models are cached, keyed by checkpoint sha256, so restarts skip fusion.
    /// Put it on a volume in containers.
    #[arg(long, env = "REPVGG_CACHE_DIR", default_value = ".cache/repvgg-serve")]
    pub cache_dir: PathBuf,
    /// Fuse at every start, never read or write the cache.
    #[arg(long, env = "REPVGG_NO_CACHE", default_value_t = false)]
    pub no_cache: bool,
    /// Class names, one per line. Default: ImageNet-1k names for 1000-class models, else class_N.
    #[arg(long, env = "REPVGG_LABELS")]
    pub labels: Option<PathBuf>,
    /// Numeric precision: `fp32` (ONNX Runtime's CPU provider: exact, as PyTorch computes) or
    /// `bf16` (ONNX Runtime's OpenVINO provider with bf16 inference: 2-6 times faster on CPUs
    /// with AMX or on AMD Zen 4, refused on CPUs without `amx_bf16` or `avx512_bf16` and
    /// wherever start-up measures it not faster, see --bf16-min-speedup; logits move slightly,
    /// see `repvgg-serve compare`). bf16 needs the OpenVINO runtime: scripts/setup-ort-openvino.sh.
    #[arg(long, env = "REPVGG_PRECISION", value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// With --precision bf16: the speed-up over fp32 that bf16 must show on the start-up check
    /// batch (both engines timed side by side), or the start is refused with both timings.
    /// 0 serves bf16 whatever the timing.
    #[arg(long, env = "REPVGG_BF16_MIN_SPEEDUP", value_parser = min_speedup, default_value_t = crate::inference::bf16_speed::DEFAULT_MIN_SPEEDUP)]
    pub bf16_min_speedup: f64,
    /// Path of the ONNX Runtime library (default: ORT_DYLIB_PATH, then .ort/ from setup:
    /// libonnxruntime.so.1.31.1; with --precision bf16, .ort-openvino/libonnxruntime.so.1.24.1).
    #[arg(long, env = "REPVGG_ORT_DYLIB")]
    pub ort_dylib: Option<PathBuf>,
}

/// The batching queue and admission.
#[derive(Debug, Args)]
#[command(next_help_heading = "Batching")]
pub struct BatchingArgs {
    /// Largest batch sent to ONNX Runtime. Larger batches raise throughput a little on CPU and
    /// add latency; the warm-up runs at this size.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_BATCH_SIZE as u64), env = "REPVGG_MAX_BATCH_SIZE", default_value_t = 8)]
    pub max_batch_size: usize,
    /// How long the first queued image waits for others before a partial batch leaves (ms).
    /// 0 = take whatever is queued when a session is free (best at low load).
    #[arg(long, env = "REPVGG_MAX_QUEUE_DELAY_MS", default_value_t = 0)]
    pub max_queue_delay_ms: u64,
    /// Images admitted at once (being preprocessed, queued or inferred); beyond it an image is
    /// refused with 503 on arrival, before it is decoded. Size it as throughput x the latency
    /// you accept.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000), env = "REPVGG_QUEUE_CAPACITY", default_value_t = 64)]
    pub queue_capacity: usize,
    /// Deadline per request (ms): an image still queued after it is answered 504, never computed.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600_000), env = "REPVGG_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Keep an idle model warm: after this many ms without a batch, run one blank image on
    /// the session a lone image takes, and again every period while idle (0 = off). For hosts
    /// where memory left untouched goes cold: on a 2-core Xeon VM a run after one second idle
    /// took 82-92 ms instead of 15 (docs/anatomy.md). Costs one batch-1 run per period.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=60_000), env = "REPVGG_KEEP_WARM_MS", default_value_t = 0)]
    pub keep_warm_ms: u64,
    /// How long after the last real batch warm runs go on (s).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400), env = "REPVGG_KEEP_WARM_FOR_S", default_value_t = 60)]
    pub keep_warm_for_s: u64,
}

/// Sessions and threads.
#[derive(Debug, Args)]
#[command(next_help_heading = "Threads")]
pub struct ThreadArgs {
    /// ONNX Runtime sessions, each on its own thread (default: 2, or 1 on one core). Two
    /// sessions with half the threads each measured 1.27 x the throughput of one session with
    /// all threads on 2 cores, and a p99 at 33 req/s of 78-87 ms instead of 950 ms: a parallel
    /// section stalls whenever another thread takes one of its cores, two independent runs
    /// do not. One session with all cores answers a lone image fastest (38 vs 46 ms on A0).
    /// With --precision bf16 the default is 1 session with every core: OpenVINO's own
    /// threading measured 136 vs 73 requests/s at saturation and p50 9.0 vs 15.9 ms alone
    /// against two single-threaded sessions (A0, 2-core Zen 4).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256), env = "REPVGG_SESSIONS")]
    pub sessions: Option<usize>,
    /// Intra-op threads per session (default: cores / sessions, at least 1).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024), env = "REPVGG_INTRA_THREADS")]
    pub intra_threads: Option<usize>,
    /// Let idle ONNX Runtime threads spin (slightly lower latency, burns CPU the preprocessing
    /// workers could use).
    #[arg(long, env = "REPVGG_ORT_SPINNING", default_value_t = false)]
    pub ort_spinning: bool,
    /// fp32 with several sessions: one more session with all their threads, which takes a
    /// batch when it finds every other session idle and nothing else queued, so a lone image
    /// runs on every core while a busy server keeps the throughput layout (weights are shared:
    /// it adds only its activations). `false` keeps just the narrow sessions.
    #[arg(long, env = "REPVGG_WIDE_SESSION", default_value_t = true, action = clap::ArgAction::Set)]
    pub wide_session: bool,
    /// One budget of CPU cores for decoding and inference: a model run leases as many cores as
    /// its session has threads (the wide session: all), a decode one, and whoever cannot get
    /// its cores waits, so CPU-bound threads never outnumber the cores. Off by default: on a
    /// 2-core EPYC (A0) it cost 9-13 % of the saturation throughput in three runs, and its
    /// effect on p99 under Poisson arrivals was inside the run-to-run spread (docs/anatomy.md).
    #[arg(long, env = "REPVGG_CORE_BUDGET", default_value_t = false, action = clap::ArgAction::Set)]
    pub core_budget: bool,
    /// Cores in the budget (default: the cores this process may use).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024), env = "REPVGG_CORES")]
    pub cores: Option<usize>,
    /// Preprocessing (decode + resize) worker threads (default: all cores).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024), env = "REPVGG_PREPROCESS_WORKERS")]
    pub preprocess_workers: Option<usize>,
}

/// What one request and one connection may take.
#[derive(Debug, Args)]
#[command(next_help_heading = "Request limits")]
pub struct RequestLimits {
    /// Largest request body in bytes (413 above it).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4_294_967_296), env = "REPVGG_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Time (ms) the whole request body may take to arrive, counted from the request's
    /// arrival; a client trickling its body past it gets 408 and the connection is closed.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600_000), env = "REPVGG_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Most open HTTP connections; one more is answered 503 (`too_many_connections`,
    /// `Connection: close`) and closed. Each idle connection costs about 10 KiB; keep the
    /// process's open-file limit above this.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000), env = "REPVGG_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Time (ms) a connection may wait for the next request's headers to arrive in full: it
    /// closes idle keep-alive connections and clients that send headers slowly. Keep it above
    /// the idle timeout of a load balancer in front (AWS ALB: 60 s), or the balancer may reuse
    /// a connection this server is closing.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400_000), env = "REPVGG_IDLE_TIMEOUT_MS", default_value_t = 75_000)]
    pub idle_timeout_ms: u64,
    /// Memory (bytes) images being decoded may take together: each image's peak decoding
    /// memory is computed from its header and reserved first; an image that does not fit beside
    /// the others gets 503, one larger than the whole budget 422. Default: 768 MiB, or half the
    /// container's memory limit (cgroup) when that is less.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_099_511_627_776), env = "REPVGG_MAX_DECODE_BYTES")]
    pub max_decode_bytes: Option<u64>,
    /// Request body bytes held in memory across every connection, HTTP and gRPC together
    /// (counted as they arrive, held until the request is answered); a request whose body
    /// does not fit beside the others gets 503 (`body_budget_full`, gRPC UNAVAILABLE). At least
    /// --max-body-bytes.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_099_511_627_776), env = "REPVGG_MAX_INFLIGHT_BODY_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_body_bytes: usize,
    /// Images one `/classify` request may carry (multipart parts or JSON `images`); 400 above
    /// it. v2 requests carry at most 64.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000), env = "REPVGG_MAX_IMAGES_PER_REQUEST", default_value_t = 64)]
    pub max_images_per_request: usize,
    /// Largest image in pixels, read from the header before decoding (422 above it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000), env = "REPVGG_MAX_PIXELS", default_value_t = 50_000_000)]
    pub max_pixels: u64,
}

/// HTTP/2 limits of the gRPC port (the connection cap, idle timeout and body timeout above
/// apply to it too).
#[derive(Debug, Args)]
#[command(next_help_heading = "gRPC")]
pub struct GrpcArgs {
    /// Calls one gRPC connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000), env = "REPVGG_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 64)]
    pub grpc_max_concurrent_streams: u32,
    /// Interval (ms) of HTTP/2 keepalive pings on gRPC connections; a peer that does not answer
    /// within --grpc-keepalive-timeout-ms is disconnected. 0 turns pings off.
    #[arg(
        long,
        env = "REPVGG_GRPC_KEEPALIVE_INTERVAL_MS",
        default_value_t = 60_000
    )]
    pub grpc_keepalive_interval_ms: u64,
    /// Time (ms) a keepalive ping may wait for its answer.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600_000), env = "REPVGG_GRPC_KEEPALIVE_TIMEOUT_MS", default_value_t = 20_000)]
    pub grpc_keepalive_timeout_ms: u64,
    /// Longest life (ms) of a gRPC connection; after it the client is told to reconnect
    /// (GOAWAY), so load spreads over new replicas. 0: no limit.
    #[arg(long, env = "REPVGG_GRPC_MAX_CONNECTION_AGE_MS", default_value_t = 0)]
    pub grpc_max_connection_age_ms: u64,
}

/// How images become model input.
#[derive(Debug, Args)]
#[command(next_help_heading = "Preprocessing")]
pub struct PreprocessArgs {
    /// Shorter side after resize (default: the variant's, 256; 320 for D2se).
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..=4096), env = "REPVGG_RESIZE")]
    pub resize: Option<u32>,
    /// Centre crop size (default: the variant's, 224; 320 for D2se).
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..=4096), env = "REPVGG_CROP")]
    pub crop: Option<u32>,
    /// Decode large JPEGs reduced (1/2, 1/4 or 1/8, libjpeg's scaled IDCT) while the shorter
    /// side stays at least the resize size. Turn on when clients send camera photos and CPU is
    /// the limit: several times faster on 12 MP photos, but pixels no longer equal Pillow's full
    /// decode + resize (on fixture photos scaled to 12-16 MP: mean difference 0.2-0.5, max 12
    /// per channel value; tests/preprocess_parity.rs).
    #[arg(long, env = "REPVGG_JPEG_DCT_SCALING", default_value_t = false)]
    pub jpeg_dct_scaling: bool,
    /// Per-channel means (R,G,B on the 0..1 scale) the model was trained with (default:
    /// ImageNet's, 0.485,0.456,0.406).
    #[arg(
        long,
        env = "REPVGG_MEAN",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviations (R,G,B, above 0; default: ImageNet's, 0.229,0.224,0.225).
    #[arg(long, env = "REPVGG_STD", value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
}

/// Draining on SIGTERM/SIGINT.
#[derive(Debug, Args)]
#[command(next_help_heading = "Shutdown")]
pub struct ShutdownArgs {
    /// After SIGTERM/SIGINT, keep accepting connections this long while /readyz answers 503
    /// (lame duck), so load balancers stop routing here first (ms). Kubernetes' preStop pause
    /// does the same from outside; set one of the two.
    #[arg(long, env = "REPVGG_DRAIN_DELAY_MS", default_value_t = 0)]
    pub drain_delay_ms: u64,
    /// Longest time to finish accepted requests after SIGTERM/SIGINT (s).
    #[arg(long, env = "REPVGG_SHUTDOWN_GRACE_S", default_value_t = 30)]
    pub shutdown_grace_s: u64,
}

/// OpenTelemetry traces, by the standard `OTEL_*` variables or flags. Off unless an endpoint
/// is given; the sampler follows `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Tracing (OpenTelemetry)")]
pub struct TraceArgs {
    /// OTLP/gRPC endpoint of the collector (`http://otel-collector:4317`); traces are off
    /// without it. Falls back to OTEL_EXPORTER_OTLP_ENDPOINT.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of our spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "repvgg-serve")]
    pub otel_service_name: String,
    /// Finished spans waiting for export at most; more are dropped and counted
    /// (`repvgg_trace_spans_dropped_total`), never waited for.
    #[arg(long, env = "OTEL_BSP_MAX_QUEUE_SIZE", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub otlp_queue_size: u32,
    /// How long a batch of spans waits for more before it is sent (ms).
    #[arg(long, env = "OTEL_BSP_SCHEDULE_DELAY", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub otlp_export_delay_ms: u64,
}

/// `--bf16-min-speedup`: a finite number from 0 to 100.
fn min_speedup(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| (0.0..=100.0).contains(v))
        .ok_or_else(|| format!("`{text}` is not a speed-up from 0 to 100 (e.g. 1.1)"))
}
