//! `repvgg-serve classify` flags: the images, the output, and the model and pipeline flags it
//! shares with `serve` (same names, same `REPVGG_*` variables, same validation).

use std::path::PathBuf;

use clap::{Args, FromArgMatches, ValueEnum};

use super::serve_args::{BatchingArgs, ModelArgs, PreprocessArgs, ServeArgs, ThreadArgs};
use super::ServeConfig;

/// One record per image, as JSON lines or CSV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub job: ClassifyJob,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// What to classify and where the records go.
#[derive(Debug, Args)]
pub struct ClassifyJob {
    /// Images: files, folders (searched recursively for .jpg .jpeg .png .webp .gif .bmp .tif
    /// .tiff), or list files (`.txt`, `.lst`: one path per line, relative to the list's
    /// folder; `#` comments). Named files are read whatever their extension.
    #[arg(long, required = true, num_args = 1..)]
    pub images: Vec<PathBuf>,
    /// Where the records go (one per image, in the order they finish). It must not exist
    /// unless --resume is given.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    pub format: OutputFormat,
    /// Classes per image, best first.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub top_k: u16,
    /// Also write each image's logits (class order).
    #[arg(long)]
    pub logits: bool,
    /// Continue an interrupted run: keep the records already in --output (a last line cut
    /// short is dropped) and classify only the images without one.
    #[arg(long)]
    pub resume: bool,
    /// Classify through a running server's `POST /classify` (`http://host:port`) instead of
    /// in this process; the model and pipeline flags then do not apply. A 503 (the server is
    /// full) is retried after its Retry-After, up to 10 times.
    #[arg(long, conflicts_with_all = ["checkpoint", "model"])]
    pub url: Option<String>,
    /// With --url: requests in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// With --url: the server's `inference` API key (sent as `Authorization: Bearer`).
    #[arg(long, env = "REPVGG_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// The model and pipeline flags `classify` shares with `serve`.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub batching: BatchingArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
}

impl PipelineArgs {
    /// `serve`'s configuration with the listening, access, limit and shutdown flags at their
    /// defaults (nothing is bound); the message names the flag at fault.
    pub fn config(self) -> Result<ServeConfig, String> {
        ServeArgs {
            listen: defaults()?,
            access: defaults()?,
            model: self.model,
            batching: self.batching,
            threads: self.threads,
            request_limits: defaults()?,
            grpc: defaults()?,
            preprocess: self.preprocess,
            shutdown: defaults()?,
            traces: defaults()?,
        }
        .validate()
    }
}

/// A flag group at its defaults (and its `REPVGG_*` variables).
fn defaults<T: Args + FromArgMatches>() -> Result<T, String> {
    let command = T::augment_args(clap::Command::new("classify"));
    let matches = command
        .try_get_matches_from(["classify"])
        .map_err(|e| e.to_string())?;
    T::from_arg_matches(&matches).map_err(|e| e.to_string())
}
