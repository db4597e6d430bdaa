//! A loaded model and its call path: admission, validation, routing order, the wait loop over
//! the attempts (in `race`), the served report and shadow sampling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use inference_api::{ComputeUnits, Error, IoSchema, NamedTensors, Result, RunReport, RunTimings};
use parking_lot::RwLock;
use telemetry::{ModelSeries, Series};

use crate::LoadReport;
use crate::breaker::{BreakerState, CircuitBreaker};
use crate::deadline::{Estimate, Lane, Reply};
use crate::queue::Admission;
use crate::race::{Call, Judged, Race, Start};
use crate::router::{self, Routing, RunOptions};
use crate::shadow::{Shadow, ShadowJob};

/// One engine serving a model: its lane, breaker and series.
pub(crate) struct Served {
    pub(crate) lane: Arc<Lane>,
    pub(crate) breaker: Arc<CircuitBreaker>,
    pub(crate) series: Arc<Series>,
    pub(crate) compute_units: ComputeUnits,
    pub(crate) tolerance: inference_api::Tolerance,
    /// Latency of this engine's answers, hand-off to reply (queue wait included).
    pub(crate) attempt_est: Estimate,
    /// Time this engine spends on one job once a worker runs it.
    pub(crate) run_est: Estimate,
}

pub(crate) struct ModelInner {
    pub(crate) name: String,
    pub(crate) schema: IoSchema,
    pub(crate) served: Vec<Served>,
    pub(crate) routing: RwLock<Routing>,
    pub(crate) default_deadline: Duration,
    pub(crate) admission_wait: Duration,
    pub(crate) sla: Option<Duration>,
    pub(crate) admission: Admission,
    pub(crate) model_series: Arc<ModelSeries>,
    pub(crate) shadow: Option<(Shadow, usize)>,
    pub(crate) report: LoadReport,
}

/// A model loaded on one or more engines. Cheap to clone; share it across threads.
#[derive(Clone)]
pub struct LoadedModel {
    pub(crate) inner: Arc<ModelInner>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.inner.name)
            .field("engines", &self.engines())
            .finish()
    }
}

impl LoadedModel {
    /// Model name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Declared inputs and outputs.
    pub fn io_schema(&self) -> &IoSchema {
        &self.inner.schema
    }

    /// Engines serving this model, in routing order.
    pub fn engines(&self) -> Vec<String> {
        self.inner.served.iter().map(|s| s.lane.engine_name.clone()).collect()
    }

    /// What happened on each engine at load time.
    pub fn load_report(&self) -> &LoadReport {
        &self.inner.report
    }

    /// Sets the model's routing (per-call options override it).
    pub fn set_routing(&self, routing: Routing) {
        *self.inner.routing.write() = routing;
    }

    /// Breaker state of one engine for this model.
    pub fn breaker_state(&self, engine: &str) -> Option<BreakerState> {
        self.find(engine).map(|s| s.breaker.state())
    }

    /// The breaker of one engine for this model (to read its window, trips, cooldown).
    pub fn breaker(&self, engine: &str) -> Option<Arc<CircuitBreaker>> {
        self.find(engine).map(|s| Arc::clone(&s.breaker))
    }

    /// True when the engine has a healthy instance (false while quarantined and rebuilding).
    pub fn engine_ready(&self, engine: &str) -> bool {
        self.find(engine).is_some_and(|s| s.lane.is_ready())
    }

    /// Workers stuck inside an engine after timeouts.
    pub fn abandoned_workers(&self, engine: &str) -> usize {
        self.find(engine).map_or(0, |s| s.lane.abandoned())
    }

    /// Waits until queued shadow comparisons are done (tests, end of a run).
    pub fn wait_shadow_idle(&self, timeout: Duration) -> bool {
        self.inner.shadow.as_ref().is_none_or(|(s, _)| s.wait_idle(timeout))
    }

    fn find(&self, engine: &str) -> Option<&Served> {
        self.inner.served.iter().find(|s| s.lane.engine_name == engine)
    }

    /// Calls admitted and not yet finished (running or queued); at most the queue capacity.
    pub fn in_flight(&self) -> usize {
        self.inner.admission.in_flight()
    }

    /// Runs the model with the model's routing and default deadline.
    pub fn run(&self, inputs: impl Into<Arc<NamedTensors>>) -> Result<(NamedTensors, RunReport)> {
        self.run_with(inputs, &RunOptions::default())
    }

    /// Runs the model. Order of policies: (1) queue admission (`Overloaded` when full, after
    /// waiting at most [`RunOptions::admission_wait`] if set); (2) input validation against
    /// the schema; (3) routing order; then per engine (4) breaker admission (open: skip to the
    /// next engine, recorded as a `circuit_open` fallback; the last engine in the order is
    /// let through its open breaker, uncounted, unless the routing is `Require`, so no call
    /// is refused while an engine could still answer it), (5) hand-off to the engine's worker
    /// bounded by the call's deadline, (6) output validation, outcome to the breaker and
    /// telemetry; on failure the next engine is tried while time remains. The deadline is a
    /// budget for the whole call: when the engine working on it has not answered by the time
    /// only the next engine's expected time (1.5 x its observed p99 + 5 ms) is left, the
    /// next engine is started beside it (a hedge) and the first good answer wins; the loser is
    /// cancelled. Time a job waits in an engine's queue is never that engine's failure.
    /// (7) Sampled calls are compared against the reference engine off the hot path. Each call
    /// runs in a `tracing` span `infer.run` with fields `model`, `engine`, `outcome` and
    /// `fell_back`.
    pub fn run_with(
        &self,
        inputs: impl Into<Arc<NamedTensors>>,
        opts: &RunOptions,
    ) -> Result<(NamedTensors, RunReport)> {
        let span = tracing::info_span!(
            "infer.run",
            model = %self.inner.name,
            engine = tracing::field::Empty,
            outcome = tracing::field::Empty,
            fell_back = tracing::field::Empty,
        );
        let _entered = span.enter();
        let started = Instant::now();
        let result = self.admitted(inputs.into(), opts, started, &span);
        match &result {
            Ok((_, report)) => {
                span.record("engine", report.engine.as_str());
                span.record("outcome", "ok");
                span.record("fell_back", report.fell_back);
            }
            Err(e) => {
                span.record("outcome", e.kind().as_str());
                self.inner.model_series.record_err(e.kind().as_str(), started.elapsed());
            }
        }
        result
    }

    /// Policies (1)-(3), then the attempts in routing order, hedged, with fallback.
    fn admitted(
        &self,
        inputs: Arc<NamedTensors>,
        opts: &RunOptions,
        started: Instant,
        span: &tracing::Span,
    ) -> Result<(NamedTensors, RunReport)> {
        let m = &*self.inner;
        let budget = opts.deadline.unwrap_or(m.default_deadline);
        let deadline = started + budget;
        let wait = opts.admission_wait.unwrap_or(m.admission_wait).min(budget);
        let _slot = m.admission.admit(started + wait).inspect_err(|_| {
            if let Some(s) = m.served.first() {
                s.series.record_overloaded();
            }
        })?;
        m.schema.validate_inputs(&inputs)?;
        let (order, may_bypass) = self.order(opts)?;
        let call = Call { inputs, started, deadline, budget, cancel: opts.cancel.as_ref(), span };
        let (tx, rx) = crossbeam_channel::bounded::<(usize, Reply)>(order.len());
        let mut race = Race {
            order,
            may_bypass,
            pos: 0,
            pending: Vec::new(),
            tx,
            next_slot: 0,
            checks: 0,
            fallback: None,
            first_reason: None,
            last_err: None,
        };
        loop {
            if race.pending.is_empty() {
                match self.start_next(&call, &mut race, false) {
                    Start::Started => {}
                    Start::Exhausted => {
                        return Err(race.last_err.take().unwrap_or_else(|| {
                            Error::Unavailable(format!("no engine serves model `{}`", m.name))
                        }));
                    }
                    Start::End(e) => return Err(e),
                }
            }
            let hedge_at = race.order.get(race.pos).map(|&j| self.hedge_at(j, &call));
            let check_at = self.stuck_check_at(&race);
            let wake = [hedge_at, check_at].into_iter().flatten().fold(call.deadline, Instant::min);
            match rx.recv_deadline(wake).ok() {
                Some((slot, reply)) => {
                    let Some(k) = race.pending.iter().position(|p| p.slot == slot) else {
                        continue; // an attempt given up earlier
                    };
                    let p = race.pending.swap_remove(k);
                    let (i, slot, hedge) = (p.i, p.slot, p.hedge);
                    match self.judge(p, reply, &call) {
                        Judged::Served { out, timings, queue } => {
                            self.settle_losers(slot, hedge, &mut race);
                            let fell_back = i != race.order[0];
                            let reason = if fell_back { race.first_reason.take() } else { None };
                            return Ok(self.served(i, &call, out, timings, queue, reason));
                        }
                        Judged::End(e) => {
                            self.abandon(&mut race, false);
                            return Err(e);
                        }
                        Judged::Next { kind, message, error } => {
                            race.fallback = Some((i, kind, message));
                            race.last_err = Some(error);
                        }
                    }
                }
                None if Instant::now() >= call.deadline => {
                    let engine = race
                        .pending
                        .first()
                        .map(|p| m.served[p.i].lane.engine_name.clone())
                        .or_else(|| {
                            race.order.last().map(|&j| m.served[j].lane.engine_name.clone())
                        })
                        .unwrap_or_default();
                    self.abandon(&mut race, true);
                    return Err(Error::Timeout {
                        engine,
                        deadline_ms: budget.as_millis() as u64,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                    });
                }
                None => {
                    let now = Instant::now();
                    if hedge_at.is_none_or(|h| now < h) {
                        // A stuck check: is the job still queued behind workers that are all
                        // far past their expected time? Then hedge now, not at the hedge point.
                        race.checks += 1;
                        if !self.queued_behind_stuck(&race) {
                            continue;
                        }
                    }
                    // Only the next engine's expected time is left (or the engine cannot take
                    // the job soon): start the next engine beside the others.
                    if let Start::End(e) = self.start_next(&call, &mut race, true) {
                        self.abandon(&mut race, false);
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The engines this call may try, in order (per-call routing over the model's), and
    /// whether the last of them may be let through its open breaker (not under `Require`).
    fn order(&self, opts: &RunOptions) -> Result<(Vec<usize>, bool)> {
        let m = &*self.inner;
        let routing = match &opts.routing {
            Some(r) => r.clone(),
            None => m.routing.read().clone(),
        };
        let may_bypass = !matches!(routing, Routing::Require(_));
        let order = router::order(&routing, m.served.iter().map(|s| s.lane.engine_name.as_str()))
            .map_err(|unknown| {
            Error::Unavailable(format!(
                "engine `{unknown}` does not serve model `{}` (serving: {}); see the load \
                     report for why it did not load",
                m.name,
                self.engines().join(", ")
            ))
        })?;
        Ok((order, may_bypass))
    }

    /// Policy (7) and the report of a served call.
    fn served(
        &self,
        i: usize,
        call: &Call<'_>,
        out: NamedTensors,
        timings: RunTimings,
        queue: Duration,
        first_reason: Option<String>,
    ) -> (NamedTensors, RunReport) {
        let m = &*self.inner;
        let s = &m.served[i];
        let fell_back = first_reason.is_some();
        if fell_back {
            s.series.record_served_as_fallback();
        }
        self.maybe_shadow(i, &call.inputs, &out);
        let total = call.started.elapsed();
        m.model_series.record_ok(total, queue);
        let mut report = RunReport::new(s.lane.engine_name.clone(), s.compute_units);
        report.fell_back = fell_back;
        report.fallback_reason = first_reason;
        report.timings = timings;
        report.queue_wait = queue;
        report.total = total;
        (out, report)
    }

    fn maybe_shadow(&self, served: usize, inputs: &Arc<NamedTensors>, out: &NamedTensors) {
        let Some((shadow, reference)) = self.inner.shadow.as_ref() else { return };
        if served == *reference || !shadow.sample() {
            return;
        }
        let s = &self.inner.served[served];
        shadow.submit(ShadowJob {
            inputs: Arc::clone(inputs),
            outputs: out.clone(),
            series: Arc::clone(&s.series),
            breaker: Arc::clone(&s.breaker),
            tolerance: shadow.cfg.tolerance.unwrap_or(s.tolerance),
        });
    }
}
