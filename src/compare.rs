//! `repvgg-serve compare`: what bf16 does to a model's answers on the user's own images.
//!
//! Every image in a folder goes through the service's own preprocessing, then through the fp32
//! reference (ONNX Runtime's CPU provider) and the bf16 engine the server would run (the
//! OpenVINO provider with the bf16 hint), both from the OpenVINO runtime build. The report
//! lists, per image, the best class in each precision, fp32's margin between its two best
//! classes (small margins are where bf16 can flip an answer) and the largest logit change; and
//! overall, the top-1 and top-5 agreement and the logit deltas.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::inference::openvino::top_k;
use crate::inference::precision::CpuBf16;
use crate::inference::{Agreement, Backend, EngineConfig, OpenVinoModel};
use crate::model::{self, ModelSource};
use crate::preprocess::PreprocessConfig;

/// Images per engine run.
const BATCH: usize = 8;

/// One image's answers in both precisions.
#[derive(Debug, Serialize)]
pub struct ImageRow {
    pub image: String,
    pub fp32_top1: usize,
    pub bf16_top1: usize,
    /// fp32's best logit minus its second best.
    pub fp32_margin: f32,
    pub max_abs_delta: f32,
    pub top5_same: bool,
}

/// The whole comparison.
#[derive(Debug, Serialize)]
pub struct Report {
    pub checkpoint: String,
    pub cpu: String,
    pub bf16_flags: String,
    pub summary: Agreement,
    pub images: Vec<ImageRow>,
    /// Files that were not images (or could not be preprocessed), with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Runs the comparison (blocking; builds both engines with `threads` threads).
pub fn compare(
    checkpoint: &Path,
    images: &Path,
    cache_dir: Option<&Path>,
    library: Option<&Path>,
    threads: usize,
) -> anyhow::Result<Report> {
    let cpu = CpuBf16::detect();
    let bf16_flags = cpu.require_native().map_err(anyhow::Error::msg)?;
    let prepared = model::prepare(&ModelSource::Checkpoint(checkpoint.to_owned()), cache_dir)?;
    let preprocess = PreprocessConfig {
        resize: prepared.info.resize,
        crop: prepared.info.crop,
        max_pixels: 50_000_000,
        jpeg_dct_scaling: false,
    };
    let classes = prepared.info.num_classes;
    let crop = preprocess.crop as usize;
    let engines = OpenVinoModel::load(&prepared, library)?;
    let mut bf16 = engines.session(&EngineConfig {
        intra_threads: threads,
        spinning: false,
    })?;
    let mut fp32 = engines.reference(threads)?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(images)
        .with_context(|| format!("{}: cannot list the folder", images.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    // Images are preprocessed and run a batch at a time: memory holds one batch of crops
    // (plus every image's logits), whatever the size of the folder.
    let slot = preprocess.slot_len();
    let mut names = Vec::new();
    let mut skipped = Vec::new();
    let mut batch: Vec<f32> = Vec::with_capacity(BATCH * slot);
    let (mut reference, mut candidate) = (Vec::new(), Vec::new());
    let mut run = |batch: &mut Vec<f32>| -> anyhow::Result<()> {
        let n = batch.len() / slot;
        if n > 0 {
            reference.extend(fp32.run(batch, n, crop, crop)?);
            candidate.extend(bf16.run(batch, n, crop, crop)?);
            batch.clear();
        }
        Ok(())
    };
    for file in &files {
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let bytes = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
        let start = batch.len();
        batch.resize(start + slot, 0.0);
        match preprocess.run_into(&bytes, &mut batch[start..]) {
            Ok(()) => names.push(name),
            Err(e) => {
                batch.truncate(start);
                skipped.push((name, e.to_string()));
            }
        }
        if batch.len() == BATCH * slot {
            run(&mut batch)?;
        }
    }
    run(&mut batch)?;
    if names.is_empty() {
        anyhow::bail!("{}: no images to compare", images.display());
    }
    let rows = names
        .into_iter()
        .zip(
            reference
                .chunks_exact(classes)
                .zip(candidate.chunks_exact(classes)),
        )
        .map(|(image, (r, c))| {
            let (tr, tc) = (top_k(r, 5), top_k(c, 5));
            let margin = tr
                .get(1)
                .map_or(f32::INFINITY, |&second| r[tr[0]] - r[second]);
            let (mut sr, mut sc) = (tr.clone(), tc.clone());
            sr.sort_unstable();
            sc.sort_unstable();
            ImageRow {
                image,
                fp32_top1: tr[0],
                bf16_top1: tc[0],
                fp32_margin: margin,
                max_abs_delta: r
                    .iter()
                    .zip(c)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max),
                top5_same: sr == sc,
            }
        })
        .collect();
    Ok(Report {
        checkpoint: checkpoint.display().to_string(),
        cpu: cpu.model,
        bf16_flags,
        summary: Agreement::measure(&reference, &candidate, classes),
        images: rows,
        skipped,
    })
}

impl Report {
    /// The table for people.
    pub fn table(&self) -> String {
        let mut out = format!(
            "bf16 against fp32: {} on {} ({})\n\n{:<32} {:>10} {:>10} {:>12} {:>12}  top-5\n",
            self.checkpoint,
            if self.cpu.is_empty() {
                "this CPU"
            } else {
                &self.cpu
            },
            self.bf16_flags,
            "image",
            "fp32 top-1",
            "bf16 top-1",
            "fp32 margin",
            "max |delta|"
        );
        for row in &self.images {
            out += &format!(
                "{:<32} {:>10} {:>10} {:>12.4} {:>12.4}  {}{}\n",
                row.image,
                row.fp32_top1,
                row.bf16_top1,
                row.fp32_margin,
                row.max_abs_delta,
                if row.top5_same { "same" } else { "differs" },
                if row.fp32_top1 == row.bf16_top1 {
                    ""
                } else {
                    "   <- top-1 changed"
                }
            );
        }
        let s = &self.summary;
        out += &format!(
            "\n{} images: top-1 agreement {:.1} %, top-5 agreement {:.1} %, max |delta logit| \
             {:.4}, mean {:.4}, relative error {:.4}\n",
            s.images,
            s.top1_agreement * 100.0,
            s.top5_agreement * 100.0,
            s.max_abs_delta,
            s.mean_abs_delta,
            s.relative_error
        );
        let changed: Vec<String> = self
            .images
            .iter()
            .filter(|r| r.fp32_top1 != r.bf16_top1)
            .map(|r| format!("{} (fp32 margin {:.4})", r.image, r.fp32_margin))
            .collect();
        out += &format!(
            "top-1 changed on: {}\n",
            if changed.is_empty() {
                "none".to_owned()
            } else {
                changed.join(", ")
            }
        );
        for (name, reason) in &self.skipped {
            out += &format!("skipped {name}: {reason}\n");
        }
        out
    }
}
