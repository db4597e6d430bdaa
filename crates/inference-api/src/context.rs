//! [`RunContext`]: the deadline and cancellation token that travel with one call into the
//! engine, so an engine that can stop early (the CPU engine between ops) does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A shared flag that cancels the calls holding it. Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    own: Arc<AtomicBool>,
    /// The flags of the token this one was made from, and of its ancestors.
    ancestors: Vec<Arc<AtomicBool>>,
}

impl CancelToken {
    /// A fresh, not-cancelled token.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// A token cancelled when either it or `self` (or any token `self` was made from) is;
    /// cancelling the child leaves `self` alone (the runtime gives up on one attempt without
    /// cancelling the caller's token).
    pub fn child(&self) -> CancelToken {
        let mut ancestors = Vec::with_capacity(self.ancestors.len() + 1);
        ancestors.extend(self.ancestors.iter().cloned());
        ancestors.push(Arc::clone(&self.own));
        CancelToken { own: Arc::default(), ancestors }
    }

    /// Cancels every call holding a clone of this token (and its children). Idempotent.
    pub fn cancel(&self) {
        self.own.store(true, Ordering::Release);
    }

    /// True once [`CancelToken::cancel`] was called on a clone of this token or its parent.
    pub fn is_cancelled(&self) -> bool {
        self.own.load(Ordering::Acquire) || self.ancestors.iter().any(|p| p.load(Ordering::Acquire))
    }
}

/// What travels with one call into [`crate::PreparedModel::run`]: an optional deadline and an
/// optional cancellation token. Engines poll [`RunContext::check`] between units of work and
/// return its error when the caller is gone.
///
/// ```
/// use std::time::Duration;
/// use inference_api::{CancelToken, RunContext};
///
/// let token = CancelToken::new();
/// let ctx = RunContext::new().with_timeout(Duration::from_secs(2)).with_cancel(token.clone());
/// assert!(ctx.check("cpu").is_ok());
/// token.cancel();
/// assert_eq!(ctx.check("cpu").unwrap_err().kind(), "cancelled");
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunContext {
    deadline: Option<(Instant, Duration)>,
    cancel: Option<CancelToken>,
}

impl RunContext {
    /// No deadline, no cancellation: the call runs to completion.
    pub fn new() -> RunContext {
        RunContext::default()
    }

    /// Sets the deadline to `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> RunContext {
        let now = Instant::now();
        RunContext { deadline: Some((now.checked_add(timeout).unwrap_or(now), timeout)), ..self }
    }

    /// Sets an absolute deadline; `budget` is the whole allowance it stands for (reported in
    /// [`Error::Timeout`]).
    pub fn with_deadline(self, deadline: Instant, budget: Duration) -> RunContext {
        RunContext { deadline: Some((deadline, budget)), ..self }
    }

    /// Attaches a cancellation token.
    pub fn with_cancel(self, token: CancelToken) -> RunContext {
        RunContext { cancel: Some(token), ..self }
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.map(|d| d.0)
    }

    /// Time left before the deadline (zero when past it), or `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|(d, _)| d.saturating_duration_since(Instant::now()))
    }

    /// The cancellation token, if any.
    pub fn cancel_token(&self) -> Option<&CancelToken> {
        self.cancel.as_ref()
    }

    /// True when the token was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    /// True when the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.deadline.is_some_and(|(d, _)| Instant::now() >= d)
    }

    /// True when the engine should stop: cancelled or past the deadline.
    pub fn should_stop(&self) -> bool {
        self.is_cancelled() || self.is_expired()
    }

    /// `Ok` while the call should go on; otherwise [`Error::Cancelled`] or [`Error::Timeout`]
    /// naming `engine`.
    pub fn check(&self, engine: &str) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::Cancelled { engine: engine.to_string() });
        }
        if let Some((d, budget)) = self.deadline {
            let now = Instant::now();
            if now >= d {
                let started = d.checked_sub(budget).unwrap_or(d);
                return Err(Error::Timeout {
                    engine: engine.to_string(),
                    deadline_ms: budget.as_millis() as u64,
                    elapsed_ms: now.saturating_duration_since(started).as_millis() as u64,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_deadline_is_a_timeout_and_no_context_never_stops() {
        let ctx = RunContext::new().with_timeout(Duration::ZERO);
        let e = ctx.check("x").unwrap_err();
        assert!(matches!(e, Error::Timeout { deadline_ms: 0, .. }), "{e}");
        assert!(ctx.should_stop());
        let free = RunContext::new();
        assert!(!free.should_stop() && free.check("x").is_ok() && free.remaining().is_none());
    }

    #[test]
    fn a_child_token_follows_its_parent_but_not_the_other_way() {
        let parent = CancelToken::new();
        let child = parent.child();
        child.cancel();
        assert!(child.is_cancelled() && !parent.is_cancelled());
        let child2 = parent.child();
        let grandchild = child2.child();
        parent.cancel();
        assert!(child2.is_cancelled());
        assert!(grandchild.is_cancelled(), "cancellation reaches every generation");
    }
}
