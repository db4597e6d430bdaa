//! Observed latency of one engine for one model: the p99 of its recent answers, read by the
//! router to size hedges and to tell an engine's own slowness from time lost in a queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Answers remembered.
const WINDOW: usize = 64;
/// The p99 is recomputed every this many answers (a sort of [`WINDOW`] values).
const REFRESH: usize = 8;

/// A ring of the last [`WINDOW`] latencies and their p99, cached in an atomic so readers never
/// take the lock.
#[derive(Debug, Default)]
pub(crate) struct Estimate {
    ring: Mutex<Ring>,
    /// p99 in microseconds; 0 until the first answer.
    p99_us: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    values: Vec<u64>,
    next: usize,
    since_refresh: usize,
}

impl Estimate {
    /// Records one latency.
    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut r = self.ring.lock();
        if r.values.len() < WINDOW {
            r.values.push(us);
        } else {
            let i = r.next;
            r.values[i] = us;
        }
        r.next = (r.next + 1) % WINDOW;
        r.since_refresh += 1;
        // Refresh at once while the window fills, then every REFRESH answers.
        if r.values.len() < WINDOW || r.since_refresh >= REFRESH {
            r.since_refresh = 0;
            let mut sorted = r.values.clone();
            drop(r);
            sorted.sort_unstable();
            let i = ((sorted.len() - 1) as f64 * 0.99).round() as usize;
            self.p99_us.store(sorted[i], Ordering::Relaxed);
        }
    }

    /// The p99 of the recent answers, or `None` before the first.
    pub(crate) fn p99(&self) -> Option<Duration> {
        match self.p99_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_follows_the_recent_window() {
        let e = Estimate::default();
        assert_eq!(e.p99(), None);
        for _ in 0..WINDOW {
            e.record(Duration::from_millis(5));
        }
        assert_eq!(e.p99(), Some(Duration::from_millis(5)));
        // One outlier in the window: the p99 (index 62 of 64 sorted) is not the maximum.
        e.record(Duration::from_secs(1));
        for _ in 0..WINDOW - 1 {
            e.record(Duration::from_millis(2));
        }
        let p = e.p99().unwrap();
        assert!(p >= Duration::from_millis(2) && p <= Duration::from_millis(5), "{p:?}");
        // Once the old values have left the window, only the new ones count.
        for _ in 0..WINDOW {
            e.record(Duration::from_millis(2));
        }
        assert_eq!(e.p99(), Some(Duration::from_millis(2)));
    }
}
