//! Routing policy: which engines a call may use, in which order.

use std::time::Duration;

use inference_api::{CancelToken, EngineId};

/// How a call picks its engine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Routing {
    /// The model's engine order (builder order, manifest's preferred backends first).
    #[default]
    Auto,
    /// Try this engine first, then fall back along the model's order; the run report says
    /// why it fell back. While the engine's breaker is open, calls go straight to the next.
    Prefer(EngineId),
    /// Only this engine: its error (including `CircuitOpen`) is the call's error.
    Require(EngineId),
}

/// Per-call options of [`crate::LoadedModel::run_with`]; build with [`RunOptions::default`],
/// [`RunOptions::deadline`] and the `with_` methods.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// Routing for this call; `None` uses the model's routing.
    pub routing: Option<Routing>,
    /// Deadline of the whole call (all attempts); `None` uses the manifest's `timeout_ms`.
    pub deadline: Option<Duration>,
    /// Cancels the call from outside: the engine working on it stops early (the CPU engine
    /// between ops) and the call returns `Error::Cancelled`.
    pub cancel: Option<CancelToken>,
    /// How long the call may wait for a slot when the model's queue is full before it is
    /// `Overloaded` (bounded by the deadline); `None` uses the runtime's
    /// [`crate::RuntimeBuilder::admission_wait`].
    pub admission_wait: Option<Duration>,
}

impl RunOptions {
    /// Options with a deadline.
    pub fn deadline(d: Duration) -> RunOptions {
        RunOptions { deadline: Some(d), ..Default::default() }
    }

    /// Sets the deadline.
    pub fn with_deadline(mut self, d: Duration) -> RunOptions {
        self.deadline = Some(d);
        self
    }

    /// Attaches a cancellation token.
    pub fn with_cancel(mut self, token: CancelToken) -> RunOptions {
        self.cancel = Some(token);
        self
    }

    /// Waits at most `wait` for a slot in a full queue (bounded by the deadline).
    pub fn with_admission_wait(mut self, wait: Duration) -> RunOptions {
        self.admission_wait = Some(wait);
        self
    }

    /// Sets the routing.
    pub fn with_routing(mut self, r: Routing) -> RunOptions {
        self.routing = Some(r);
        self
    }
}

/// The order of lane indices a call tries, or the name of an unknown engine.
pub(crate) fn order<'a>(
    routing: &Routing,
    names: impl Iterator<Item = &'a str> + Clone,
) -> Result<Vec<usize>, EngineId> {
    let all: Vec<usize> = (0..names.clone().count()).collect();
    let find = |e: &str| names.clone().position(|n| n == e);
    match routing {
        Routing::Auto => Ok(all),
        Routing::Prefer(e) => {
            let i = find(e.as_str()).ok_or_else(|| e.clone())?;
            let mut v = vec![i];
            v.extend(all.into_iter().filter(|&j| j != i));
            Ok(v)
        }
        Routing::Require(e) => find(e.as_str()).map(|i| vec![i]).ok_or_else(|| e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders() {
        let names = ["a", "b", "c"];
        let it = names.iter().copied();
        assert_eq!(order(&Routing::Auto, it.clone()).unwrap(), vec![0, 1, 2]);
        assert_eq!(order(&Routing::Prefer("c".into()), it.clone()).unwrap(), vec![2, 0, 1]);
        assert_eq!(order(&Routing::Require("b".into()), it.clone()).unwrap(), vec![1]);
        assert_eq!(order(&Routing::Require("z".into()), it).unwrap_err(), "z");
    }
}
