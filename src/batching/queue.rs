//! The batching queue as a pure state machine (no tasks, no clocks of its own): entries go in
//! with their arrival time; `poll(now, free)` says whether a batch leaves now (and how much of
//! the queue it takes) or when to look again.
//!
//! Rules: a full batch (`max_batch` entries) leaves at once; otherwise the oldest entry starts
//! the timer and a partial batch leaves `max_delay` after it arrived. What leaves is shared
//! with the other idle sessions: with `free` sessions idle, a batch takes at most
//! `ceil(queued / free)` entries, so two images queued for two idle sessions run side by side
//! (one run each) instead of one after the other in one session's batch of two, while a
//! backlog still leaves in full batches. Entries whose client has
//! gone or whose deadline has passed are removed, never batched. There is no capacity check
//! here: admission bounds how many entries can exist (`crate::admission`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the queue needs to know about an entry.
pub trait Pending {
    fn enqueued(&self) -> Instant;
    fn deadline(&self) -> Instant;
    /// The client stopped waiting.
    fn is_abandoned(&self) -> bool;
}

#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    pub max_batch: usize,
    pub max_delay: Duration,
    /// Most entries at once (admission guarantees it; used to size the buffer).
    pub capacity: usize,
    /// Warm runs while the queue is idle (read by the driver, not the queue).
    pub keep_warm: Option<super::KeepWarm>,
}

/// What [`Queue::poll`] decided.
#[derive(Debug, PartialEq)]
pub enum Poll<T> {
    /// Send these now.
    Ready(Vec<T>),
    /// Nothing yet; poll again at this instant (or when an entry arrives).
    WaitUntil(Instant),
    /// The queue is empty.
    Idle,
}

/// Entries removed by a poll without being batched.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Removed {
    pub abandoned: usize,
    pub expired: usize,
}

#[derive(Debug)]
pub struct Queue<T> {
    entries: VecDeque<T>,
    config: QueueConfig,
}

impl<T: Pending> Queue<T> {
    pub fn new(config: QueueConfig) -> Self {
        Self {
            entries: VecDeque::with_capacity(config.capacity),
            config,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn push(&mut self, entry: T) {
        self.entries.push_back(entry);
    }

    /// Removes the entries whose client has gone; how many.
    pub fn remove_abandoned(&mut self) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| !e.is_abandoned());
        before - self.entries.len()
    }

    /// Takes every entry out (the pipeline failed: they are answered with the failure).
    pub fn drain_all(&mut self) -> Vec<T> {
        self.entries.drain(..).collect()
    }

    /// Removes dead entries, then cuts a batch if one is due, for one of `free` idle sessions
    /// (at least 1: the one the batch is for).
    pub fn poll(&mut self, now: Instant, free: usize) -> (Poll<T>, Removed) {
        let mut removed = Removed::default();
        self.entries.retain(|e| {
            if e.is_abandoned() {
                removed.abandoned += 1;
                false
            } else if e.deadline() <= now {
                removed.expired += 1;
                false
            } else {
                true
            }
        });
        let Some(oldest) = self.entries.front() else {
            return (Poll::Idle, removed);
        };
        let due = oldest.enqueued() + self.config.max_delay;
        let poll = if self.entries.len() >= self.config.max_batch || due <= now {
            let share = self.entries.len().div_ceil(free.max(1));
            let n = share.min(self.config.max_batch);
            Poll::Ready(self.entries.drain(..n).collect())
        } else {
            Poll::WaitUntil(due)
        };
        (poll, removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[derive(Debug, Clone)]
    struct E {
        id: u32,
        at: Instant,
        deadline: Instant,
        gone: Arc<AtomicBool>,
    }

    impl PartialEq for E {
        fn eq(&self, other: &Self) -> bool {
            self.id == other.id
        }
    }

    impl Pending for E {
        fn enqueued(&self) -> Instant {
            self.at
        }
        fn deadline(&self) -> Instant {
            self.deadline
        }
        fn is_abandoned(&self) -> bool {
            self.gone.load(Ordering::Relaxed)
        }
    }

    fn entry(id: u32, at: Instant) -> E {
        E {
            id,
            at,
            deadline: at + Duration::from_secs(10),
            gone: Arc::default(),
        }
    }

    fn queue(max_batch: usize, capacity: usize) -> Queue<E> {
        Queue::new(QueueConfig {
            max_batch,
            max_delay: Duration::from_millis(5),
            capacity,
            keep_warm: None,
        })
    }

    fn ids(poll: Poll<E>) -> Vec<u32> {
        match poll {
            Poll::Ready(batch) => batch.iter().map(|e| e.id).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn first_entry_starts_the_timer() {
        let mut q = queue(4, 16);
        let t0 = tokio::time::Instant::now().into_std();
        assert_eq!(q.poll(t0, 1).0, Poll::Idle);
        q.push(entry(1, t0));
        tokio::time::advance(Duration::from_millis(3)).await;
        let t3 = tokio::time::Instant::now().into_std();
        q.push(entry(2, t3));
        // Due 5 ms after the *first* entry, not the second.
        assert_eq!(
            q.poll(t3, 1).0,
            Poll::WaitUntil(t0 + Duration::from_millis(5))
        );
        tokio::time::advance(Duration::from_millis(2)).await;
        let t5 = tokio::time::Instant::now().into_std();
        assert_eq!(ids(q.poll(t5, 1).0), [1, 2]);
        assert_eq!(q.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_leaves_early_and_the_rest_waits() {
        let mut q = queue(3, 16);
        let t0 = tokio::time::Instant::now().into_std();
        for id in 1..=4 {
            q.push(entry(id, t0));
        }
        assert_eq!(ids(q.poll(t0, 1).0), [1, 2, 3]);
        assert_eq!(
            q.poll(t0, 1).0,
            Poll::WaitUntil(t0 + Duration::from_millis(5))
        );
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(
            ids(q.poll(tokio::time::Instant::now().into_std(), 1).0),
            [4]
        );
    }

    #[test]
    fn idle_sessions_share_what_is_queued_and_a_backlog_leaves_in_full_batches() {
        let mut q = queue(8, 64);
        let t0 = Instant::now();
        let due = t0 + Duration::from_millis(5);
        for id in 1..=3 {
            q.push(entry(id, t0));
        }
        // Three queued, two sessions idle: two for this one, one left for the other.
        assert_eq!(ids(q.poll(due, 2).0), [1, 2]);
        assert_eq!(ids(q.poll(due, 1).0), [3]);
        for id in 4..=23 {
            q.push(entry(id, t0));
        }
        // A backlog: every idle session still gets a full batch.
        assert_eq!(ids(q.poll(due, 2).0), (4..=11).collect::<Vec<_>>());
        assert_eq!(ids(q.poll(due, 1).0), (12..=19).collect::<Vec<_>>());
        // `free` 0 is read as 1 (the session asking is idle).
        assert_eq!(ids(q.poll(due, 0).0), [20, 21, 22, 23]);
    }

    #[test]
    fn abandoned_and_expired_entries_are_skipped() {
        let mut q = queue(8, 16);
        let t0 = Instant::now();
        let gone = entry(1, t0);
        gone.gone.store(true, Ordering::Relaxed);
        let mut late = entry(2, t0);
        late.deadline = t0 + Duration::from_millis(1);
        for e in [gone, late, entry(3, t0)] {
            q.push(e);
        }
        let (poll, removed) = q.poll(t0 + Duration::from_millis(6), 1);
        assert_eq!(ids(poll), [3]);
        assert_eq!(
            removed,
            Removed {
                abandoned: 1,
                expired: 1
            }
        );
    }
}
