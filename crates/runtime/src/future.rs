//! [`RunFuture`]: `LoadedModel::run_async`, a future over the same call path as `run_with`,
//! usable from any executor (no async runtime in this crate), cancelled when dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use inference_api::{CancelToken, Error, NamedTensors, Result, RunReport};
use parking_lot::Mutex;

use crate::{LoadedModel, RunOptions};

type Answer = Result<(NamedTensors, RunReport)>;

#[derive(Default)]
struct Slot {
    answer: Option<Answer>,
    waker: Option<Waker>,
}

/// The answer of one [`LoadedModel::run_async`] call. Dropping it before it is ready cancels
/// the call: its cancellation token is cancelled, so the engine working on it stops (the CPU
/// engine between ops) and no fallback is tried.
#[must_use = "a RunFuture does nothing useful unless awaited; dropping it cancels the call"]
pub struct RunFuture {
    slot: Arc<Mutex<Slot>>,
    cancel: CancelToken,
}

impl std::fmt::Debug for RunFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFuture").field("ready", &self.slot.lock().answer.is_some()).finish()
    }
}

impl Future for RunFuture {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let mut slot = self.slot.lock();
        match slot.answer.take() {
            Some(answer) => Poll::Ready(answer),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for RunFuture {
    fn drop(&mut self) {
        // After the answer this cancels a finished call's token: harmless.
        self.cancel.cancel();
    }
}

impl LoadedModel {
    /// Runs the model like [`LoadedModel::run_with`] and returns a future of the answer, for
    /// async callers: the blocking wait (deadline-bounded hand-off, hedges, fallback) happens
    /// on a short-lived caller thread, never on the executor's. Works with any executor.
    /// Dropping the future cancels the call (a token passed in `opts` still cancels it too).
    pub fn run_async(&self, inputs: impl Into<Arc<NamedTensors>>, opts: &RunOptions) -> RunFuture {
        let cancel = opts.cancel.as_ref().map_or_else(CancelToken::new, CancelToken::child);
        let slot = Arc::new(Mutex::new(Slot::default()));
        let future = RunFuture { slot: Arc::clone(&slot), cancel: cancel.clone() };
        let model = self.clone();
        let inputs = inputs.into();
        let opts = opts.clone().with_cancel(cancel);
        let deliver = move |answer: Answer| {
            let mut s = slot.lock();
            s.answer = Some(answer);
            if let Some(w) = s.waker.take() {
                drop(s);
                w.wake();
            }
        };
        let spawned = std::thread::Builder::new()
            .name(format!("rt-async-{}", self.name()))
            .spawn(move || deliver(model.run_with(inputs, &opts)));
        if let Err(e) = spawned {
            let mut s = future.slot.lock();
            s.answer = Some(Err(Error::Unavailable(format!(
                "cannot start a thread for the call: {e}; use LoadedModel::run_with"
            ))));
        }
        future
    }
}
