//! Command-line flags and `REPVGG_*` environment variables (clap), validated into typed
//! configs before anything is loaded or any port is bound.

mod classify_args;
mod model_plan;
pub mod repository;
mod serve_args;
mod serve_config;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::inference::precision::Precision;
pub use classify_args::{ClassifyArgs, ClassifyJob, OutputFormat, PipelineArgs};
pub use model_plan::{ModelPlan, PlanDefaults};
pub use serve_args::{
    AccessArgs, BatchingArgs, GrpcArgs, ListenArgs, ModelArgs, PreprocessArgs, RequestLimits,
    ServeArgs, ShutdownArgs, ThreadArgs,
};
pub use serve_config::{
    AccessConfig, BatchingConfig, GrpcConfig, InferenceConfig, PreprocessLimits, ServeConfig,
};

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
    /// Classify many images in this process with the service's own pipeline (batches, every
    /// core), writing one record per image (top-k classes or the error) as JSON lines or CSV,
    /// with progress, a summary and --resume.
    Classify(Box<ClassifyArgs>),
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
    /// Ask a running server whether it is alive (`/healthz`) or ready (`--path /readyz`) on
    /// 127.0.0.1: exit 0 on a 2xx answer, 1 otherwise. The container's HEALTHCHECK (the image
    /// has no curl).
    Probe {
        /// The server's HTTP port.
        #[arg(long, env = "REPVGG_PORT", default_value_t = 8080)]
        port: u16,
        /// The path asked.
        #[arg(long, default_value = "/healthz")]
        path: String,
        /// Longest wait for the answer (ms).
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// The server's TLS certificate (as `serve --tls-cert`): the probe speaks TLS and
        /// accepts exactly this certificate.
        #[arg(long, env = "REPVGG_TLS_CERT")]
        tls_cert: Option<PathBuf>,
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
