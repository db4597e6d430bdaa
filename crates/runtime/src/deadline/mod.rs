//! Deadlines: each engine instance runs on its own worker threads; callers hand jobs over and
//! wait at most until their deadline, and an instance whose worker stays stuck is quarantined
//! and rebuilt.
//!
//! A [`Lane`] owns one prepared instance of a model on one engine and `workers` threads that
//! take jobs from a bounded crossbeam channel. [`Lane::submit`] hands a job over and returns a
//! [`Ticket`]; the answer comes back on the caller's reply channel (one per call, shared by the
//! engines a hedged call runs on), which the caller waits on with `recv_deadline`: whatever the
//! engine does, the caller is back within the deadline plus the scheduler's wake-up latency.
//!
//! Each job carries a [`RunContext`] with the call's deadline and a cancellation token, and a
//! state (queued, running, done, abandoned) that tells queue wait from engine time. When the
//! caller gives up ([`Lane::give_up`]) the token is cancelled (an engine that polls it, like the
//! CPU engine between ops, stops), a job still queued is marked abandoned and never runs, and the
//! caller learns whether the engine was working on it and since when. Time in the queue is
//! never the engine's failure. An instance is quarantined (its job channel dropped so idle
//! workers exit, workers still inside the engine counted as abandoned until they come back, a
//! fresh instance prepared in the background, jobs still queued handed back unrun so their
//! callers move on) when the router blames a timeout on the engine ([`Lane::quarantine`]) or
//! when a worker has not come back [`LaneConfig::stuck_grace`] after
//! its job was cancelled ([`Lane::watch`], checked at the next submit). While abandoned workers
//! are at the cap, no new instance is built and the lane reports itself quarantined (the router
//! falls back). A panic inside the engine is caught on the worker and becomes
//! [`Error::Runtime`] for that call.

mod estimate;
mod pool;

pub(crate) use estimate::Estimate;
use pool::OutputPool;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use inference_api::{
    CancelToken, Engine, Error, ModelArtifact, NamedTensors, PrepareOptions, PreparedModel,
    RunContext, RunTimings,
};
use parking_lot::Mutex;
use telemetry::Series;

/// What a worker sends back.
pub(crate) struct Reply {
    pub(crate) result: Result<(NamedTensors, RunTimings), Error>,
    /// Time the job waited in the lane's queue.
    pub(crate) queue: Duration,
    /// False when the job never reached the engine (the caller had gone or the deadline had
    /// passed while it waited): not an engine outcome.
    pub(crate) ran: bool,
}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const ABANDONED: u8 = 3;

/// Where a job is: shared by the caller's [`Ticket`] and the worker.
#[derive(Debug, Default)]
struct JobState {
    state: AtomicU8,
    /// When a worker started running it.
    started: OnceLock<Instant>,
}

/// One handed-over job, held by the caller until its answer arrives or the caller gives up.
#[derive(Debug)]
pub(crate) struct Ticket {
    state: Arc<JobState>,
    cancel: CancelToken,
    deadline: Instant,
}

impl Ticket {
    /// True while the job waits in the lane's queue.
    pub(crate) fn is_queued(&self) -> bool {
        self.state.state.load(Ordering::Acquire) == QUEUED
    }
}

/// What the caller learns when it gives up on a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GaveUp {
    /// The job was still queued: it will never run; nothing to blame on the engine.
    Queued,
    /// The engine was working on it since `started` (its token is now cancelled).
    Running {
        /// When the worker started it.
        started: Instant,
        /// Time it had from start to the call's deadline.
        had: Duration,
    },
    /// The answer was already on its way.
    Finished,
}

struct Job {
    inputs: Arc<NamedTensors>,
    enqueued: Instant,
    ctx: RunContext,
    state: Arc<JobState>,
    slot: usize,
    reply: Sender<(usize, Reply)>,
}

/// Liveness of one instance's workers, shared with them.
#[derive(Default)]
struct InstanceState {
    live: usize,
    retired: bool,
}

struct Instance {
    tx: Sender<Job>,
    /// Kept to hand queued jobs back when the instance is quarantined.
    rx: Receiver<Job>,
    model: Arc<dyn PreparedModel>,
    state: Arc<Mutex<InstanceState>>,
    /// Per worker: when its current job started, in ns since the lane's epoch (0: idle).
    busy: Arc<[AtomicU64]>,
}

/// What a worker shares with its lane.
struct WorkerShared {
    engine: String,
    state: Arc<Mutex<InstanceState>>,
    abandoned: Arc<AtomicUsize>,
    stuck_total: Arc<AtomicUsize>,
    series: Arc<Series>,
    pool: Arc<OutputPool>,
    busy: Arc<[AtomicU64]>,
    epoch: Instant,
}

/// Why a job could not be handed to a lane.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// The lane has no healthy instance (quarantined or rebuilding): not the engine's fault
    /// for this call, the router moves on.
    Quarantined(String),
    /// The lane's job channel is full.
    Full,
}

/// Settings of a lane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneConfig {
    pub(crate) workers: usize,
    pub(crate) channel_capacity: usize,
    pub(crate) max_abandoned: usize,
    /// How long a worker may stay inside the engine after its job was cancelled before the
    /// instance is quarantined.
    pub(crate) stuck_grace: Duration,
}

/// A cancelled job whose worker had not come back yet.
struct Watched {
    state: Arc<JobState>,
    since: Instant,
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
    /// Workers stuck in any engine of the runtime that built this lane: the one cap on
    /// abandoned work ([`LaneConfig::max_abandoned`]) is checked against it.
    stuck_total: Arc<AtomicUsize>,
    watched: Mutex<Vec<Watched>>,
    any_watched: AtomicBool,
    /// Origin of the workers' busy timestamps.
    epoch: Instant,
}

impl Lane {
    /// A lane over an already prepared model; `stuck_total` counts stuck workers across every
    /// lane of the runtime (shared by all its lanes).
    pub(crate) fn new(
        engine: Arc<dyn Engine>,
        artifact: ModelArtifact,
        options: PrepareOptions,
        model: Arc<dyn PreparedModel>,
        cfg: LaneConfig,
        series: Arc<Series>,
        stuck_total: Arc<AtomicUsize>,
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
            stuck_total,
            watched: Mutex::new(Vec::new()),
            any_watched: AtomicBool::new(false),
            epoch: Instant::now(),
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
        // One set per worker in use, plus room for sets the callers still hold.
        let pool = Arc::new(OutputPool::new(self.cfg.workers.max(1) + 2));
        let busy: Arc<[AtomicU64]> =
            (0..self.cfg.workers.max(1)).map(|_| AtomicU64::new(0)).collect();
        for i in 0..self.cfg.workers.max(1) {
            state.lock().live += 1;
            let rx = rx.clone();
            let model = Arc::clone(&model);
            let shared = WorkerShared {
                engine: self.engine_name.clone(),
                state: Arc::clone(&state),
                abandoned: Arc::clone(&self.abandoned),
                stuck_total: Arc::clone(&self.stuck_total),
                series: Arc::clone(&self.series),
                pool: Arc::clone(&pool),
                busy: Arc::clone(&busy),
                epoch: self.epoch,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("rt-{}-{i}", self.engine_name))
                .spawn(move || worker(rx, model, i, shared));
            if let Err(e) = spawned {
                state.lock().live -= 1;
                tracing::error!(engine = %self.engine_name, "cannot spawn worker: {e}");
            }
        }
        Instance { tx, rx, model, state, busy }
    }

    /// Hands `inputs` to this lane's workers. The answer arrives on `reply` tagged with
    /// `slot`; `caller` (the call's own token) cancels the job too. Before handing over, a
    /// worker stuck past the grace after a cancellation gets the instance quarantined.
    pub(crate) fn submit(
        self: &Arc<Self>,
        inputs: &Arc<NamedTensors>,
        deadline: Instant,
        budget: Duration,
        caller: Option<&CancelToken>,
        slot: usize,
        reply: &Sender<(usize, Reply)>,
    ) -> Result<Ticket, SubmitError> {
        if self.any_watched.load(Ordering::Acquire) {
            self.check_watched();
        }
        let tx = {
            let g = self.current.lock();
            match g.as_ref() {
                Some(inst) => inst.tx.clone(),
                None => {
                    drop(g);
                    self.maybe_rebuild();
                    return Err(SubmitError::Quarantined(format!(
                        "engine `{}` is quarantined after a timeout ({} worker(s) still stuck); \
                         a fresh instance is being prepared",
                        self.engine_name,
                        self.abandoned()
                    )));
                }
            }
        };
        let cancel = caller.map_or_else(CancelToken::new, CancelToken::child);
        let ctx = RunContext::new().with_deadline(deadline, budget).with_cancel(cancel.clone());
        let state = Arc::new(JobState::default());
        let job = Job {
            inputs: Arc::clone(inputs),
            enqueued: Instant::now(),
            ctx,
            state: Arc::clone(&state),
            slot,
            reply: reply.clone(),
        };
        match tx.try_send(job) {
            Ok(()) => Ok(Ticket { state, cancel, deadline }),
            Err(TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Quarantined(format!(
                "engine `{}` instance was retired",
                self.engine_name
            ))),
        }
    }

    /// The caller stops waiting for `ticket`: its token is cancelled, a queued job will not
    /// run, and the caller learns whether the engine was working on it.
    pub(crate) fn give_up(&self, ticket: &Ticket) -> GaveUp {
        ticket.cancel.cancel();
        let st = &ticket.state;
        match st.state.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => GaveUp::Queued,
            Err(RUNNING) => {
                let started = st.started.get().copied().unwrap_or_else(Instant::now);
                GaveUp::Running { started, had: ticket.deadline.saturating_duration_since(started) }
            }
            Err(_) => GaveUp::Finished,
        }
    }

    /// True when every worker of the current instance has been inside the engine on its
    /// current job for at least `at_least` (nobody will take a queued job soon).
    pub(crate) fn all_busy_for(&self, at_least: Duration) -> bool {
        let g = self.current.lock();
        let Some(inst) = g.as_ref() else { return false };
        let now = self.epoch.elapsed().as_nanos() as u64;
        let at_least = at_least.as_nanos() as u64;
        inst.busy.iter().all(|b| match b.load(Ordering::Acquire) {
            0 => false,
            since => now.saturating_sub(since) >= at_least,
        })
    }

    /// Watches a cancelled job the engine was working on: if its worker has not come back
    /// within the grace when the next job is submitted, the instance is quarantined.
    pub(crate) fn watch(&self, ticket: &Ticket) {
        if ticket.state.state.load(Ordering::Acquire) != RUNNING {
            return;
        }
        self.watched
            .lock()
            .push(Watched { state: Arc::clone(&ticket.state), since: Instant::now() });
        self.any_watched.store(true, Ordering::Release);
    }

    fn check_watched(self: &Arc<Self>) {
        let mut w = self.watched.lock();
        w.retain(|x| x.state.state.load(Ordering::Acquire) == RUNNING);
        let stuck = w.iter().any(|x| x.since.elapsed() >= self.cfg.stuck_grace);
        if stuck {
            w.clear();
        }
        self.any_watched.store(!w.is_empty(), Ordering::Release);
        drop(w);
        if stuck {
            tracing::warn!(
                engine = %self.engine_name,
                "a worker stayed inside the engine {:?} after its call was cancelled",
                self.cfg.stuck_grace
            );
            self.quarantine();
        }
    }

    /// Retires the current instance (if any) and starts a rebuild.
    pub(crate) fn quarantine(self: &Arc<Self>) {
        let retired = self.current.lock().take();
        if let Some(inst) = retired {
            let mut st = inst.state.lock();
            st.retired = true;
            // Workers still alive are inside the engine or about to exit; those that exit
            // decrement again.
            self.abandoned.fetch_add(st.live, Ordering::AcqRel);
            self.stuck_total.fetch_add(st.live, Ordering::AcqRel);
            self.series.record_abandoned_worker(st.live as i64);
            drop(st);
            self.series.record_quarantine();
            // Jobs queued behind the stuck worker are handed back at once (not run), so their
            // callers move to the next engine instead of waiting for their hedge or deadline.
            let msg =
                format!("engine `{}` was quarantined while the call waited", self.engine_name);
            while let Ok(job) = inst.rx.try_recv() {
                let st = &job.state;
                if st
                    .state
                    .compare_exchange(QUEUED, DONE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let reply = Reply {
                        result: Err(Error::Unavailable(msg.clone())),
                        queue: job.enqueued.elapsed(),
                        ran: false,
                    };
                    let _ = job.reply.send((job.slot, reply));
                }
            }
            // Dropping `inst.tx` disconnects the channel: idle workers exit.
        }
        self.maybe_rebuild();
    }

    /// Prepares a fresh instance in the background unless one is being built or too many
    /// workers are still stuck, in any engine of this runtime.
    fn maybe_rebuild(self: &Arc<Self>) {
        if self.stuck_total.load(Ordering::Acquire) >= self.cfg.max_abandoned.max(1) {
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

fn worker(rx: Receiver<Job>, model: Arc<dyn PreparedModel>, index: usize, w: WorkerShared) {
    let WorkerShared { engine, state, abandoned, stuck_total, series, pool, busy, epoch } = w;
    while let Ok(job) = rx.recv() {
        let queue = job.enqueued.elapsed();
        let st = &job.state;
        if let Err(e) = job.ctx.check(&engine) {
            // The caller has gone or the deadline passed while the job waited: no engine
            // time for it, and not the engine's outcome.
            if st.state.compare_exchange(QUEUED, DONE, Ordering::AcqRel, Ordering::Acquire).is_ok()
            {
                let _ = job.reply.send((job.slot, Reply { result: Err(e), queue, ran: false }));
            }
            continue;
        }
        let _ = st.started.set(Instant::now());
        if st.state.compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            continue; // abandoned while queued
        }
        busy[index].store((epoch.elapsed().as_nanos() as u64).max(1), Ordering::Release);
        // Outputs are written into a pooled set (in place when its buffers are free); the
        // caller gets cheap clones and the set goes back to the pool.
        let mut outputs = pool.take(model.io_schema());
        let run = catch_unwind(AssertUnwindSafe(|| {
            model.run_into(&job.inputs, &mut outputs, &job.ctx).map(|timings| {
                let out = outputs.clone();
                (out, timings)
            })
        }));
        if run.is_ok() {
            pool.put(outputs);
        }
        let result = run.unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            Err(Error::Runtime(format!(
                "engine `{engine}` panicked: {msg}; the call was counted as a failure"
            )))
        });
        st.state.store(DONE, Ordering::Release);
        busy[index].store(0, Ordering::Release);
        let _ = job.reply.send((job.slot, Reply { result, queue, ran: true }));
    }
    let mut st = state.lock();
    st.live -= 1;
    if st.retired {
        abandoned.fetch_sub(1, Ordering::AcqRel);
        stuck_total.fetch_sub(1, Ordering::AcqRel);
        series.record_abandoned_worker(-1);
    }
}
