//! A loaded model and the call path: admission, routing, breaker, deadline, telemetry, shadow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use inference_api::{
    CancelToken, ComputeUnits, Error, ErrorKind, IoSchema, NamedTensors, Result, RunReport,
    RunTimings,
};
use parking_lot::RwLock;
use telemetry::{Latencies, ModelSeries, Series};

use crate::LoadReport;
use crate::breaker::{BreakerState, CircuitBreaker, Outcome, Permit};
use crate::deadline::{Estimate, GaveUp, Lane, Reply, SubmitError, Ticket};
use crate::queue::Admission;
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
    /// next engine, recorded as a `circuit_open` fallback), (5) hand-off to the engine's worker
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
        let order = self.order(opts)?;
        let call = Call { inputs, started, deadline, budget, cancel: opts.cancel.as_ref(), span };
        let (tx, rx) = crossbeam_channel::bounded::<(usize, Reply)>(order.len());
        let mut race = Race {
            order,
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

    /// The engines this call may try, in order (per-call routing over the model's).
    fn order(&self, opts: &RunOptions) -> Result<Vec<usize>> {
        let m = &*self.inner;
        let routing = match &opts.routing {
            Some(r) => r.clone(),
            None => m.routing.read().clone(),
        };
        router::order(&routing, m.served.iter().map(|s| s.lane.engine_name.as_str())).map_err(
            |unknown| {
                Error::Unavailable(format!(
                    "engine `{unknown}` does not serve model `{}` (serving: {}); see the load \
                     report for why it did not load",
                    m.name,
                    self.engines().join(", ")
                ))
            },
        )
    }

    /// When the next engine `j` must start for its answer to fit: the deadline minus a reserve
    /// of 1.5 times its observed p99 plus 5 ms (the model's SLA stands in for the p99 before it
    /// has answered), at least a tenth of the budget (room for the scheduler on a loaded
    /// machine) and at most half (the engine working on the call keeps half the budget).
    fn hedge_at(&self, j: usize, call: &Call<'_>) -> Instant {
        let m = &*self.inner;
        let reserve = match m.served[j].attempt_est.p99().or(m.sla) {
            Some(p99) => p99 + p99 / 2 + Duration::from_millis(5),
            None => call.budget / 10,
        };
        let reserve = reserve.clamp(call.budget / 10, call.budget / 2);
        call.deadline.checked_sub(reserve).unwrap_or(call.started)
    }

    /// Policies (4)-(5) for the next engine in order that can take the call: breaker
    /// admission and the hand-off. Engines that cannot (breaker open, quarantined, queue
    /// full) are recorded as fallbacks and skipped. `hedge` marks an engine started beside
    /// others still working.
    fn start_next<'s>(&'s self, call: &Call<'_>, race: &mut Race<'s>, hedge: bool) -> Start {
        let m = &*self.inner;
        while let Some(&j) = race.order.get(race.pos) {
            race.pos += 1;
            let s = &m.served[j];
            let engine = &s.lane.engine_name;
            if let Some((from, kind, msg)) = race.fallback.take() {
                let from = &m.served[from].lane.engine_name;
                m.model_series.record_fallback(from, engine, kind);
                race.first_reason.get_or_insert_with(|| format!("{from}: {msg}"));
            } else if hedge && let Some(p) = race.pending.first() {
                let from = &m.served[p.i].lane.engine_name;
                let waited = p.handed.elapsed().as_millis();
                m.model_series.record_fallback(from, engine, "hedge");
                m.model_series.record_hedge();
                race.first_reason.get_or_insert_with(|| {
                    format!("{from}: no answer after {waited} ms, hedged on `{engine}`")
                });
            }
            // The call's `infer.run` span names the last engine tried.
            call.span.record("engine", engine.as_str());
            let permit = match s.breaker.try_acquire() {
                Ok(p) => p,
                Err(rej) => {
                    s.series.record_circuit_open();
                    let e = Error::CircuitOpen {
                        engine: engine.clone(),
                        retry_after_ms: rej.retry_after.as_millis() as u64,
                    };
                    race.skip(j, "circuit_open", e);
                    continue;
                }
            };
            if Instant::now() >= call.deadline {
                permit.cancel();
                return Start::End(Error::Timeout {
                    engine: engine.clone(),
                    deadline_ms: call.budget.as_millis() as u64,
                    elapsed_ms: call.started.elapsed().as_millis() as u64,
                });
            }
            if call.cancel.is_some_and(CancelToken::is_cancelled) {
                permit.cancel();
                return Start::End(Error::Cancelled { engine: engine.clone() });
            }
            let slot = race.next_slot;
            race.next_slot += 1;
            let handed = Instant::now();
            match s.lane.submit(
                &call.inputs,
                call.deadline,
                call.budget,
                call.cancel,
                slot,
                &race.tx,
            ) {
                Ok(ticket) => {
                    let hedge = hedge && !race.pending.is_empty();
                    race.pending.push(InFlight { i: j, slot, ticket, permit, handed, hedge });
                    return Start::Started;
                }
                Err(SubmitError::Quarantined(msg)) => {
                    permit.cancel();
                    race.fallback = Some((j, "quarantined", msg.clone()));
                    race.last_err = Some(Error::Unavailable(msg));
                }
                Err(SubmitError::Full) => {
                    permit.cancel();
                    s.series.record_overloaded();
                    let e = Error::Overloaded {
                        model: m.name.clone(),
                        capacity: m.admission.capacity(),
                    };
                    race.skip(j, "overloaded", e);
                }
            }
        }
        Start::Exhausted
    }

    /// Policy (6): what one answer means (served, the call ends, or the next engine), with
    /// the outcome settled on the engine's breaker and series.
    fn judge(&self, p: InFlight<'_>, reply: Reply, call: &Call<'_>) -> Judged {
        let m = &*self.inner;
        let s = &m.served[p.i];
        let engine = &s.lane.engine_name;
        let attempt = p.handed.elapsed();
        let caller_cancelled = call.cancel.is_some_and(CancelToken::is_cancelled);
        if !reply.ran {
            // Never reached the engine (the deadline passed or the caller left while it
            // waited in the queue): not the engine's outcome.
            p.permit.cancel();
            let e = match reply.result {
                Err(e) => e,
                Ok(_) => Error::Runtime(format!("engine `{engine}` answered a job it skipped")),
            };
            let kind = if e.kind() == ErrorKind::Unavailable { "quarantined" } else { "queue" };
            return if caller_cancelled { Judged::End(e) } else { Judged::next(kind, e) };
        }
        let checked =
            reply.result.and_then(|(out, t)| check_outputs(&m.schema, engine, out).map(|o| (o, t)));
        match checked {
            Ok((out, timings)) => {
                // Slow means the engine's own time over the SLA: queue wait is not its doing.
                let outcome = s.breaker.classify(true, attempt.saturating_sub(reply.queue), m.sla);
                p.permit.record(outcome);
                s.series.record_success(&Latencies {
                    total: attempt,
                    queue: reply.queue,
                    marshal_in: timings.marshal_in,
                    compute: timings.compute,
                    marshal_out: timings.marshal_out,
                });
                if outcome == Outcome::Slow {
                    s.series.record_slow();
                }
                s.attempt_est.record(attempt);
                s.run_est.record(attempt.saturating_sub(reply.queue));
                Judged::Served { out, timings, queue: reply.queue }
            }
            Err(e) if e.kind() == ErrorKind::Cancelled && caller_cancelled => {
                // The caller cancelled: not the engine's failure, no fallback.
                p.permit.cancel();
                Judged::End(e)
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {
                // The engine stopped itself at the deadline: its failure only when it ran
                // longer than it normally needs (not when it started late from its queue).
                if self.at_fault(p.i, attempt.saturating_sub(reply.queue)) {
                    p.permit.record(Outcome::Failure);
                    s.series.record_failure("timeout", attempt, reply.queue);
                } else {
                    p.permit.cancel();
                }
                Judged::next("timeout", e)
            }
            Err(e) => {
                p.permit.record(Outcome::Failure);
                s.series.record_failure(e.kind().as_str(), attempt, reply.queue);
                Judged::next(e.kind().as_str(), e)
            }
        }
    }

    /// When to look whether the first attempt's job is stuck in its queue: every stuck
    /// threshold of its engine (2 x its run p99 + 10 ms) while it is queued and another engine
    /// is left to start; `None` otherwise (and before the engine has answered once).
    fn stuck_check_at(&self, race: &Race<'_>) -> Option<Instant> {
        let p = race.pending.first().filter(|_| race.pending.len() == 1)?;
        if race.pos >= race.order.len() || !p.ticket.is_queued() {
            return None;
        }
        let th = self.stuck_threshold(p.i)?;
        Some(p.handed + th * (race.checks + 1))
    }

    /// True when the first attempt's job is still queued and every worker of its engine has
    /// been on its current job for longer than the engine's stuck threshold.
    fn queued_behind_stuck(&self, race: &Race<'_>) -> bool {
        let Some(p) = race.pending.first() else { return false };
        let Some(th) = self.stuck_threshold(p.i) else { return false };
        p.ticket.is_queued() && self.inner.served[p.i].lane.all_busy_for(th)
    }

    fn stuck_threshold(&self, i: usize) -> Option<Duration> {
        self.inner.served[i].run_est.p99().map(|p99| p99 * 2 + Duration::from_millis(10))
    }

    /// True when engine `i` spent `ran` on one job, well over what it needs (twice its
    /// observed p99 plus 10 ms), or has never answered yet: a timeout is then the engine's
    /// own, not time lost waiting for it.
    fn at_fault(&self, i: usize, ran: Duration) -> bool {
        self.inner.served[i]
            .run_est
            .p99()
            .is_none_or(|p99| ran > p99 * 2 + Duration::from_millis(10))
    }

    /// Another engine answered: the attempts still in flight are cancelled. One started before
    /// the winner and caught running far longer than it needs was overtaken by a hedge: the
    /// engine's timeout, and its instance is quarantined (queued calls move on). Other workers
    /// caught inside an engine are watched, and their instance quarantined if they do not
    /// come back within the grace.
    fn settle_losers(&self, winner_slot: usize, winner_hedge: bool, race: &mut Race<'_>) {
        let m = &*self.inner;
        if winner_hedge {
            m.model_series.record_hedge_win();
        }
        for q in std::mem::take(&mut race.pending) {
            let s = &m.served[q.i];
            match s.lane.give_up(&q.ticket) {
                GaveUp::Running { started, .. } => {
                    m.model_series.record_hedge_cancellation();
                    if q.slot < winner_slot && self.at_fault(q.i, started.elapsed()) {
                        // Far past its p99: stuck. Quarantine now, so calls queued behind it
                        // move on at once.
                        q.permit.record(Outcome::Failure);
                        let queue = started.saturating_duration_since(q.handed);
                        s.series.record_failure("timeout", q.handed.elapsed(), queue);
                        s.lane.quarantine();
                    } else {
                        q.permit.cancel();
                        s.lane.watch(&q.ticket);
                    }
                }
                GaveUp::Queued => {
                    m.model_series.record_hedge_cancellation();
                    q.permit.cancel();
                }
                GaveUp::Finished => q.permit.cancel(),
            }
        }
    }

    /// The caller stops waiting for every attempt in flight. At the deadline, an engine caught
    /// running a job longer than it needs timed out on its own compute: the breaker counts a
    /// failure and the instance is quarantined (its worker may never come back). A job still
    /// queued, or started too late to finish, is not the engine's failure: its worker is only
    /// watched, so a busy last-resort engine is never quarantined.
    fn abandon(&self, race: &mut Race<'_>, at_deadline: bool) {
        let m = &*self.inner;
        for q in std::mem::take(&mut race.pending) {
            let s = &m.served[q.i];
            match s.lane.give_up(&q.ticket) {
                GaveUp::Running { started, had } if at_deadline && self.at_fault(q.i, had) => {
                    q.permit.record(Outcome::Failure);
                    let queue = started.saturating_duration_since(q.handed);
                    s.series.record_failure("timeout", q.handed.elapsed(), queue);
                    s.lane.quarantine();
                }
                GaveUp::Running { .. } => {
                    q.permit.cancel();
                    s.lane.watch(&q.ticket);
                }
                GaveUp::Queued | GaveUp::Finished => q.permit.cancel(),
            }
        }
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

/// One call's fixed facts, shared by its attempts.
struct Call<'a> {
    inputs: Arc<NamedTensors>,
    started: Instant,
    deadline: Instant,
    budget: Duration,
    cancel: Option<&'a CancelToken>,
    /// The call's `infer.run` span; each attempt records its engine on it.
    span: &'a tracing::Span,
}

/// One attempt handed to an engine and not yet answered.
struct InFlight<'s> {
    /// Index of the engine in `served`.
    i: usize,
    /// Tag of its answers on the call's reply channel; increases in start order.
    slot: usize,
    ticket: Ticket,
    permit: Permit<'s>,
    handed: Instant,
    /// Started beside other attempts still in flight.
    hedge: bool,
}

/// The attempts of one call.
struct Race<'s> {
    order: Vec<usize>,
    /// Next position in `order` to start.
    pos: usize,
    pending: Vec<InFlight<'s>>,
    tx: Sender<(usize, Reply)>,
    next_slot: usize,
    /// Stuck checks done for the first attempt.
    checks: u32,
    /// The last engine that did not serve, why (a label) and its message.
    fallback: Option<(usize, &'static str, String)>,
    first_reason: Option<String>,
    last_err: Option<Error>,
}

impl Race<'_> {
    fn skip(&mut self, j: usize, kind: &'static str, e: Error) {
        self.fallback = Some((j, kind, e.to_string()));
        self.last_err = Some(e);
    }
}

/// How starting the next engine went.
enum Start {
    Started,
    /// No engine left to start.
    Exhausted,
    /// The call is over (deadline passed, caller cancelled).
    End(Error),
}

/// What one answer means for the call.
enum Judged {
    Served { out: NamedTensors, timings: RunTimings, queue: Duration },
    End(Error),
    Next { kind: &'static str, message: String, error: Error },
}

impl Judged {
    fn next(kind: &'static str, error: Error) -> Judged {
        Judged::Next { kind, message: error.to_string(), error }
    }
}

/// Checks that an engine returned every declared output with the declared dtype and shape,
/// and only finite values (NaN or infinity is [`Error::NonFinite`], the engine's failure).
fn check_outputs(schema: &IoSchema, engine: &str, out: NamedTensors) -> Result<NamedTensors> {
    for spec in &schema.outputs {
        let Some(t) = out.get(&spec.name) else {
            return Err(Error::Runtime(format!(
                "engine `{engine}` returned no output `{}`; the engine is faulty, the call \
                 was counted as its failure",
                spec.name
            )));
        };
        if let Err(e) = spec.check(t) {
            let detail = match e {
                Error::InvalidInput { expected, got, .. } => {
                    format!("expected {expected}, got {got}")
                }
                other => other.to_string(),
            };
            return Err(Error::Runtime(format!(
                "engine `{engine}` returned output `{}` with the wrong form: {detail}",
                spec.name
            )));
        }
        let count = t.count_non_finite();
        if count > 0 {
            return Err(Error::NonFinite {
                engine: engine.to_string(),
                output: spec.name.clone(),
                count,
            });
        }
    }
    Ok(out)
}
