//! `--model-control poll`: the repository is scanned every `--model-poll-interval-ms`, and what
//! it holds is what is served. A model whose versions, files or `config.json` changed is loaded
//! as an explicit load would (beside the old, swapped in when warm); a model directory that
//! disappeared is unloaded; a new one is loaded.
//!
//! A version directory should be complete when it appears: write it under a hidden name (`.3`)
//! and rename it (`3`) when every file is in place (a rename is atomic). A directory written in
//! place is also safe while its writer keeps writing: a model's directory is acted on only when
//! every file under it (names, sizes, modification times) is the same as one scan earlier, so a
//! copy in progress is left alone until it has been quiet for a whole interval. A writer that
//! pauses longer than the interval half way must use the rename: a half-written file that looks
//! finished fails to load like a corrupt one, what was serving stays, and the same contents are
//! not retried until they change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::control::Control;
use super::start::FileStamp;
use crate::config::{repository, ModelPlan};

/// What a model's directory asks for: each version's plan and its file, and the split.
type Contents = (
    Vec<(ModelPlan, Option<FileStamp>)>,
    Option<repository::Split>,
);

/// Every file in a model's directory and its version directories (hidden names skipped), with
/// its size and modification time, sorted: what a scan compares with the previous one.
type Snapshot = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn snapshot(model_dir: &Path) -> Snapshot {
    let mut files = Vec::new();
    let mut pending = vec![(model_dir.to_owned(), 0)];
    while let Some((dir, depth)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() && depth == 0 => pending.push((path, 1)),
                Ok(meta) if meta.is_file() => files.push((path, meta.len(), meta.modified().ok())),
                _ => {}
            }
        }
    }
    files.sort();
    files
}

impl Control {
    /// Scans every `every` until the process ends.
    pub(crate) async fn poll(self: Arc<Self>, every: Duration) {
        let Some(root) = self.config.repository.clone() else {
            return;
        };
        let mut failed = BTreeMap::new();
        // The start just loaded what is there now: changes count from here.
        let mut previous: BTreeMap<String, Snapshot> = model_dirs(&root)
            .into_iter()
            .map(|name| {
                let files = snapshot(&root.join(&name));
                (name, files)
            })
            .collect();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is now
        loop {
            ticks.tick().await;
            self.poll_once(&root, &mut previous, &mut failed).await;
        }
    }

    /// One scan: every changed model that has been quiet since the previous scan loaded, every
    /// vanished one unloaded. `previous`: each model directory's snapshot at the previous scan;
    /// `failed`: the contents each model last failed to load with.
    async fn poll_once(
        &self,
        root: &Path,
        previous: &mut BTreeMap<String, Snapshot>,
        failed: &mut BTreeMap<String, Contents>,
    ) {
        let on_disk = model_dirs(root);
        previous.retain(|name, _| on_disk.contains(name));
        let mut running = self.running.lock().await;
        for name in &on_disk {
            let now = snapshot(&root.join(name));
            if previous.insert(name.clone(), now.clone()).as_ref() != Some(&now) {
                continue; // still being written (or new): wait for a quiet interval
            }
            let wanted = match self.wanted(name, &root.join(name)) {
                Ok(wanted) => wanted,
                Err(e) => {
                    // Nothing to start: the directory itself is wrong (said once per change).
                    let nothing: Contents = (Vec::new(), None);
                    if failed.get(name) != Some(&nothing) {
                        self.record_load(name, &Err(e));
                        failed.insert(name.clone(), nothing);
                    }
                    continue;
                }
            };
            let contents: Contents = (
                wanted
                    .plans
                    .iter()
                    .map(|p| (p.clone(), FileStamp::of(p)))
                    .collect(),
                wanted.split.clone(),
            );
            let mut serving: Vec<_> = running
                .iter()
                .filter(|r| &r.served.name == name)
                .map(|r| (r.plan.clone(), r.file.clone()))
                .collect();
            serving.sort_by_key(|(plan, _)| plan.version);
            let serving: Contents = (serving, self.models().split(name));
            if contents == serving || failed.get(name) == Some(&contents) {
                continue;
            }
            let result = self.apply(name, &wanted, &mut running).await;
            self.record_load(name, &result);
            match result {
                Ok(()) => failed.remove(name),
                Err(_) => failed.insert(name.clone(), contents),
            };
        }
        let vanished: Vec<String> = running
            .iter()
            .map(|r| r.served.name.clone())
            .filter(|name| !on_disk.contains(name))
            .collect();
        for name in vanished {
            if running.iter().any(|r| r.served.name == name) {
                self.remove(&name, &mut running, "its directory left the repository");
            }
        }
    }
}

/// The model directories under `root` (names that are valid model names).
pub(super) fn model_dirs(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| repository::check_name(name).is_ok())
        .collect()
}
