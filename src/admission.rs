//! Admission control, the service's one limit on work in flight.
//!
//! An image takes one of `capacity` places when its request arrives, before any decoding, and
//! holds it for as long as its request waits for it ([`crate::pipeline`] keeps the place beside
//! the awaiting future): answered, failed, expired (504) or dropped because its client went
//! away, the place is free at that moment, not when a worker or the batching driver later
//! reaches the abandoned work. Work nobody waits for any longer holds no place: a queued job is
//! taken out of the batching queue when its waiter goes, and a preprocessing task gives up its
//! bytes (see `crate::preprocess::pool`). Overload is answered at the door (503), where it
//! costs nothing. `repvgg_admission_in_use` / `repvgg_admission_capacity` show the places.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// No place left: answer 503.
#[derive(Debug)]
pub struct QueueFull;

/// The places.
#[derive(Clone, Debug)]
pub struct Admissions {
    places: Arc<Semaphore>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

/// One admitted image's place; dropping it frees the place.
#[derive(Debug)]
pub struct Admission {
    _place: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.metrics.admission(-1.0);
    }
}

impl Admissions {
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        metrics.set_admission_capacity(capacity);
        Self {
            places: Arc::new(Semaphore::new(capacity)),
            capacity,
            metrics,
        }
    }

    fn place(&self, place: OwnedSemaphorePermit) -> Admission {
        self.metrics.admission(1.0);
        Admission {
            _place: place,
            metrics: self.metrics.clone(),
        }
    }

    /// Places taken now.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.capacity - self.places.available_permits()
    }

    /// Places in all.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Admits one more image, or refuses it at once when every place is taken.
    pub fn admit(&self) -> Result<Admission, QueueFull> {
        let place = self
            .places
            .clone()
            .try_acquire_owned()
            .map_err(|_| QueueFull)?;
        Ok(self.place(place))
    }

    /// Admits `count` images together or none of them (a request whose images are answered
    /// only as a whole need not start any when one cannot be admitted).
    pub fn admit_all(&self, count: usize) -> Result<Vec<Admission>, QueueFull> {
        let count = u32::try_from(count).map_err(|_| QueueFull)?;
        let mut places = self
            .places
            .clone()
            .try_acquire_many_owned(count)
            .map_err(|_| QueueFull)?;
        let mut admissions = Vec::with_capacity(count as usize);
        while places.num_permits() > 1 {
            let one = places.split(1).expect("more than one place held");
            admissions.push(self.place(one));
        }
        if count > 0 {
            admissions.push(self.place(places));
        }
        Ok(admissions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_all_takes_every_place_or_none() {
        let admissions = Admissions::new(3, Arc::new(Metrics::new()));
        let one = admissions.admit().expect("a place");
        assert!(admissions.admit_all(3).is_err(), "only two places are free");
        let two = admissions.admit_all(2).expect("two places");
        assert_eq!(two.len(), 2);
        assert!(admissions.admit().is_err());
        assert_eq!(admissions.in_use(), 3);
        drop(two);
        drop(one);
        assert_eq!(admissions.in_use(), 0);
        assert_eq!(admissions.admit_all(3).expect("all three").len(), 3);
    }
}
