//! The memory budget for request bodies, shared by every door (HTTP and gRPC): bytes of request
//! bodies held in memory across all connections together may not exceed
//! `--max-inflight-body-bytes`.
//!
//! Each body is wrapped in [`Budgeted`] before anything reads it; every data frame reserves its
//! bytes as it arrives (not what a header declares), and a frame that does not fit fails the
//! body with [`BodyError::BudgetFull`] (the doors answer 503 / UNAVAILABLE). The reservation
//! lives in a [`BodyHold`] shared by the body and by the door's request future, so the bytes
//! stay counted until the request is answered (its images are slices of the body, alive until
//! then), and are given back at once when it ends or is cancelled.
//!
//! Optionally the wrapper also ends a body that has not arrived in full by a deadline
//! ([`BodyError::Timeout`]): the gRPC door's message arrival timeout (HTTP has its own, 408).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Why a budgeted body failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error(
        "request bodies held in memory are at the limit of {limit} bytes \
         (--max-inflight-body-bytes); retry shortly"
    )]
    BudgetFull { limit: usize },
    #[error("the request message did not arrive within {ms} ms")]
    Timeout { ms: u128 },
}

impl BodyError {
    /// The budget error inside a body error from any layer, if that is what it is.
    pub(crate) fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
        let mut source = Some(error);
        while let Some(error) = source {
            if let Some(found) = error.downcast_ref::<BodyError>() {
                return Some(found);
            }
            source = error.source();
        }
        None
    }
}

/// The budget; cloning is cheap.
#[derive(Clone, Debug)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
    metrics: Arc<Metrics>,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(limit)),
            limit,
            metrics,
        }
    }

    /// The most bytes held at once (`--max-inflight-body-bytes`).
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.limit - self.bytes.available_permits()
    }

    /// Wraps `body`: its bytes are reserved here as they arrive, held by the returned
    /// [`BodyHold`] (and the body) until both are dropped. With `timeout`, the body fails if it
    /// has not ended that long after this call.
    pub(crate) fn wrap<B>(&self, body: B, timeout: Option<Duration>) -> (Budgeted<B>, BodyHold) {
        let hold = BodyHold(Arc::new(Mutex::new(Held {
            permit: None,
            bytes: 0,
            metrics: self.metrics.clone(),
        })));
        let deadline = timeout.map(|t| (Box::pin(tokio::time::sleep(t)), t));
        let body = Budgeted {
            inner: body,
            budget: self.clone(),
            hold: hold.clone(),
            deadline,
        };
        (body, hold)
    }

    fn reserve(&self, hold: &BodyHold, bytes: usize) -> Result<(), BodyError> {
        if bytes == 0 {
            return Ok(());
        }
        let full = || {
            self.metrics.body_budget_rejected();
            BodyError::BudgetFull { limit: self.limit }
        };
        let count = u32::try_from(bytes).map_err(|_| full())?;
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(count)
            .map_err(|_| full())?;
        let mut held = hold.0.lock().unwrap_or_else(|p| p.into_inner());
        match &mut held.permit {
            Some(taken) => taken.merge(permit),
            none => *none = Some(permit),
        }
        held.bytes += bytes;
        self.metrics.body_bytes(bytes as f64);
        Ok(())
    }
}

/// One request's reserved body bytes, given back when the last clone is dropped.
#[derive(Clone, Debug)]
pub(crate) struct BodyHold(Arc<Mutex<Held>>);

#[derive(Debug)]
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
    metrics: Arc<Metrics>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.metrics.body_bytes(-(self.bytes as f64));
    }
}

/// A body whose bytes are counted against the [`BodyBudget`] as they arrive.
#[derive(Debug)]
pub(crate) struct Budgeted<B> {
    inner: B,
    budget: BodyBudget,
    hold: BodyHold,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
}

impl<B> Body for Budgeted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some((deadline, timeout)) = &mut this.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                let ms = timeout.as_millis();
                return Poll::Ready(Some(Err(Box::new(BodyError::Timeout { ms }))));
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(e) = this.budget.reserve(&this.hold, data.len()) {
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.deadline = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn bodies_reserve_what_arrives_and_give_it_back_when_done() {
        let metrics = Arc::new(Metrics::new());
        let budget = BodyBudget::new(100, metrics);
        let (body, hold) = budget.wrap(Full::new(Bytes::from(vec![0u8; 60])), None);
        let collected = body.collect().await.expect("fits").to_bytes();
        assert_eq!(collected.len(), 60);
        assert_eq!(budget.in_use(), 60, "held while the request is served");

        let (second, second_hold) = budget.wrap(Full::new(Bytes::from(vec![0u8; 60])), None);
        let refused = second.collect().await.expect_err("over the budget");
        assert!(matches!(
            BodyError::find(refused.as_ref()),
            Some(BodyError::BudgetFull { limit: 100 })
        ));
        drop(second_hold);
        drop(hold);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_fails() {
        let budget = BodyBudget::new(100, Arc::new(Metrics::new()));
        let never = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::convert::Infallible>,
        >());
        let (body, _hold) = budget.wrap(never, Some(Duration::from_millis(50)));
        let err = body.collect().await.expect_err("timed out");
        assert!(matches!(
            BodyError::find(err.as_ref()),
            Some(BodyError::Timeout { ms: 50 })
        ));
    }
}
