//! One budget of CPU cores that decoding and inference both draw from (`--core-budget`, off by
//! default), so that the service never has more CPU-bound threads running than cores.
//!
//! Without it, a burst on two cores can run a model run's intra-op threads, a second session
//! and two decodes at once, and the operating system shares the cores: measured at 30-45 %
//! load, a batch-1 run overlapping another run and decodes took 10 % (one thread) to 45 %
//! (both threads) longer at the median (docs/anatomy.md). With it, a model run takes as many
//! cores as its session has intra-op threads (the wide session: every core) and a decode takes
//! one; whoever cannot get its cores waits for them, first come first served (tokio's
//! semaphore is fair), so a core decodes or infers, never both at once. The price: decodes
//! wait for runs, and the saturation throughput measured 9-13 % lower on 2 cores.
//!
//! ```text
//! pipeline: lease(1) -> decode on a preprocessing worker -> lease returned
//! batching driver: lease(intra threads) -> cut the batch -> run -> lease returned
//!                  (wide lane: only when it can lease every core at once)
//! ```

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget: `total` cores, or unlimited when `--core-budget false`.
#[derive(Clone, Debug)]
pub(crate) struct Cores {
    /// `None`: every lease is granted at once (the operating system shares the cores).
    semaphore: Option<Arc<Semaphore>>,
    total: u32,
}

/// Cores held for one decode or one model run; returned when dropped.
#[derive(Debug)]
pub(crate) struct Lease(Option<OwnedSemaphorePermit>);

impl Cores {
    /// A budget of `total` cores (at least 1), shared by every clone.
    pub(crate) fn new(total: usize) -> Self {
        let total = u32::try_from(total.max(1)).unwrap_or(u32::MAX);
        Self {
            semaphore: Some(Arc::new(Semaphore::new(total as usize))),
            total,
        }
    }

    /// No budget: leases are free and unlimited.
    pub(crate) fn unlimited() -> Self {
        Self {
            semaphore: None,
            total: u32::MAX,
        }
    }

    /// Cores in the budget (`u32::MAX` without one).
    pub(crate) fn total(&self) -> u32 {
        self.total
    }

    /// Waits for `cores` cores (at most the whole budget).
    pub(crate) async fn lease(&self, cores: u32) -> Lease {
        match &self.semaphore {
            Some(semaphore) => Lease(Some(
                semaphore
                    .clone()
                    .acquire_many_owned(cores.clamp(1, self.total))
                    .await
                    .expect("the core budget is never closed"),
            )),
            None => Lease(None),
        }
    }

    /// `cores` cores if they are free now.
    pub(crate) fn try_lease(&self, cores: u32) -> Option<Lease> {
        match &self.semaphore {
            Some(_) if cores == 0 => Some(Lease(None)),
            Some(semaphore) => semaphore
                .clone()
                .try_acquire_many_owned(cores.min(self.total))
                .ok()
                .map(|permit| Lease(Some(permit))),
            None => Some(Lease(None)),
        }
    }

    /// Cores leased now (0 without a budget).
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> u32 {
        self.semaphore.as_ref().map_or(0, |s| {
            self.total
                .saturating_sub(u32::try_from(s.available_permits()).unwrap_or(u32::MAX))
        })
    }
}

impl Lease {
    /// Adds `other`'s cores to this lease.
    pub(crate) fn merge(&mut self, other: Lease) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    /// Cores this lease holds.
    pub(crate) fn cores(&self) -> u32 {
        self.0
            .as_ref()
            .map_or(0, |p| u32::try_from(p.num_permits()).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_lease_waits_until_the_cores_it_needs_are_returned() {
        let cores = Cores::new(2);
        let decode = cores.lease(1).await;
        assert_eq!(cores.in_use(), 1);
        assert!(
            cores.try_lease(2).is_none(),
            "a decode holds one of two cores"
        );
        let run = cores.clone();
        let wide = tokio::spawn(async move { run.lease(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !wide.is_finished(),
            "two cores leased while a decode holds one"
        );
        drop(decode);
        let wide = tokio::time::timeout(Duration::from_secs(5), wide)
            .await
            .expect("granted once the decode's core is back")
            .expect("task");
        assert_eq!((wide.cores(), cores.in_use()), (2, 2));
        drop(wide);
        assert_eq!(cores.in_use(), 0);
    }

    #[tokio::test]
    async fn leases_are_first_come_first_served() {
        let cores = Cores::new(2);
        let held = cores.lease(2).await;
        let (a, b) = (cores.clone(), cores.clone());
        let wide = tokio::spawn(async move { a.lease(2).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let narrow = tokio::spawn(async move { b.lease(1).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The earlier request for both cores is served first; the later one does not overtake it.
        assert!(wide.is_finished() && !narrow.is_finished());
        drop(wide.await.expect("task"));
        assert_eq!(narrow.await.expect("task").cores(), 1);
    }

    #[tokio::test]
    async fn without_a_budget_every_lease_is_granted_at_once() {
        let cores = Cores::unlimited();
        let leases = [cores.lease(2).await, cores.lease(2).await];
        assert!(cores.try_lease(2).is_some());
        assert_eq!((leases[0].cores(), cores.in_use()), (0, 0));
    }

    #[tokio::test]
    async fn merged_leases_return_every_core() {
        let cores = Cores::new(3);
        let mut lease = cores.lease(1).await;
        lease.merge(cores.try_lease(2).expect("free"));
        assert_eq!((lease.cores(), cores.in_use()), (3, 3));
        drop(lease);
        assert_eq!(cores.in_use(), 0);
    }
}
