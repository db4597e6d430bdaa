//! The instance pool: one worker thread per model instance (so one prediction in flight per
//! instance), deadlines that answer the caller at once, quarantine and rebuild of instances
//! whose prediction never returned, and a bound on such abandoned workers.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inference_api::{Error, Result, Tensor};

use crate::ffi::{ModelHandle, OutputRequest, RawOutput};

/// Loads one more instance of the model (used to build the pool and to rebuild it).
pub(crate) type Factory = Box<dyn Fn() -> Result<ModelHandle> + Send + Sync>;

/// Rebuilds stop after this many failures in a row (until one succeeds).
const MAX_REBUILD_FAILURES_IN_ROW: u32 = 3;

/// One prediction's owned inputs (they must outlive a worker that may be abandoned) and the
/// outputs wanted.
pub(crate) struct Job {
    pub(crate) inputs: Vec<(CString, Tensor)>,
    pub(crate) outputs: Vec<OutputRequest>,
}

/// What a worker returns: raw outputs and the time spent inside the bridge.
pub(crate) struct JobOutput {
    pub(crate) raw: Vec<RawOutput>,
    pub(crate) compute: Duration,
}

struct Envelope {
    job: Job,
    reply: mpsc::SyncSender<Result<JobOutput>>,
}

/// Counters and gauges of one model's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Instances able to serve now (idle or busy).
    pub instances: usize,
    /// Predictions handed to a worker.
    pub predictions: u64,
    /// Calls answered with `Error::Timeout`.
    pub timeouts: u64,
    /// Instances rebuilt after a quarantine.
    pub rebuilds: u64,
    /// Rebuild attempts that failed.
    pub rebuild_failures: u64,
    /// Workers still stuck in a prediction nobody waits for.
    pub abandoned_now: usize,
    /// Workers ever abandoned.
    pub abandoned_total: u64,
}

struct Abandoned {
    now: Mutex<usize>,
    cond: Condvar,
    total: AtomicU64,
}

struct Worker {
    jobs: Option<mpsc::Sender<Envelope>>,
    abandoned: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop; it then frees its model handle.
        self.jobs = None;
        if !self.abandoned.load(Ordering::SeqCst)
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

#[derive(Default)]
struct State {
    idle: Vec<Worker>,
    busy: usize,
    rebuilding: usize,
    failures_in_row: u32,
    last_error: Option<String>,
}

struct Shared {
    model: String,
    size: usize,
    max_abandoned: usize,
    factory: Factory,
    state: Mutex<State>,
    cond: Condvar,
    abandoned: Arc<Abandoned>,
    predictions: AtomicU64,
    timeouts: AtomicU64,
    rebuilds: AtomicU64,
    rebuild_failures: AtomicU64,
}

/// A fixed-size set of instances of one model, each served by its own worker thread.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker_main(
    mut handle: ModelHandle,
    jobs: mpsc::Receiver<Envelope>,
    flag: Arc<AtomicBool>,
    abandoned: Arc<Abandoned>,
) {
    while let Ok(env) = jobs.recv() {
        let start = Instant::now();
        let result = handle
            .predict(&env.job.inputs, &env.job.outputs)
            .map(|raw| JobOutput { raw, compute: start.elapsed() });
        // The caller may have given up; then nobody reads the reply.
        let _ = env.reply.send(result);
    }
    drop(handle);
    if flag.load(Ordering::SeqCst) {
        let mut now = lock(&abandoned.now);
        *now = now.saturating_sub(1);
        abandoned.cond.notify_all();
    }
}

fn spawn_worker(model: &str, handle: ModelHandle, abandoned: &Arc<Abandoned>) -> Result<Worker> {
    let (tx, rx) = mpsc::channel();
    let flag = Arc::new(AtomicBool::new(false));
    let (f, a) = (flag.clone(), abandoned.clone());
    let thread = std::thread::Builder::new()
        .name(format!("coreml-{model}"))
        .spawn(move || worker_main(handle, rx, f, a))
        .map_err(|e| Error::Runtime(format!("cannot start a Core ML worker thread: {e}")))?;
    Ok(Worker { jobs: Some(tx), abandoned: flag, thread: Some(thread) })
}

impl Pool {
    /// Builds a pool of `size` instances: `first` plus `size - 1` from `factory`.
    pub(crate) fn new(
        model: &str,
        first: ModelHandle,
        factory: Factory,
        size: usize,
        max_abandoned: usize,
    ) -> Result<Pool> {
        let abandoned = Arc::new(Abandoned {
            now: Mutex::new(0),
            cond: Condvar::new(),
            total: AtomicU64::new(0),
        });
        let mut idle = vec![spawn_worker(model, first, &abandoned)?];
        for _ in 1..size.max(1) {
            idle.push(spawn_worker(model, factory()?, &abandoned)?);
        }
        let shared = Shared {
            model: model.to_string(),
            size: size.max(1),
            max_abandoned,
            factory,
            state: Mutex::new(State { idle, ..State::default() }),
            cond: Condvar::new(),
            abandoned,
            predictions: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            rebuilds: AtomicU64::new(0),
            rebuild_failures: AtomicU64::new(0),
        };
        Ok(Pool { shared: Arc::new(shared) })
    }

    /// Runs `job` on a free instance, answering within `deadline` whatever the bridge does.
    pub(crate) fn run(&self, job: Job, deadline: Duration) -> Result<JobOutput> {
        let shared = &self.shared;
        let start = Instant::now();
        let until = start + deadline;
        let worker = shared.acquire(start, until, deadline)?;
        let (tx, rx) = mpsc::sync_channel(1);
        shared.predictions.fetch_add(1, Ordering::Relaxed);
        let sent =
            worker.jobs.as_ref().is_some_and(|j| j.send(Envelope { job, reply: tx }).is_ok());
        if !sent {
            shared.quarantine(worker);
            return Err(Error::Runtime(format!(
                "the Core ML worker of model `{}` stopped; its instance is being rebuilt",
                shared.model
            )));
        }
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(result) => {
                shared.release(worker);
                result
            }
            Err(RecvTimeoutError::Timeout) => {
                shared.quarantine(worker);
                Err(shared.timeout(start, deadline))
            }
            Err(RecvTimeoutError::Disconnected) => {
                shared.quarantine(worker);
                Err(Error::Runtime(format!(
                    "the Core ML worker of model `{}` died during a prediction; its instance \
                     is being rebuilt",
                    shared.model
                )))
            }
        }
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> PoolStats {
        let s = &self.shared;
        let st = lock(&s.state);
        PoolStats {
            instances: st.idle.len() + st.busy,
            predictions: s.predictions.load(Ordering::Relaxed),
            timeouts: s.timeouts.load(Ordering::Relaxed),
            rebuilds: s.rebuilds.load(Ordering::Relaxed),
            rebuild_failures: s.rebuild_failures.load(Ordering::Relaxed),
            abandoned_now: *lock(&s.abandoned.now),
            abandoned_total: s.abandoned.total.load(Ordering::Relaxed),
        }
    }

    /// Waits until every abandoned worker has returned and freed its instance, or `timeout`
    /// passes. True when none is left.
    pub(crate) fn wait_for_abandoned(&self, timeout: Duration) -> bool {
        let a = &self.shared.abandoned;
        let now = lock(&a.now);
        let (now, _) = a
            .cond
            .wait_timeout_while(now, timeout, |n| *n > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now == 0
    }

    /// Waits until no rebuild is in progress, or `timeout` passes. True when none is.
    pub(crate) fn wait_for_rebuilds(&self, timeout: Duration) -> bool {
        let s = &self.shared;
        let st = lock(&s.state);
        let (st, _) = s
            .cond
            .wait_timeout_while(st, timeout, |st| st.rebuilding > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        st.rebuilding == 0
    }
}

impl Shared {
    fn timeout(&self, start: Instant, deadline: Duration) -> Error {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        Error::Timeout {
            engine: crate::ENGINE_NAME.to_string(),
            deadline_ms: deadline.as_millis() as u64,
            elapsed_ms: start.elapsed().as_millis() as u64,
        }
    }

    fn acquire(
        self: &Arc<Self>,
        start: Instant,
        until: Instant,
        deadline: Duration,
    ) -> Result<Worker> {
        let mut st = lock(&self.state);
        loop {
            if let Some(w) = st.idle.pop() {
                st.busy += 1;
                return Ok(w);
            }
            self.maybe_rebuild(&mut st);
            if st.busy == 0 && st.rebuilding == 0 {
                let abandoned = *lock(&self.abandoned.now);
                let why = st.last_error.clone().unwrap_or_else(|| {
                    format!(
                        "{abandoned} predictions never returned (limit {}); restart the process \
                         or use another engine",
                        self.max_abandoned
                    )
                });
                return Err(Error::Runtime(format!(
                    "no Core ML instance of model `{}` can serve: {why}",
                    self.model
                )));
            }
            let now = Instant::now();
            if now >= until {
                return Err(self.timeout(start, deadline));
            }
            st = self
                .cond
                .wait_timeout(st, until - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn release(&self, worker: Worker) {
        let mut st = lock(&self.state);
        st.busy = st.busy.saturating_sub(1);
        st.idle.push(worker);
        self.cond.notify_one();
    }

    /// Gives up on a worker whose prediction did not come back: it is never reused, its thread
    /// is left to finish (and free its handle) on its own, and a fresh instance is built.
    fn quarantine(self: &Arc<Self>, mut worker: Worker) {
        worker.abandoned.store(true, Ordering::SeqCst);
        {
            let mut now = lock(&self.abandoned.now);
            *now += 1;
        }
        self.abandoned.total.fetch_add(1, Ordering::Relaxed);
        worker.jobs = None;
        worker.thread = None; // detach
        drop(worker);
        let mut st = lock(&self.state);
        st.busy = st.busy.saturating_sub(1);
        self.maybe_rebuild(&mut st);
        self.cond.notify_all();
    }

    fn maybe_rebuild(self: &Arc<Self>, st: &mut State) {
        let live = st.idle.len() + st.busy + st.rebuilding;
        let abandoned = *lock(&self.abandoned.now);
        if live >= self.size
            || abandoned > self.max_abandoned
            || st.failures_in_row >= MAX_REBUILD_FAILURES_IN_ROW
        {
            return;
        }
        st.rebuilding += 1;
        let shared = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("coreml-rebuild-{}", self.model))
            .spawn(move || shared.rebuild());
        if let Err(e) = spawned {
            st.rebuilding -= 1;
            st.failures_in_row += 1;
            st.last_error = Some(format!("cannot start a rebuild thread: {e}"));
        }
    }

    fn rebuild(&self) {
        let result = (self.factory)().and_then(|h| spawn_worker(&self.model, h, &self.abandoned));
        let mut st = lock(&self.state);
        st.rebuilding = st.rebuilding.saturating_sub(1);
        match result {
            Ok(worker) => {
                st.idle.push(worker);
                st.failures_in_row = 0;
                self.rebuilds.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                st.failures_in_row += 1;
                st.last_error = Some(format!("rebuilding an instance failed: {e}"));
                self.rebuild_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.cond.notify_all();
    }
}
