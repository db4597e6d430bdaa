//! The instances of one prepared model: one loaded at prepare, more loaded on demand (up to
//! `CoreMlConfig::instances`) when calls overlap, each serving one prediction at a time.
//!
//! There are no worker threads, no deadlines and no quarantine here: the caller's thread runs
//! the prediction, the call's [`RunContext`] bounds the wait for a free instance, and the
//! runtime owns timeouts, quarantine and rebuilds (a rebuild is `prepare` again). A prediction
//! that never returns keeps its instance checked out; the model it belongs to is dropped when
//! the runtime retires it and the stuck call finally lets go.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use inference_api::{Error, Result, RunContext};

use crate::ffi::ModelHandle;

/// Loads one more instance of the model (pool growth).
pub(crate) type Factory = Box<dyn Fn() -> Result<ModelHandle> + Send + Sync>;

/// How long a waiting caller sleeps between looks at its cancellation token (the token has no
/// wake-up of its own; a freed instance or the deadline wakes the caller at once).
const CANCEL_POLL: Duration = Duration::from_millis(5);

/// Counters of one prepared model's instances and predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Instances loaded and not freed (idle or serving).
    pub instances: usize,
    /// Instances idle now.
    pub idle: usize,
    /// Instances loaded, counting the one loaded at prepare.
    pub loads: u64,
    /// Predictions handed to the bridge.
    pub predictions: u64,
    /// Predictions the engine asked the bridge to stop (deadline passed or call cancelled).
    pub cancel_requests: u64,
    /// Predictions the bridge reported as stopped (`CMB_ERR_CANCELLED`).
    pub cancelled: u64,
}

#[derive(Default)]
struct State {
    idle: Vec<ModelHandle>,
    /// Instances in existence: idle, checked out, or being loaded.
    live: usize,
}

/// The instances of one model.
pub(crate) struct Pool {
    model: String,
    max: usize,
    factory: Factory,
    state: Mutex<State>,
    freed: Condvar,
    loads: AtomicU64,
    pub(crate) predictions: AtomicU64,
    pub(crate) cancel_requests: AtomicU64,
    pub(crate) cancelled: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An instance checked out for one call; back in the pool when dropped.
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    handle: Option<ModelHandle>,
}

impl Lease<'_> {
    /// The instance.
    pub(crate) fn handle(&mut self) -> &mut ModelHandle {
        // Present from checkout until Drop.
        self.handle.as_mut().unwrap_or_else(|| unreachable!("a lease holds its handle"))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            lock(&self.pool.state).idle.push(h);
            self.pool.freed.notify_one();
        }
    }
}

impl Pool {
    /// A pool holding `first` (loaded at prepare) that grows to at most `max` instances.
    pub(crate) fn new(model: &str, first: ModelHandle, factory: Factory, max: usize) -> Pool {
        Pool {
            model: model.to_string(),
            max: max.max(1),
            factory,
            state: Mutex::new(State { idle: vec![first], live: 1 }),
            freed: Condvar::new(),
            loads: AtomicU64::new(1),
            predictions: AtomicU64::new(0),
            cancel_requests: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        }
    }

    /// An idle instance; else a new one when fewer than `max` exist; else waits for one to be
    /// freed, as long as `ctx` allows (its deadline or cancellation ends the wait with the
    /// context's own error). A failed load answers this call with the load error.
    pub(crate) fn checkout(&self, ctx: &RunContext) -> Result<Lease<'_>> {
        let mut st = lock(&self.state);
        loop {
            if let Some(h) = st.idle.pop() {
                return Ok(Lease { pool: self, handle: Some(h) });
            }
            if st.live < self.max {
                st.live += 1;
                drop(st);
                return match (self.factory)() {
                    Ok(h) => {
                        self.loads.fetch_add(1, Ordering::Relaxed);
                        Ok(Lease { pool: self, handle: Some(h) })
                    }
                    Err(e) => {
                        lock(&self.state).live -= 1;
                        self.freed.notify_one();
                        Err(Error::Load(format!(
                            "loading another Core ML instance of model `{}` for concurrent \
                             calls failed: {e}",
                            self.model
                        )))
                    }
                };
            }
            ctx.check(crate::ENGINE_NAME)?;
            let wait = match (ctx.remaining(), ctx.cancel_token().is_some()) {
                (Some(left), true) => left.min(CANCEL_POLL),
                (Some(left), false) => left,
                (None, true) => CANCEL_POLL,
                (None, false) => Duration::from_secs(3600),
            };
            st = self
                .freed
                .wait_timeout(st, wait.max(Duration::from_micros(100)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> PoolStats {
        let st = lock(&self.state);
        PoolStats {
            instances: st.live,
            idle: st.idle.len(),
            loads: self.loads.load(Ordering::Relaxed),
            predictions: self.predictions.load(Ordering::Relaxed),
            cancel_requests: self.cancel_requests.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
        }
    }
}
