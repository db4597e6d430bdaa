//! Back-pressure: a bounded admission queue per model; full means `Overloaded`, at once or
//! after a bounded wait for a slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use inference_api::Error;
use parking_lot::{Condvar, Mutex};
use telemetry::ModelSeries;

/// Callers waiting for a slot, and the condition they wait on.
#[derive(Debug, Default)]
struct Waiters {
    count: AtomicUsize,
    lock: Mutex<()>,
    freed: Condvar,
}

/// Counts calls in flight (waiting or running) for one model, up to a capacity.
#[derive(Debug)]
pub struct Admission {
    model: String,
    capacity: usize,
    in_flight: Arc<AtomicUsize>,
    series: Option<Arc<ModelSeries>>,
    waiters: Arc<Waiters>,
}

/// A slot in the queue; released on drop.
#[derive(Debug)]
pub struct Slot {
    in_flight: Arc<AtomicUsize>,
    series: Option<Arc<ModelSeries>>,
    waiters: Arc<Waiters>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(s) = &self.series {
            s.queue_leave();
        }
        if self.waiters.count.load(Ordering::Acquire) > 0 {
            // Taking the lock orders this wake-up after a waiter's last check.
            let _g = self.waiters.lock.lock();
            self.waiters.freed.notify_one();
        }
    }
}

impl Admission {
    /// A queue admitting at most `capacity` calls at once (at least one).
    pub fn new(model: &str, capacity: usize) -> Admission {
        Admission {
            model: model.to_string(),
            capacity: capacity.max(1),
            in_flight: Arc::new(AtomicUsize::new(0)),
            series: None,
            waiters: Arc::default(),
        }
    }

    /// Reports the queue's capacity and depth to the model's telemetry series.
    pub fn with_series(mut self, series: Arc<ModelSeries>) -> Admission {
        series.set_queue_capacity(self.capacity);
        self.series = Some(series);
        self
    }

    /// Takes a slot, or returns [`Error::Overloaded`] without waiting.
    pub fn try_admit(&self) -> Result<Slot, Error> {
        let cap = self.capacity;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1))
            .map(|_| {
                if let Some(s) = &self.series {
                    s.queue_enter();
                }
                Slot {
                    in_flight: Arc::clone(&self.in_flight),
                    series: self.series.clone(),
                    waiters: Arc::clone(&self.waiters),
                }
            })
            .map_err(|_| Error::Overloaded { model: self.model.clone(), capacity: cap })
    }

    /// Takes a slot, waiting for one until `until` at the latest (a bounded wait; an `until`
    /// already past makes this [`Admission::try_admit`]), or returns [`Error::Overloaded`].
    pub fn admit(&self, until: Instant) -> Result<Slot, Error> {
        match self.try_admit() {
            Ok(slot) => return Ok(slot),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => {}
        }
        let w = &self.waiters;
        w.count.fetch_add(1, Ordering::AcqRel);
        let mut g = w.lock.lock();
        let result = loop {
            match self.try_admit() {
                Ok(slot) => break Ok(slot),
                Err(e) if Instant::now() >= until => break Err(e),
                Err(_) => {
                    w.freed.wait_until(&mut g, until);
                }
            }
        };
        drop(g);
        w.count.fetch_sub(1, Ordering::AcqRel);
        result
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

    #[test]
    fn a_bounded_wait_gets_a_freed_slot_or_gives_up_in_time() {
        use std::time::Duration;
        let q = Admission::new("m", 1);
        let a = q.try_admit().unwrap();
        // Nobody frees the slot: overloaded once the wait is over, not before.
        let t = Instant::now();
        let e = q.admit(t + Duration::from_millis(30)).unwrap_err();
        assert_eq!(e.kind(), "overloaded");
        assert!(t.elapsed() >= Duration::from_millis(30), "{:?}", t.elapsed());
        // A slot freed while a caller waits goes to it.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| q.admit(Instant::now() + Duration::from_secs(10)).is_ok());
            while q.waiters.count.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
            drop(a);
            assert!(waiter.join().unwrap());
        });
    }

    #[test]
    fn depth_and_capacity_reach_telemetry() {
        let t = telemetry::Telemetry::new();
        let q = Admission::new("m", 3).with_series(t.model("m"));
        let a = q.try_admit().unwrap();
        let b = q.try_admit().unwrap();
        let snap = |t: &telemetry::Telemetry| {
            let m = &t.snapshot().models[0];
            (m.queue_depth, m.queue_capacity)
        };
        assert_eq!(snap(&t), (2, 3));
        drop(a);
        assert_eq!(snap(&t), (1, 3));
        drop(b);
        assert_eq!(snap(&t), (0, 3));
    }
}
