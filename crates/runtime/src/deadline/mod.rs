//! Deadlines: each engine instance runs on its own worker threads; callers wait at most until
//! their deadline, then get `Timeout` while the stuck instance is quarantined and rebuilt.
//!
//! A [`Lane`] owns one prepared instance of a model on one engine and `workers` threads that
//! take jobs from a bounded crossbeam channel. The caller hands a job over and waits on a
//! reply channel with `recv_deadline`: whatever the engine does, the caller is back within the
//! deadline plus the scheduler's wake-up latency. On a timeout the instance is retired: its
//! job channel is dropped (idle workers exit), workers still inside the engine are counted as
//! abandoned until they come back, and a fresh instance is prepared in the background. Each job
//! carries a [`RunContext`] with the call's deadline and a cancellation token that the caller
//! cancels when it gives up, so an engine that polls it (the CPU engine, between ops) stops
//! instead of burning the CPU for nobody. While
//! abandoned workers are at the cap, no new instance is built and the lane reports itself
//! quarantined (the router falls back). A panic inside the engine is caught on the worker and
//! becomes [`Error::Runtime`] for that call.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use inference_api::{
    CancelToken, Engine, Error, ModelArtifact, NamedTensors, PrepareOptions, PreparedModel,
    RunContext, RunTimings,
};
use parking_lot::Mutex;
use telemetry::Series;

/// What a worker sends back.
pub(crate) struct Reply {
    pub(crate) result: Result<(NamedTensors, RunTimings), Error>,
    pub(crate) queue: Duration,
}

struct Job {
    inputs: Arc<NamedTensors>,
    enqueued: Instant,
    ctx: RunContext,
    reply: Sender<Reply>,
}

/// Liveness of one instance's workers, shared with them.
#[derive(Default)]
struct InstanceState {
    live: usize,
    retired: bool,
}

struct Instance {
    tx: Sender<Job>,
    model: Arc<dyn PreparedModel>,
    state: Arc<Mutex<InstanceState>>,
}

/// Why an attempt on a lane failed.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// The lane has no healthy instance (quarantined or rebuilding): not the engine's fault
    /// for this call, the router moves on.
    Quarantined(String),
    /// The lane's job channel is full.
    Full,
    /// The engine answered with an error, panicked, or missed the deadline.
    Engine(Error),
}

/// Settings of a lane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneConfig {
    pub(crate) workers: usize,
    pub(crate) channel_capacity: usize,
    pub(crate) max_abandoned: usize,
}

/// One model instance on one engine, with its workers.
pub(crate) struct Lane {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) engine_name: String,
    artifact: ModelArtifact,
    options: PrepareOptions,
    cfg: LaneConfig,
    series: Arc<Series>,
    current: Mutex<Option<Instance>>,
    rebuilding: Arc<AtomicBool>,
    abandoned: Arc<AtomicUsize>,
}

impl Lane {
    /// A lane over an already prepared model.
    pub(crate) fn new(
        engine: Arc<dyn Engine>,
        artifact: ModelArtifact,
        options: PrepareOptions,
        model: Arc<dyn PreparedModel>,
        cfg: LaneConfig,
        series: Arc<Series>,
    ) -> Arc<Lane> {
        let engine_name = engine.name().to_string();
        let lane = Arc::new(Lane {
            engine,
            engine_name,
            artifact,
            options,
            cfg,
            series,
            current: Mutex::new(None),
            rebuilding: Arc::new(AtomicBool::new(false)),
            abandoned: Arc::new(AtomicUsize::new(0)),
        });
        let inst = lane.spawn_instance(model);
        *lane.current.lock() = Some(inst);
        lane
    }

    /// Workers currently stuck inside the engine.
    pub(crate) fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::Acquire)
    }

    /// True when a healthy instance is serving.
    pub(crate) fn is_ready(&self) -> bool {
        self.current.lock().is_some()
    }

    /// The prepared model currently serving, if any.
    pub(crate) fn prepared(&self) -> Option<Arc<dyn PreparedModel>> {
        self.current.lock().as_ref().map(|i| Arc::clone(&i.model))
    }

    fn spawn_instance(&self, model: Arc<dyn PreparedModel>) -> Instance {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(self.cfg.channel_capacity.max(1));
        let state = Arc::new(Mutex::new(InstanceState::default()));
        for i in 0..self.cfg.workers.max(1) {
            state.lock().live += 1;
            let rx = rx.clone();
            let model = Arc::clone(&model);
            let state2 = Arc::clone(&state);
            let abandoned = Arc::clone(&self.abandoned);
            let series = Arc::clone(&self.series);
            let name = self.engine_name.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("rt-{name}-{i}"))
                .spawn(move || worker(rx, model, name, state2, abandoned, series));
            if let Err(e) = spawned {
                state.lock().live -= 1;
                tracing::error!(engine = %self.engine_name, "cannot spawn worker: {e}");
            }
        }
        Instance { tx, model, state }
    }

    /// Runs `inputs` on this lane, waiting at most until `deadline`.
    pub(crate) fn call(
        self: &Arc<Self>,
        inputs: &Arc<NamedTensors>,
        started: Instant,
        deadline: Instant,
        deadline_ms: u64,
        caller: Option<&CancelToken>,
    ) -> Result<Reply, AttemptError> {
        let tx = {
            let g = self.current.lock();
            match g.as_ref() {
                Some(inst) => inst.tx.clone(),
                None => {
                    drop(g);
                    self.maybe_rebuild();
                    return Err(AttemptError::Quarantined(format!(
                        "engine `{}` is quarantined after a timeout ({} worker(s) still stuck); \
                         a fresh instance is being prepared",
                        self.engine_name,
                        self.abandoned()
                    )));
                }
            }
        };
        let (rtx, rrx) = crossbeam_channel::bounded::<Reply>(1);
        let cancel = caller.map_or_else(CancelToken::new, CancelToken::child);
        let ctx = RunContext::new()
            .with_deadline(deadline, Duration::from_millis(deadline_ms))
            .with_cancel(cancel.clone());
        let job = Job { inputs: Arc::clone(inputs), enqueued: Instant::now(), ctx, reply: rtx };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(AttemptError::Full),
            Err(TrySendError::Disconnected(_)) => {
                return Err(AttemptError::Quarantined(format!(
                    "engine `{}` instance was retired",
                    self.engine_name
                )));
            }
        }
        drop(tx);
        match rrx.recv_deadline(deadline) {
            Ok(reply) => Ok(reply),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                // Nobody waits any more: an engine that polls its context stops early.
                cancel.cancel();
                self.quarantine();
                let elapsed = started.elapsed();
                Err(AttemptError::Engine(Error::Timeout {
                    engine: self.engine_name.clone(),
                    deadline_ms,
                    elapsed_ms: elapsed.as_millis() as u64,
                }))
            }
        }
    }

    /// Retires the current instance (if any) and starts a rebuild.
    fn quarantine(self: &Arc<Self>) {
        let retired = self.current.lock().take();
        if let Some(inst) = retired {
            let mut st = inst.state.lock();
            st.retired = true;
            // Workers still alive are inside the engine or about to exit; those that exit
            // decrement again.
            self.abandoned.fetch_add(st.live, Ordering::AcqRel);
            self.series.record_abandoned_worker(st.live as i64);
            drop(st);
            self.series.record_quarantine();
            // Dropping `inst.tx` disconnects the channel: idle workers exit.
        }
        self.maybe_rebuild();
    }

    /// Prepares a fresh instance in the background unless one is being built or too many
    /// workers are still stuck.
    fn maybe_rebuild(self: &Arc<Self>) {
        if self.abandoned() >= self.cfg.max_abandoned.max(1) {
            return;
        }
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return;
        }
        let lane = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("rt-rebuild-{}", self.engine_name))
            .spawn(move || {
                let t0 = Instant::now();
                match lane.engine.prepare(&lane.artifact, &lane.options) {
                    Ok(model) => {
                        lane.series.record_load(Ok(t0.elapsed()));
                        let inst = lane.spawn_instance(model);
                        let mut cur = lane.current.lock();
                        if cur.is_none() {
                            *cur = Some(inst);
                        }
                    }
                    Err(e) => lane.series.record_load(Err(&e.to_string())),
                }
                lane.rebuilding.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.rebuilding.store(false, Ordering::Release);
        }
    }
}

fn worker(
    rx: Receiver<Job>,
    model: Arc<dyn PreparedModel>,
    engine: String,
    state: Arc<Mutex<InstanceState>>,
    abandoned: Arc<AtomicUsize>,
    series: Arc<Series>,
) {
    while let Ok(job) = rx.recv() {
        let queue = job.enqueued.elapsed();
        let result = if let Err(e) = job.ctx.check(&engine) {
            // The caller has already given up: do not spend engine time on it.
            Err(e)
        } else {
            catch_unwind(AssertUnwindSafe(|| model.run_timed(&job.inputs, &job.ctx)))
                .unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".into());
                    Err(Error::Runtime(format!(
                        "engine `{engine}` panicked: {msg}; the call was counted as a failure"
                    )))
                })
        };
        let _ = job.reply.send(Reply { result, queue });
    }
    let mut st = state.lock();
    st.live -= 1;
    if st.retired {
        abandoned.fetch_sub(1, Ordering::AcqRel);
        series.record_abandoned_worker(-1);
    }
}
