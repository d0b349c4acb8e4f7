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
    capacity: usize,
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
            capacity,
        }
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
        Ok(Admission { _place: place })
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
            admissions.push(Admission { _place: one });
        }
        if count > 0 {
            admissions.push(Admission { _place: places });
        }
        Ok(admissions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_all_takes_every_place_or_none() {
        let admissions = Admissions::new(3);
        let one = admissions.admit().expect("a place");
        assert!(admissions.admit_all(3).is_err(), "only two places are free");
        let two = admissions.admit_all(2).expect("two places");
        assert_eq!(two.len(), 2);
        assert!(admissions.admit().is_err());
        drop(two);
        drop(one);
        assert_eq!(admissions.admit_all(3).expect("all three").len(), 3);
    }
}
