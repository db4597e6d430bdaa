//! The cancel watcher: one thread per engine (started on first use) that watches the
//! [`RunContext`] of every prediction in flight and calls `cmb_model_cancel` on it once its
//! deadline passes or its token is cancelled, so Core ML stops work nobody waits for.
//!
//! A prediction registers for the length of its FFI call ([`Watcher::watch`] returns a guard);
//! the guard's drop unregisters it under the same lock the watcher holds while cancelling, so
//! `cmb_model_cancel` never runs after the prediction returned (and never after its handle is
//! freed), as the contract requires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use inference_api::RunContext;

use crate::ffi::{CancelHook, CancelOutcome};

/// How often the watcher looks at cancellation tokens while a prediction holding one is in
/// flight (tokens have no wake-up; deadlines wake the watcher exactly).
const TOKEN_POLL: Duration = Duration::from_millis(5);

struct Entry {
    hook: CancelHook,
    ctx: RunContext,
    /// When a stop was last requested; `None` while the call goes on.
    requested: Option<Instant>,
    /// Set when the bridge said it cannot stop predictions (macOS 13): the model stops
    /// registering, the runtime abandons such calls instead.
    unsupported: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    next_id: u64,
    thread_started: bool,
    shutdown: bool,
    /// When the watcher thread wakes next on its own (`None`: only when notified).
    next_wake: Option<Instant>,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Watches in-flight predictions and cancels those whose call is over.
pub(crate) struct Watcher {
    inner: Arc<Inner>,
}

impl Default for Watcher {
    fn default() -> Self {
        Watcher { inner: Arc::new(Inner { state: Mutex::default(), wake: Condvar::new() }) }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        lock(&self.inner.state).shutdown = true;
        self.inner.wake.notify_all();
    }
}

/// One registered prediction; unregisters on drop.
pub(crate) struct Watch<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Watch<'_> {
    /// Unregisters and tells whether the watcher asked the bridge to stop this prediction.
    pub(crate) fn finish(self) -> bool {
        let requested =
            lock(&self.inner.state).entries.get(&self.id).is_some_and(|e| e.requested.is_some());
        drop(self);
        requested
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        // Waits for a cancel in progress on this entry: the watcher holds the lock across it.
        lock(&self.inner.state).entries.remove(&self.id);
    }
}

impl Watcher {
    /// Registers a prediction about to run on the handle behind `hook`. `None` when there is
    /// nothing to watch for: no deadline and no token in `ctx`, or the bridge said it cannot
    /// cancel (`unsupported`, set by an earlier request on this model).
    pub(crate) fn watch(
        &self,
        hook: CancelHook,
        ctx: &RunContext,
        unsupported: &Arc<AtomicBool>,
    ) -> Option<Watch<'_>> {
        if (ctx.deadline().is_none() && ctx.cancel_token().is_none())
            || unsupported.load(Ordering::Relaxed)
        {
            return None;
        }
        let mut st = lock(&self.inner.state);
        let id = st.next_id;
        st.next_id += 1;
        st.entries.insert(
            id,
            Entry { hook, ctx: ctx.clone(), requested: None, unsupported: unsupported.clone() },
        );
        // Wake the watcher only when this call needs it earlier than it will wake anyway (in
        // steady serving it is already polling: no context switch per call).
        let now = Instant::now();
        let first_look = match (ctx.deadline(), ctx.cancel_token().is_some()) {
            (Some(d), false) => d,
            (Some(d), true) => d.min(now + TOKEN_POLL),
            (None, _) => now + TOKEN_POLL,
        };
        let notify = st.next_wake.is_none_or(|planned| first_look < planned);
        if !st.thread_started {
            let inner = Arc::clone(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("coreml-cancel".into())
                .spawn(move || watch_loop(&inner));
            // Without the thread, calls still run; they just cannot be stopped early.
            st.thread_started = spawned.is_ok();
        }
        drop(st);
        if notify {
            self.inner.wake.notify_all();
        }
        Some(Watch { inner: &self.inner, id })
    }
}

fn watch_loop(inner: &Inner) {
    let mut st = lock(&inner.state);
    loop {
        if st.shutdown && st.entries.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for e in st.entries.values_mut() {
            if e.unsupported.load(Ordering::Relaxed) {
                continue; // asked once; the bridge cannot stop it, the runtime abandons it
            }
            // A request is repeated every poll until the call returns: one that reached the
            // bridge before its prediction started (between registering and the bridge's
            // start of the call) is a no-op there, by contract.
            let due = e.requested.map_or_else(|| e.ctx.should_stop(), |at| now >= at + TOKEN_POLL);
            if due {
                e.requested = Some(now);
                // Under the lock: the prediction cannot return and free its handle meanwhile.
                if e.hook.cancel() == CancelOutcome::Unsupported {
                    e.unsupported.store(true, Ordering::Relaxed);
                }
            }
            if let Some(at) = e.requested {
                if !e.unsupported.load(Ordering::Relaxed) {
                    let again = at + TOKEN_POLL;
                    next = Some(next.map_or(again, |n| n.min(again)));
                }
                continue;
            }
            let mut at = e.ctx.deadline();
            if e.ctx.cancel_token().is_some() {
                let poll = now + TOKEN_POLL;
                at = Some(at.map_or(poll, |d| d.min(poll)));
            }
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        st.next_wake = next;
        st = match next {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                inner
                    .wake
                    .wait_timeout(st, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0)
            }
            None => inner.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
        };
    }
}
