//! `--model-control poll`: the repository is scanned every `--model-poll-interval-ms`, and what
//! it holds is what is served. A model whose versions, files or `config.json` changed is loaded
//! as an explicit load would (beside the old, swapped in when warm); a model directory that
//! disappeared is unloaded; a new one is loaded.
//!
//! A version directory must be complete when it appears: write it under a hidden name (`.3`)
//! and rename it (`3`) when every file is in place (a rename is atomic). A half-written file
//! still in a visible directory fails to load like a corrupt one, and what was serving stays;
//! the same contents are not retried until they change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::control::Control;
use super::start::FileStamp;
use crate::config::{repository, ModelPlan};

/// What a model's directory asks for: each version's plan and its file, and the split.
type Contents = (
    Vec<(ModelPlan, Option<FileStamp>)>,
    Option<repository::Split>,
);

impl Control {
    /// Scans every `every` until the process ends.
    pub(crate) async fn poll(self: Arc<Self>, every: Duration) {
        let mut failed = BTreeMap::new();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is now: the start just loaded everything
        loop {
            ticks.tick().await;
            self.poll_once(&mut failed).await;
        }
    }

    /// One scan: every changed model loaded, every vanished one unloaded. `failed`: the
    /// contents each model last failed to load with.
    async fn poll_once(&self, failed: &mut BTreeMap<String, Contents>) {
        let Some(root) = self.config.repository.clone() else {
            return;
        };
        let on_disk: Vec<String> = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| repository::check_name(name).is_ok())
            .collect();
        let mut running = self.running.lock().await;
        for name in &on_disk {
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
