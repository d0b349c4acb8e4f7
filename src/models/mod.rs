//! The models this process serves, beneath every door: each loaded version with its own
//! pipeline (batching queue and sessions) and its description, and the one way the doors find
//! them by name and version.
//!
//! A name is a model's (its image model) or the model's with `-tensor` (the same version taking
//! normalised tensors, as the v2 protocol shows it). A request without a version goes to the
//! model's newest version; `/classify` may leave out the model too when there is only one.

pub mod control;
mod index;
pub(crate) mod load;
mod poll;
mod room;
mod served;
mod start;

use std::sync::Arc;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::config::repository;

use crate::v2::{ModelKind, V2Error};
pub use control::{Control, ControlError, ModelControl};
pub use index::IndexEntry;
pub use served::{BatchingDetails, InputDetails, Served, ServedModel};
pub(crate) use start::{Loader, Shared};

/// The routing table: every served version and each model's traffic split. Cloning is cheap
/// and every clone sees the same table; [`Control`] replaces it whole, atomically, so a request
/// sees a version either fully ready or not at all.
#[derive(Clone, Debug)]
pub struct Models {
    table: Arc<ArcSwap<Table>>,
}

/// One state of the routing table; derefs to its versions, ordered by name then version.
#[derive(Debug, Default)]
pub struct Table {
    served: Vec<Arc<Served>>,
    /// Shared by successive tables: a split that a swap leaves alone keeps its place in its
    /// sequence (a restart would send its first requests to the first version again).
    splits: BTreeMap<String, Arc<TrafficSplit>>,
}

impl std::ops::Deref for Table {
    type Target = [Arc<Served>];

    fn deref(&self) -> &Self::Target {
        &self.served
    }
}

impl Models {
    fn new(served: Vec<Arc<Served>>, splits: BTreeMap<String, Arc<TrafficSplit>>) -> Self {
        Self {
            table: Arc::new(ArcSwap::from_pointee(Table {
                served: sorted(served),
                splits,
            })),
        }
    }

    /// Every version now, by name then version (a snapshot).
    pub fn all(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Swaps in the versions `change` makes of the current ones and, for model `name`, the
    /// traffic split `split` (only [`Control`] calls it, one change at a time).
    fn replace(
        &self,
        change: impl FnOnce(&[Arc<Served>]) -> Vec<Arc<Served>>,
        (name, split): (&str, Option<&repository::Split>),
    ) {
        let current = self.table.load();
        let mut splits: BTreeMap<String, Arc<TrafficSplit>> = current
            .splits
            .iter()
            .filter(|(model, _)| model.as_str() != name)
            .map(|(model, split)| (model.clone(), split.clone()))
            .collect();
        if let Some(split) = split {
            splits.insert(name.to_owned(), Arc::new(TrafficSplit::new(split.clone())));
        }
        let next = Table {
            served: sorted(change(&current.served)),
            splits,
        };
        self.table.store(Arc::new(next));
    }

    /// Model `name`'s traffic split now, if it has one.
    pub(crate) fn split(&self, name: &str) -> Option<repository::Split> {
        self.table
            .load()
            .splits
            .get(name)
            .map(|s| s.weights.clone())
    }

    /// The versions of model `name`, oldest first.
    pub fn versions(&self, name: &str) -> Vec<u64> {
        self.all()
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.version)
            .collect()
    }

    /// The version a v2 name (`{model}` or `{model}-tensor`) and version (absent or empty:
    /// the newest) refer to, and which of the two inputs it takes.
    pub fn find(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Arc<Served>, ModelKind), V2Error> {
        let (model, kind) = match name.strip_suffix(crate::v2::TENSOR_SUFFIX) {
            Some(model) => (model, ModelKind::Tensor),
            None => (name, ModelKind::Image),
        };
        let served = self.version(model, version).map_err(|e| match e {
            V2Error::UnknownVersion {
                version, available, ..
            } => V2Error::UnknownVersion {
                model: name.to_owned(),
                version,
                available,
            },
            other => other,
        })?;
        Ok((served, kind))
    }

    /// `/classify?model=&version=`: the model may be left out when only one is served.
    pub fn route(&self, name: Option<&str>, version: Option<&str>) -> Result<Arc<Served>, V2Error> {
        match name {
            Some(name) => self.version(name, version),
            None => {
                let table = self.all();
                let Some(only) = table.first().map(|s| &s.name) else {
                    return Err(V2Error::UnknownModel {
                        name: String::new(),
                        known: "no models loaded".into(),
                    });
                };
                if table.iter().any(|s| &s.name != only) {
                    return Err(V2Error::Invalid(format!(
                        "this server has several models; name one with ?model= ({})",
                        self.names().join(", ")
                    )));
                }
                self.version(only, version)
            }
        }
    }

    fn version(&self, model: &str, version: Option<&str>) -> Result<Arc<Served>, V2Error> {
        let table = self.all();
        let mut versions = table.iter().filter(|s| s.name == model).peekable();
        if versions.peek().is_none() {
            let names = self.names();
            let known = if names.is_empty() {
                "no models loaded".to_owned()
            } else {
                names
                    .iter()
                    .flat_map(|n| {
                        [
                            format!("'{n}'"),
                            format!("'{n}{}'", crate::v2::TENSOR_SUFFIX),
                        ]
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(V2Error::UnknownModel {
                name: model.to_owned(),
                known,
            });
        }
        let found = match version.filter(|v| !v.is_empty()) {
            None => match table.splits.get(model).map(|split| split.pick()) {
                Some(chosen) => versions.find(|s| s.version == chosen),
                None => versions.last(),
            },
            Some(wanted) => versions.find(|s| s.version.to_string() == wanted),
        };
        found.cloned().ok_or_else(|| V2Error::UnknownVersion {
            model: model.to_owned(),
            version: version.unwrap_or_default().to_owned(),
            available: self
                .versions(model)
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Model names, each once.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.all().iter().map(|s| s.name.clone()).collect();
        names.dedup();
        names
    }
}

/// A model's traffic split, applied per request: request n goes where a low-discrepancy
/// sequence (n times the golden ratio, modulo 1) falls among the cumulative weights, so any
/// stretch of requests divides close to the weights, with no lock and no random numbers.
#[derive(Debug)]
pub(crate) struct TrafficSplit {
    weights: repository::Split,
    next: AtomicU64,
}

impl TrafficSplit {
    pub(crate) fn new(weights: repository::Split) -> Self {
        Self {
            weights,
            next: AtomicU64::new(0),
        }
    }

    fn pick(&self) -> u64 {
        const GOLDEN: f64 = 0.618_033_988_749_894_9;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let total: u64 = self.weights.iter().map(|(_, w)| u64::from(*w)).sum();
        let point = ((n as f64 * GOLDEN).fract() * total as f64) as u64;
        let mut upto = 0;
        for &(version, weight) in &self.weights {
            upto += u64::from(weight);
            if point < upto {
                return version;
            }
        }
        self.weights.last().map_or(0, |(version, _)| *version)
    }
}

fn sorted(mut served: Vec<Arc<Served>>) -> Vec<Arc<Served>> {
    served.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_divides_any_stretch_of_requests_by_its_weights() {
        let split = TrafficSplit::new(vec![(1, 90), (2, 10)]);
        let picks: Vec<u64> = (0..1000).map(|_| split.pick()).collect();
        let first = picks.iter().filter(|&&v| v == 1).count();
        assert!((890..=910).contains(&first), "{first} of 1000 to version 1");
        // Every stretch of 100 is close to 90/10 too (no long runs of the canary).
        for stretch in picks.chunks(100) {
            let canary = stretch.iter().filter(|&&v| v == 2).count();
            assert!((5..=15).contains(&canary), "{canary} of 100 to version 2");
        }
        let off = TrafficSplit::new(vec![(1, 0), (2, 5)]);
        assert!((0..100).all(|_| off.pick() == 2), "weight 0: no requests");
    }

    /// A table swap for one model (a load, an unload, its own new split) leaves every other
    /// model's split where it was in its sequence; the changed model's split starts afresh.
    #[test]
    fn a_table_swap_keeps_the_place_of_every_split_it_does_not_change() {
        let models = Models::new(Vec::new(), BTreeMap::new());
        let canary: repository::Split = vec![(1, 90), (2, 10)];
        models.replace(<[_]>::to_vec, ("a", Some(&canary)));
        let before: Vec<u64> = (0..7).map(|_| models.all().splits["a"].pick()).collect();
        models.replace(<[_]>::to_vec, ("b", Some(&vec![(1, 50), (2, 50)])));
        models.replace(<[_]>::to_vec, ("c", None));
        let after: Vec<u64> = (0..13).map(|_| models.all().splits["a"].pick()).collect();
        let fresh = TrafficSplit::new(canary.clone());
        let sequence: Vec<u64> = (0..20).map(|_| fresh.pick()).collect();
        assert_eq!(
            [before, after].concat(),
            sequence,
            "model a's split went on"
        );
        models.replace(<[_]>::to_vec, ("a", Some(&canary)));
        assert_eq!(
            models.all().splits["a"].pick(),
            sequence[0],
            "a new split starts afresh"
        );
    }
}
