//! Model control: which versions are served, changed while serving (`--model-control
//! explicit`) through the v2 repository extension (index, load, unload), as Triton's EXPLICIT
//! mode and `tritonclient` speak it.
//!
//! A load reads the model's directory again (only under the repository: a model name is one
//! path component), starts every version its policy wants that is not already served with the
//! same settings from the same file (a replaced file or a changed `config.json` is a new load),
//! each beside the old on its own threads, fused and warmed up, if it fits in memory beside them
//! (`room`), and only then swaps the routing table, atomically. Versions the new table no
//! longer has are stopped once their last request is answered: a request finds its version
//! once and finishes on it. A load that fails (a corrupt or truncated file, a bad
//! `config.json`) stops what it started, leaves what was serving untouched and says why (the
//! answer, the log, `repvgg_model_control_total{result="failed"}`, the index's `reason`).
//! Operations run one at a time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::room;
use super::start::{self, FileStamp, Running, Shared};
use super::{Models, Served};
use crate::config::repository;
use crate::config::{ModelPlan, ServeConfig};

/// `--model-control`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelControl {
    /// The versions loaded at start are served until the process ends.
    None,
    /// The v2 repository extension loads and unloads models while serving (admin role).
    Explicit,
    /// The repository is scanned every `--model-poll-interval-ms`: what it holds is served.
    Poll,
}

/// Why a control call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "load and unload are off: start with --model-repository DIR --model-control explicit to \
         load and unload models while serving (with poll, the repository's contents decide)"
    )]
    Off,
    #[error("no model '{0}' in the model repository")]
    UnknownModel(String),
    #[error("{0}")]
    InvalidName(String),
    #[error(
        "{op} parameter '{name}' is not accepted: a load reads the model's directory in the \
         repository as it is (put the files and config.json there); unload takes only \
         unload_dependents"
    )]
    Parameter { op: &'static str, name: String },
    #[error("failed to load '{model}': {reason}; what was serving is unchanged")]
    LoadFailed { model: String, reason: String },
}

/// What a model's directory asks for: its versions' plans and its traffic split.
#[derive(Debug)]
pub(super) struct Wanted {
    pub(super) plans: Vec<ModelPlan>,
    pub(super) split: Option<repository::Split>,
}

/// The served versions and the operations that change them.
#[derive(Debug)]
pub struct Control {
    mode: ModelControl,
    pub(super) config: ServeConfig,
    shared: Shared,
    pub(super) models: Models,
    /// Every started version's threads; the lock also serialises the operations.
    pub(super) running: tokio::sync::Mutex<Vec<Running>>,
    /// Versions being stopped after a change (awaited at shutdown).
    stopping: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Why each model is not (fully) served: its last failed load, or its unload.
    pub(super) reasons: Mutex<BTreeMap<String, String>>,
}

impl Control {
    /// Starts every version of the configuration, one after the other (each load uses every
    /// core); any failure fails the start, naming the version.
    pub(crate) async fn start(config: ServeConfig, shared: Shared) -> anyhow::Result<Self> {
        let mut running = Vec::with_capacity(config.models.len());
        for plan in &config.models {
            let started = start::start(&config, plan, &shared).await?;
            log_ready(&started);
            running.push(started);
        }
        let models = Models::new(
            running.iter().map(|r| r.served.clone()).collect(),
            config
                .splits
                .iter()
                .map(|(name, split)| {
                    let split = super::TrafficSplit::new(split.clone());
                    (name.clone(), Arc::new(split))
                })
                .collect(),
        );
        Ok(Self {
            mode: config.model_control,
            models,
            config,
            shared,
            running: tokio::sync::Mutex::new(running),
            stopping: Mutex::new(Vec::new()),
            reasons: Mutex::new(BTreeMap::new()),
        })
    }

    /// The routing table the doors read.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Loads (or reloads) model `name` from the repository: see the module documentation.
    /// `parameters` (the names a client sent) must be empty: nothing but the repository loads.
    pub async fn load<'a>(
        &self,
        name: &str,
        mut parameters: impl Iterator<Item = &'a str>,
    ) -> Result<(), ControlError> {
        if let Some(parameter) = parameters.next() {
            return Err(ControlError::Parameter {
                op: "load",
                name: parameter.to_owned(),
            });
        }
        let dir = self.model_dir(name)?;
        let mut running = self.running.lock().await;
        let result = match self.wanted(name, &dir) {
            Ok(wanted) => self.apply(name, &wanted, &mut running).await,
            Err(e) => Err(e),
        };
        self.record_load(name, &result);
        result
    }

    /// What model `name`'s directory, policy and split want now.
    pub(super) fn wanted(&self, name: &str, dir: &std::path::Path) -> Result<Wanted, ControlError> {
        let scanned = repository::scan_model(dir).map_err(|reason| ControlError::LoadFailed {
            model: name.to_owned(),
            reason,
        })?;
        let split = scanned.split.clone();
        Ok(Wanted {
            plans: self.config.defaults.plans(scanned),
            split,
        })
    }

    /// A load's outcome in the metrics, the log and the index's reasons.
    pub(super) fn record_load(&self, name: &str, result: &Result<(), ControlError>) {
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.shared.metrics.model_control("load", name, outcome);
        match result {
            Ok(()) => {
                self.reason(name, None);
                tracing::info!(model = name, "model loaded");
            }
            Err(e) => {
                self.reason(name, Some(e.to_string()));
                tracing::warn!(model = name, error = %e, "model load failed");
            }
        }
    }

    /// Makes `wanted` what model `name` serves: starts what is not served as planned, swaps the
    /// table (with the model's split), retires the rest. On a failure nothing changes.
    pub(super) async fn apply(
        &self,
        name: &str,
        wanted: &Wanted,
        running: &mut Vec<Running>,
    ) -> Result<(), ControlError> {
        let plans = &wanted.plans;
        let failed = |reason: String| ControlError::LoadFailed {
            model: name.to_owned(),
            reason,
        };
        let mut started: Vec<Running> = Vec::new();
        for plan in plans {
            let current = running
                .iter()
                .find(|r| r.served.name == plan.name && r.served.version == plan.version);
            if current.is_some_and(|r| r.plan == *plan && r.file == FileStamp::of(plan)) {
                continue; // served with these settings from this very file already
            }
            let checked = {
                let (plan, limit) = (plan.clone(), self.config.memory_limit);
                tokio::task::spawn_blocking(move || room::check(&plan, limit)).await
            };
            if let Err(e) = checked.map_err(anyhow::Error::from).and_then(|room| room) {
                self.stop_later(started, Duration::ZERO);
                return Err(failed(format!(
                    "model {name} version {} ({}): {e:#}",
                    plan.version,
                    plan.source
                        .path()
                        .map_or("demo weights".into(), |p| p.display().to_string())
                )));
            }
            match start::start(&self.config, plan, &self.shared).await {
                Ok(version) => {
                    log_ready(&version);
                    started.push(version);
                }
                Err(e) => {
                    self.stop_later(started, Duration::ZERO);
                    return Err(failed(format!("{e:#}")));
                }
            }
        }
        let versions: Vec<u64> = plans.iter().map(|p| p.version).collect();
        let replaced: Vec<u64> = started.iter().map(|r| r.served.version).collect();
        let fresh: Vec<Arc<Served>> = started.iter().map(|r| r.served.clone()).collect();
        self.models.replace(
            |table| {
                table
                    .iter()
                    .filter(|s| {
                        s.name != name
                            || (versions.contains(&s.version) && !replaced.contains(&s.version))
                    })
                    .cloned()
                    .chain(fresh)
                    .collect()
            },
            (name, wanted.split.as_ref()),
        );
        let (retired, kept): (Vec<Running>, Vec<Running>) =
            std::mem::take(running).into_iter().partition(|r| {
                r.served.name == name
                    && (!versions.contains(&r.served.version)
                        || replaced.contains(&r.served.version))
            });
        *running = kept;
        running.extend(started);
        self.stop_later(retired, self.drain_wait());
        // Fusion and graph optimisation freed their working copies: hand the pages back.
        let _ = tokio::task::spawn_blocking(crate::memory::release_freed).await;
        Ok(())
    }

    /// Stops serving every version of model `name`; requests already on them finish first.
    /// `parameters`: only Triton's `unload_dependents` (there are no dependents here).
    pub async fn unload<'a>(
        &self,
        name: &str,
        mut parameters: impl Iterator<Item = &'a str>,
    ) -> Result<(), ControlError> {
        if let Some(parameter) = parameters.find(|p| *p != "unload_dependents") {
            return Err(ControlError::Parameter {
                op: "unload",
                name: parameter.to_owned(),
            });
        }
        self.repository()?;
        repository::check_name(name).map_err(ControlError::InvalidName)?;
        let mut running = self.running.lock().await;
        if !running.iter().any(|r| r.served.name == name) {
            self.model_dir(name)?; // not served: fine if the repository has it, as in Triton
        }
        self.remove(name, &mut running, "unloaded");
        Ok(())
    }

    /// Stops serving model `name` (its versions retire once idle); `why` goes to the index.
    pub(super) fn remove(&self, name: &str, running: &mut Vec<Running>, why: &str) {
        let (retired, kept): (Vec<Running>, Vec<Running>) = std::mem::take(running)
            .into_iter()
            .partition(|r| r.served.name == name);
        *running = kept;
        self.models.replace(
            |table| table.iter().filter(|s| s.name != name).cloned().collect(),
            (name, None),
        );
        self.stop_later(retired, self.drain_wait());
        self.reason(name, Some(why.to_owned()));
        self.shared.metrics.model_control("unload", name, "ok");
        tracing::info!(model = name, why, "model unloaded");
    }

    /// Stops every version (the service is shutting down and every request was answered).
    pub(crate) async fn stop_all(&self) {
        self.models.replace(|_| Vec::new(), ("", None));
        let running = std::mem::take(&mut *self.running.lock().await);
        for version in running {
            version.stop(Duration::ZERO).await;
        }
        let stopping =
            std::mem::take(&mut *self.stopping.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in stopping {
            let _ = handle.await;
        }
    }

    /// A part of the pipeline died: every waiting job of every version is answered `cause`.
    pub(crate) async fn fail_all(&self, cause: &str) {
        for version in self.running.lock().await.iter() {
            version.fail(cause);
        }
    }

    /// The directory of model `name`, which must be one plain path component under the
    /// repository.
    fn model_dir(&self, name: &str) -> Result<PathBuf, ControlError> {
        let repository = self.repository()?;
        repository::check_name(name).map_err(ControlError::InvalidName)?;
        let dir = repository.join(name);
        if !dir.is_dir() {
            return Err(ControlError::UnknownModel(name.to_owned()));
        }
        Ok(dir)
    }

    /// The repository, when models may be loaded and unloaded.
    fn repository(&self) -> Result<&std::path::Path, ControlError> {
        match &self.config.repository {
            Some(repository) if self.mode == ModelControl::Explicit => Ok(repository),
            _ => Err(ControlError::Off),
        }
    }

    /// How long a retired version waits for its last request: the longest a request lives.
    fn drain_wait(&self) -> Duration {
        self.config.batching.request_timeout + self.config.preprocess.body_timeout
    }

    fn stop_later(&self, versions: Vec<Running>, wait: Duration) {
        if versions.is_empty() {
            return;
        }
        let metrics = self.shared.metrics.clone();
        metrics.versions_stopping(versions.len() as f64);
        let handle = tokio::spawn(async move {
            for version in versions {
                let (name, number) = (version.served.name.clone(), version.served.version);
                version.stop(wait).await;
                metrics.versions_stopping(-1.0);
                tracing::info!(model = name, version = number, "model version stopped");
            }
        });
        let mut stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        stopping.retain(|h| !h.is_finished());
        stopping.push(handle);
    }

    fn reason(&self, model: &str, reason: Option<String>) {
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        match reason {
            Some(reason) => reasons.insert(model.to_owned(), reason),
            None => reasons.remove(model),
        };
    }
}

fn log_ready(running: &Running) {
    let served = &running.served;
    tracing::info!(
        model = served.name,
        version = served.version,
        variant = served.model.info.variant.as_deref().unwrap_or("custom"),
        classes = served.model.info.num_classes,
        source = served.model.info.source,
        from_cache = running.from_cache,
        "model version ready"
    );
}
