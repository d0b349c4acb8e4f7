//! The records file of `classify`: JSON lines or CSV, one whole line per write (a kill leaves at
//! most half a line), and on `--resume` the paths already recorded (a cut last line dropped).

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Serialize;

use super::Outcome;
use crate::config::OutputFormat;

/// One image's outcome: its classes, or why it has none.
#[derive(Debug, Serialize)]
pub(super) struct Record<'a> {
    pub(super) path: &'a str,
    #[serde(flatten)]
    pub(super) outcome: &'a Outcome,
}

/// The output file: the records already there (with --resume), and the writer appending.
pub(super) struct Output {
    file: std::fs::File,
    format: OutputFormat,
    /// Paths that have a record.
    pub(super) done: HashSet<String>,
    /// CSV only: whether the header is still to be written.
    header_due: bool,
}

impl Output {
    pub(super) fn open(path: &Path, format: OutputFormat, resume: bool) -> anyhow::Result<Self> {
        let named = || format!("{}", path.display());
        if path.exists() && !resume {
            bail!(
                "{}: exists; pass --resume to continue that run, or choose another --output",
                named()
            );
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open for writing", named()))?;
        // A run killed while writing may have left half a line: drop it (that image is
        // classified again).
        let text = std::fs::read(path).with_context(|| format!("{}: cannot read", named()))?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            file.set_len(complete as u64)
                .with_context(|| format!("{}: cannot truncate", named()))?;
        }
        let text = &text[..complete];
        let done = match format {
            OutputFormat::Jsonl => text
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|line| {
                    let value: serde_json::Value = serde_json::from_slice(line)
                        .with_context(|| format!("{}: a line is not JSON", named()))?;
                    value["path"]
                        .as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("{}: a record has no path", named()))
                })
                .collect::<anyhow::Result<_>>()?,
            OutputFormat::Csv => csv::Reader::from_reader(text)
                .records()
                .map(|r| {
                    r.map(|r| r.get(0).unwrap_or_default().to_owned())
                        .with_context(|| format!("{}: not CSV", named()))
                })
                .collect::<anyhow::Result<_>>()?,
        };
        file.flush()?;
        Ok(Self {
            file,
            format,
            done,
            header_due: complete == 0,
        })
    }

    /// Appends one record as one write of whole lines, so a kill leaves at most half a line.
    pub(super) fn write(
        &mut self,
        record: &Record<'_>,
        top_k: usize,
        logits: bool,
    ) -> anyhow::Result<()> {
        let mut line = Vec::new();
        match self.format {
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut line, record)?;
                line.push(b'\n');
            }
            OutputFormat::Csv => {
                let mut writer = csv::Writer::from_writer(&mut line);
                if std::mem::take(&mut self.header_due) {
                    writer.write_record(csv_header(top_k, logits))?;
                }
                writer.write_record(csv_row(record, top_k, logits))?;
                writer.flush()?;
            }
        }
        self.file
            .write_all(&line)
            .context("cannot write the output")
    }
}

/// `path,error_type,error,class_id_1,label_1,probability_1,...[,logits]`.
fn csv_header(top_k: usize, logits: bool) -> Vec<String> {
    let mut header: Vec<String> = ["path", "error_type", "error"].map(String::from).into();
    for rank in 1..=top_k {
        header.extend([
            format!("class_id_{rank}"),
            format!("label_{rank}"),
            format!("probability_{rank}"),
        ]);
    }
    if logits {
        header.push("logits".into());
    }
    header
}

fn csv_row(record: &Record<'_>, top_k: usize, logits: bool) -> Vec<String> {
    let mut row = vec![record.path.to_owned()];
    let (classes, values) = match record.outcome {
        Outcome::Classified {
            predictions,
            logits,
        } => {
            row.extend([String::new(), String::new()]);
            (
                predictions.as_slice(),
                logits.as_deref().unwrap_or_default(),
            )
        }
        Outcome::Failed { error, error_type } => {
            row.extend([error_type.clone(), error.clone()]);
            (&[][..], &[][..])
        }
    };
    for rank in 0..top_k {
        match classes.get(rank) {
            Some(c) => row.extend([
                c.class_id.to_string(),
                c.label.clone(),
                c.probability.to_string(),
            ]),
            None => row.extend([String::new(), String::new(), String::new()]),
        }
    }
    if logits {
        row.push(
            values
                .iter()
                .map(f32::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    row
}
