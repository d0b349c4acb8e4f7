//! Class names: a `--labels` file, the bundled ImageNet-1k names for 1000-class models, or
//! `class_N`.

use std::path::Path;

use anyhow::{bail, Context};

const IMAGENET: &str = include_str!("../assets/imagenet1k_labels.txt");

pub fn load(file: Option<&Path>, num_classes: usize) -> anyhow::Result<Vec<String>> {
    let labels: Vec<String> = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read labels", path.display()))?
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect(),
        None if num_classes == 1000 => IMAGENET.lines().map(str::to_owned).collect(),
        None => (0..num_classes).map(|i| format!("class_{i}")).collect(),
    };
    if labels.len() != num_classes {
        bail!(
            "{}: {} labels for a model with {num_classes} classes",
            file.map_or("bundled labels".into(), |p| p.display().to_string()),
            labels.len()
        );
    }
    Ok(labels)
}
