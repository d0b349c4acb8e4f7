//! Admission control, the service's one limit on work in flight.
//!
//! An image takes one of `capacity` places when its request arrives, before any decoding, and
//! the place travels with it (preprocessing task -> batching job -> batch) until it leaves the
//! service: answered, failed, expired, or dropped because its client went away. Every stage
//! after admission therefore has room for every admitted image by construction; none of them
//! refuses an image later, and overload is answered at the door (503), where it costs nothing.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// No place left: answer 503.
#[derive(Debug)]
pub struct QueueFull;

/// The places.
#[derive(Clone, Debug)]
pub struct Admissions {
    places: Arc<Semaphore>,
}

/// One admitted image's place; dropping it frees the place.
#[derive(Debug)]
pub struct Admission {
    _place: OwnedSemaphorePermit,
}

impl Admissions {
    pub fn new(capacity: usize) -> Self {
        Self {
            places: Arc::new(Semaphore::new(capacity)),
        }
    }

    /// Admits one more image, or refuses it at once when every place is taken.
    pub fn admit(&self) -> Result<Admission, QueueFull> {
        let place = self
            .places
            .clone()
            .try_acquire_owned()
            .map_err(|_| QueueFull)?;
        Ok(Admission { _place: place })
    }
}
