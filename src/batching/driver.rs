//! The batching driver: the one task that cuts batches from the queue when a session (and,
//! with `--core-budget`, its cores) is free, and sends each to the narrow or the wide lane;
//! with `--keep-warm-ms`, also the warm runs of an idle model ([`super::keep_warm`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::keep_warm::{RunEnds, Warmth};
use super::queue::Poll;
use super::{Batch, KeepWarm, Lanes, Shared};
use crate::cores::{Cores, Lease};
#[cfg(any(test, feature = "fault-injection"))]
use crate::supervise::FaultPoint;

/// The task that cuts batches and sends them to a lane.
pub(super) struct Driver {
    pub(super) shared: Arc<Shared>,
    /// One per narrow session.
    pub(super) permits: Arc<Semaphore>,
    pub(super) sessions: usize,
    pub(super) lanes: Lanes,
    pub(super) cores: Cores,
    /// Cores a narrow run leases (its session's intra-op threads).
    pub(super) run_cores: u32,
    pub(super) keep_warm: Option<KeepWarm>,
}

impl Driver {
    /// The other sessions' permits and the rest of the cores, for a lone queued image when
    /// there is a wide lane and every session and core is free. (Giving the wide lane a few
    /// queued images too, where measured run times predicted it finishes them first, cost
    /// 17 % of the saturation throughput: docs/anatomy.md.)
    fn hold_wide(&self, queued: usize, lease: &Lease) -> Option<(OwnedSemaphorePermit, Lease)> {
        self.lanes.wide.as_ref()?;
        if queued != 1 {
            return None;
        }
        self.hold_the_rest(lease)
    }

    /// Every other session's permit and every other core, or `None` while any is taken.
    fn hold_the_rest(&self, lease: &Lease) -> Option<(OwnedSemaphorePermit, Lease)> {
        let others = u32::try_from(self.sessions - 1).unwrap_or(u32::MAX);
        let rest = self.permits.clone().try_acquire_many_owned(others).ok()?;
        // Every core, or the narrow lane: a wide run beside a decode stalls.
        let more = self.cores.total().saturating_sub(lease.cores());
        Some((rest, self.cores.try_lease(more)?))
    }

    pub(super) async fn drive(self, watch: &crate::supervise::Watch) {
        let Self {
            shared,
            permits,
            sessions,
            lanes,
            cores,
            run_cores,
            keep_warm,
        } = &self;
        let run_ends = Arc::new(RunEnds::new());
        let mut warmth = Warmth::new(*keep_warm, run_ends.clone());
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (jobs, mut lease, wide) = loop {
                // The run's cores first: while decodes hold them the batch keeps gathering.
                let lease = cores.lease(*run_cores).await;
                let (poll, removed, wide) = {
                    let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                    // A lone image with every session idle: the wide lane, with every permit
                    // and every core.
                    let wide = self.hold_wide(queue.len(), &lease);
                    // Otherwise every narrow session shares what is queued, busy ones too: a
                    // busy one frees up within its run, and a batch taken whole by one session
                    // runs on its threads alone while the others' cores idle (docs/anatomy.md).
                    let share = if wide.is_some() { 1 } else { *sessions };
                    let (poll, removed) = queue.poll(Instant::now(), share);
                    shared.metrics.set_queue_depth(queue.len());
                    (poll, removed, wide)
                };
                if removed != Default::default() {
                    tracing::debug!(
                        ?removed,
                        "dropped queued jobs that were abandoned or past their deadline"
                    );
                }
                #[cfg(any(test, feature = "fault-injection"))]
                shared.supervisor.fault_point(FaultPoint::Driver);
                match poll {
                    Poll::Ready(jobs) => {
                        warmth.real(Instant::now());
                        break (jobs, lease, wide);
                    }
                    // Waiting for jobs holds no cores: decodes may use them meanwhile.
                    Poll::WaitUntil(at) => {
                        drop((lease, wide));
                        tokio::select! {
                            () = shared.wake.notified() => {}
                            () = tokio::time::sleep_until(at.into()) => {}
                        }
                    }
                    Poll::Idle if shared.closed.load(Ordering::SeqCst) => return,
                    Poll::Idle => {
                        let due = warmth.next_due();
                        if due.is_some_and(|at| at <= Instant::now()) {
                            warmth.warm(Instant::now());
                            // On the lane a lone image takes, and only with every session
                            // idle: a warm run never delays a real one by more than itself.
                            let rest = self.hold_the_rest(&lease);
                            if rest.is_some() {
                                break (Vec::new(), lease, rest.filter(|_| lanes.wide.is_some()));
                            }
                            continue;
                        }
                        drop((lease, wide));
                        match due {
                            Some(at) => tokio::select! {
                                () = shared.wake.notified() => {}
                                () = tokio::time::sleep_until(at.into()) => {}
                            },
                            None => shared.wake.notified().await,
                        }
                    }
                }
            };
            let warm = jobs.is_empty();
            let mut permit = permit;
            let lane = match (wide, &lanes.wide) {
                (Some((rest, more)), Some(lane)) => {
                    permit.merge(rest);
                    lease.merge(more);
                    lane
                }
                _ => &lanes.narrow,
            };
            let batch = Batch {
                jobs,
                cut_at: Instant::now(),
                permit,
                cores: lease,
                warm,
                run_ends: run_ends.clone(),
            };
            if lane.send(batch).is_err() {
                watch.ended("every inference thread is gone");
                return;
            }
        }
    }
}
