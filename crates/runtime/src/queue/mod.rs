//! Back-pressure: a bounded admission queue per model; full means `Overloaded` at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use inference_api::Error;

/// Counts calls in flight (waiting or running) for one model, up to a capacity.
#[derive(Debug)]
pub struct Admission {
    model: String,
    capacity: usize,
    in_flight: Arc<AtomicUsize>,
}

/// A slot in the queue; released on drop.
#[derive(Debug)]
pub struct Slot {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// A queue admitting at most `capacity` calls at once (at least one).
    pub fn new(model: &str, capacity: usize) -> Admission {
        Admission {
            model: model.to_string(),
            capacity: capacity.max(1),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes a slot, or returns [`Error::Overloaded`] without waiting.
    pub fn try_admit(&self) -> Result<Slot, Error> {
        let cap = self.capacity;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1))
            .map(|_| Slot { in_flight: Arc::clone(&self.in_flight) })
            .map_err(|_| Error::Overloaded { model: self.model.clone(), capacity: cap })
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_rejects_at_once_and_frees_on_drop() {
        let q = Admission::new("m", 2);
        let a = q.try_admit().unwrap();
        let _b = q.try_admit().unwrap();
        let e = q.try_admit().unwrap_err();
        assert_eq!(e.kind(), "overloaded");
        drop(a);
        assert!(q.try_admit().is_ok());
    }
}
