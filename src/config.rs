//! Command-line flags and `REPVGG_*` environment variables (clap), validated into typed
//! configs before anything is loaded or any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::inference::precision::{CpuBf16, Precision};
use crate::model::ModelSource;

#[derive(Debug, Parser)]
#[command(
    name = "repvgg-serve",
    version,
    about = "RepVGG image classification over HTTP"
)]
pub struct Cli {
    /// Log format: human-readable lines or one JSON object per line (for log pipelines).
    #[arg(long, env = "REPVGG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve POST /classify and the v2 protocol (REST and gRPC); fuses a training checkpoint at
    /// start-up (demo weights without one).
    Serve(Box<ServeArgs>),
    /// Write the (fused, or with --unfused the three-branch) network of a checkpoint as ONNX.
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Keep the three training branches (for comparisons; needs a training checkpoint).
        #[arg(long)]
        unfused: bool,
    },
    /// Print what a checkpoint or a named variant is, as JSON, with the expected memory and
    /// time to ready of serving it (the estimate is for the layout given here).
    Inspect {
        #[arg(long, conflicts_with = "variant", required_unless_present = "variant")]
        checkpoint: Option<PathBuf>,
        #[arg(long)]
        variant: Option<String>,
        /// Sessions to estimate for (default: as `serve`, 2, or 1 on one core).
        #[arg(long)]
        sessions: Option<usize>,
        /// Largest batch to estimate for (default: as `serve`).
        #[arg(long, default_value_t = 8)]
        max_batch_size: usize,
    },
    /// Run every image in a folder through fp32 and bf16 with the service's preprocessing and
    /// print how the answers differ (top-1/top-5 agreement, logit deltas, the images whose best
    /// class changed, with their fp32 margins). Needs a CPU with native bf16.
    Compare {
        #[arg(long)]
        checkpoint: PathBuf,
        /// A folder of images (JPEG, PNG, WebP, GIF, BMP, TIFF); other files are listed as skipped.
        #[arg(long)]
        images: PathBuf,
        /// The precision compared with fp32 (bf16 is the only other one).
        #[arg(long, value_enum, default_value_t = Precision::Bf16)]
        precision: Precision,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Fused-model cache, as for `serve`.
        #[arg(long, env = "REPVGG_CACHE_DIR", default_value = ".cache/repvgg-serve")]
        cache_dir: PathBuf,
        /// The OpenVINO build of ONNX Runtime (default: .ort-openvino/ from
        /// scripts/setup-ort-openvino.sh).
        #[arg(long, env = "REPVGG_ORT_DYLIB")]
        ort_dylib: Option<PathBuf>,
    },
    /// Write a random training-form checkpoint (randomised BatchNorm) for demos and benchmarks.
    Init {
        #[arg(long)]
        variant: String,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 1000)]
        num_classes: usize,
    },
}

/// `repvgg-serve serve` flags, by topic (each group is a section of `--help`). Every flag has a
/// `REPVGG_*` environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub batching: BatchingArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub request_limits: RequestLimits,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
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
    /// `bf16` (ONNX Runtime's OpenVINO provider with bf16 inference: several times faster on
    /// CPUs with `amx_bf16` or `avx512_bf16`, refused on others; logits move slightly, see
    /// `repvgg-serve compare`). bf16 needs the OpenVINO runtime: scripts/setup-ort-openvino.sh.
    #[arg(long, env = "REPVGG_PRECISION", value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
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
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256), env = "REPVGG_MAX_BATCH_SIZE", default_value_t = 8)]
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
    /// Largest image in pixels, read from the header before decoding (422 above it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000), env = "REPVGG_MAX_PIXELS", default_value_t = 50_000_000)]
    pub max_pixels: u64,
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

/// Validated serve settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// gRPC listener; `None` when `--grpc-port 0`.
    pub grpc_addr: Option<SocketAddr>,
    pub model_name: String,
    pub source: ModelSource,
    pub cache_dir: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub ort_dylib: Option<PathBuf>,
    pub batching: BatchingConfig,
    pub inference: InferenceConfig,
    pub preprocess: PreprocessLimits,
    pub connections: crate::http::connections::ConnectionLimits,
    pub drain_delay: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug)]
pub struct BatchingConfig {
    pub max_batch_size: usize,
    pub max_queue_delay: Duration,
    pub queue_capacity: usize,
    pub request_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct InferenceConfig {
    pub precision: Precision,
    pub sessions: usize,
    pub intra_threads: usize,
    pub spinning: bool,
    pub wide_session: bool,
}

#[derive(Clone, Debug)]
pub struct PreprocessLimits {
    pub workers: usize,
    pub max_decode_bytes: u64,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub max_pixels: u64,
    /// Overrides of the model's resize / crop.
    pub resize: Option<u32>,
    pub crop: Option<u32>,
    pub jpeg_dct_scaling: bool,
}

impl ServeArgs {
    /// Checks what clap's parsers cannot (one flag against another, files, the CPU); the
    /// message names the flag.
    pub fn validate(self) -> Result<ServeConfig, String> {
        let Self {
            listen,
            model,
            batching,
            threads,
            request_limits: limits,
            preprocess,
            shutdown,
        } = self;
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
        let source = match (model.checkpoint, model.model) {
            (Some(path), None) => ModelSource::Checkpoint(existing(path, "--checkpoint")?),
            (None, Some(path)) => ModelSource::Onnx(existing(path, "--model")?),
            _ => {
                if crate::model::variants::find(&model.demo_variant).is_none() {
                    return Err(format!(
                        "--demo-variant `{}` is not a RepVGG variant (known: {})",
                        model.demo_variant,
                        crate::model::variants::names().join(", ")
                    ));
                }
                ModelSource::Demo {
                    variant: model.demo_variant,
                    seed: 0,
                }
            }
        };
        let labels = model.labels.map(|p| existing(p, "--labels")).transpose()?;
        let name_ok = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        if model.model_name.is_empty() || !model.model_name.chars().all(name_ok) {
            return Err(format!(
                "--model-name `{}` must be letters, digits, '_', '.' or '-'",
                model.model_name
            ));
        }
        if let (Some(resize), Some(crop)) = (preprocess.resize, preprocess.crop) {
            if crop > resize {
                return Err(format!("--crop {crop} is larger than --resize {resize}"));
            }
        }
        let sessions = threads.sessions.unwrap_or(match model.precision {
            Precision::Fp32 => cores.min(2),
            Precision::Bf16 => 1,
        });
        if model.precision == Precision::Bf16 {
            CpuBf16::detect().require_native()?;
        }
        Ok(ServeConfig {
            addr: SocketAddr::new(ip, listen.port),
            grpc_addr: (listen.grpc_port != 0).then(|| SocketAddr::new(ip, listen.grpc_port)),
            model_name: model.model_name,
            source,
            cache_dir: (!model.no_cache).then_some(model.cache_dir),
            labels,
            ort_dylib: model.ort_dylib,
            batching: BatchingConfig {
                max_batch_size: batching.max_batch_size,
                max_queue_delay: Duration::from_millis(batching.max_queue_delay_ms),
                queue_capacity: batching.queue_capacity,
                request_timeout: Duration::from_millis(batching.request_timeout_ms),
            },
            inference: InferenceConfig {
                precision: model.precision,
                sessions,
                intra_threads: threads.intra_threads.unwrap_or((cores / sessions).max(1)),
                spinning: threads.ort_spinning,
                wide_session: threads.wide_session,
            },
            preprocess: PreprocessLimits {
                workers: threads.preprocess_workers.unwrap_or(cores),
                max_body_bytes: limits.max_body_bytes,
                max_decode_bytes: limits
                    .max_decode_bytes
                    .unwrap_or_else(crate::preprocess::budget::default_budget),
                body_timeout: Duration::from_millis(limits.body_timeout_ms),
                max_pixels: limits.max_pixels,
                resize: preprocess.resize,
                crop: preprocess.crop,
                jpeg_dct_scaling: preprocess.jpeg_dct_scaling,
            },
            connections: crate::http::connections::ConnectionLimits {
                max_connections: limits.max_connections,
                idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
            },
            drain_delay: Duration::from_millis(shutdown.drain_delay_ms),
            shutdown_grace: Duration::from_secs(shutdown.shutdown_grace_s),
        })
    }
}

fn existing(path: PathBuf, flag: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{flag} {}: no such file", path.display()))
    }
}
