//! `repvgg-serve classify`: many images through the service's own pipeline in this process
//! (admission, preprocessing workers, the batching queue, every session), or through a running
//! server's `POST /classify` with `--url` ([`remote`]); one record per image (top-k
//! classes, or the error in the API's words) as JSON lines or CSV, in the order they finish. As
//! many images are in flight as the queue admits, so batches fill and every core works. A
//! per-image failure is a record, never the end of the run; `--resume` keeps the records
//! already written and classifies only the images without one.

mod output;
mod progress;
mod remote;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;

use crate::config::ClassifyJob;
use crate::pipeline::{top_probabilities, Input};
use crate::service::ServiceError;
use output::{Output, Record};
use progress::Progress;
pub use progress::Summary;
pub use remote::Remote;

/// Extensions searched for in folders (named files are read whatever their extension).
const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];
/// Extensions of list files: one image path per line.
const LIST_EXTENSIONS: [&str; 2] = ["txt", "lst"];

/// One class of an image's top-k.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Class {
    class_id: usize,
    label: String,
    probability: f32,
}

/// What happened to one image.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Outcome {
    Classified {
        predictions: Vec<Class>,
        #[serde(skip_serializing_if = "Option::is_none")]
        logits: Option<Vec<f32>>,
    },
    Failed {
        error: String,
        /// The API's word for it (`undecodable_image`, ...), or `unreadable`.
        error_type: String,
    },
}

impl Outcome {
    fn failed(error: impl Into<String>, error_type: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            error_type: error_type.into(),
        }
    }
}

impl From<ServiceError> for Outcome {
    fn from(e: ServiceError) -> Self {
        Self::failed(e.to_string(), e.error_type())
    }
}

/// Where images are classified.
#[derive(Debug)]
pub enum Classifier<'a> {
    /// The pipeline of a model version of an [`App`](crate::server::App) started in this
    /// process, with the service's request limits.
    Local(&'a crate::models::Served, crate::service::Limits),
    /// A running server (`--url`).
    Remote(Box<Remote>),
}

impl Classifier<'_> {
    /// Images in flight at once: what the queue admits, or `--concurrency` requests.
    fn in_flight(&self, job: &ClassifyJob) -> usize {
        match self {
            Self::Local(served, _) => served.pipeline.capacity(),
            Self::Remote(_) => usize::from(job.concurrency),
        }
    }

    /// Files larger than this are not read: a client could not send them either.
    fn max_bytes(&self) -> usize {
        match self {
            Self::Local(_, limits) => limits.max_body_bytes,
            Self::Remote(remote) => remote.max_bytes(),
        }
    }

    async fn classify(&self, bytes: Bytes, job: &ClassifyJob) -> Outcome {
        let top_k = usize::from(job.top_k);
        let (served, limits) = match self {
            Self::Local(served, limits) => (served, limits),
            Self::Remote(remote) => return remote.classify(bytes, top_k, job.logits).await,
        };
        let now = Instant::now();
        let answer = served
            .pipeline
            .classify_each(
                vec![Input::Encoded(bytes)],
                now,
                now + limits.request_timeout,
            )
            .await
            .pop();
        match answer {
            Some(Ok(answer)) => Outcome::Classified {
                predictions: top_probabilities(&answer.logits, top_k)
                    .into_iter()
                    .map(|(class_id, probability)| Class {
                        class_id,
                        label: served.model.labels[class_id].clone(),
                        probability,
                    })
                    .collect(),
                logits: job.logits.then_some(answer.logits),
            },
            Some(Err(e)) => ServiceError::from(e).into(),
            None => ServiceError::Inference("no answer".into()).into(),
        }
    }
}

/// Runs the whole job; per-image failures are records, this fails only when the run cannot
/// go on (an input path that does not exist, an output that cannot be written).
pub async fn run(job: &ClassifyJob, classifier: Classifier<'_>) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let images = collect(&job.images)?;
    let mut output = Output::open(&job.output, job.format, job.resume)?;
    let pending: Vec<PathBuf> = images
        .into_iter()
        .filter(|p| !output.done.contains(&display(p)))
        .collect();
    let mut progress = Progress::new(pending.len() as u64);
    let mut summary = Summary {
        skipped: output.done.len(),
        ..Summary::default()
    };
    let classifier = &classifier;
    let mut outcomes = futures_util::stream::iter(pending)
        .map(|path| async move {
            let outcome = match read(&path, classifier.max_bytes()).await {
                Ok(bytes) => classifier.classify(bytes, job).await,
                Err(failed) => failed,
            };
            (path, outcome)
        })
        .buffer_unordered(classifier.in_flight(job));
    while let Some((path, outcome)) = outcomes.next().await {
        match &outcome {
            Outcome::Classified { .. } => summary.classified += 1,
            Outcome::Failed { error_type, .. } => {
                *summary.failed.entry(error_type.clone()).or_default() += 1;
            }
        }
        let path = display(&path);
        let record = Record {
            path: &path,
            outcome: &outcome,
        };
        output.write(&record, usize::from(job.top_k), job.logits)?;
        progress.step();
    }
    progress.finish();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// One file, unless it is larger than `max_bytes` (the body limit a client would have).
async fn read(path: &Path, max_bytes: usize) -> Result<Bytes, Outcome> {
    let unreadable =
        |e: std::io::Error| Outcome::failed(format!("{}: {e}", path.display()), "unreadable");
    let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
    if meta.len() > max_bytes as u64 {
        return Err(ServiceError::PayloadTooLarge { limit: max_bytes }.into());
    }
    Ok(Bytes::from(
        tokio::fs::read(path).await.map_err(unreadable)?,
    ))
}

/// The images named by `inputs`: files as they are, folders searched recursively (sorted, by
/// extension), list files read line by line. A path that does not exist ends the run.
fn collect(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    let mut seen = HashSet::new();
    for input in inputs {
        let mut found = Vec::new();
        if input.is_dir() {
            walk(input, &mut found)?;
        } else if has_extension(input, &LIST_EXTENSIONS) {
            let list = std::fs::read_to_string(input)
                .with_context(|| format!("{}: cannot read the list", input.display()))?;
            let base = input.parent().unwrap_or(Path::new("."));
            found.extend(
                list.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| base.join(l)),
            );
        } else if input.is_file() {
            found.push(input.clone());
        } else {
            bail!("{}: no such file or folder", input.display());
        }
        images.extend(found.into_iter().filter(|p| seen.insert(p.clone())));
    }
    Ok(images)
}

fn walk(folder: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("{}: cannot list the folder", folder.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: cannot list the folder", folder.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, found)?;
        } else if has_extension(&path, &IMAGE_EXTENSIONS) {
            found.push(path);
        }
    }
    Ok(())
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
