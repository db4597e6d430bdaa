//! A loaded model and the call path: admission, routing, breaker, deadline, telemetry, shadow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use inference_api::{
    CancelToken, ComputeUnits, Error, ErrorKind, IoSchema, NamedTensors, Result, RunReport,
    RunTimings,
};
use parking_lot::RwLock;
use telemetry::{Latencies, ModelSeries, Series};

use crate::LoadReport;
use crate::breaker::{BreakerState, CircuitBreaker, Outcome};
use crate::deadline::{AttemptError, Lane};
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
}

pub(crate) struct ModelInner {
    pub(crate) name: String,
    pub(crate) schema: IoSchema,
    pub(crate) served: Vec<Served>,
    pub(crate) routing: RwLock<Routing>,
    pub(crate) default_deadline: Duration,
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

    /// Runs the model. Order of policies: (1) queue admission, `Overloaded` at once when full;
    /// (2) input validation against the schema; (3) routing order; then per engine (4) breaker
    /// admission (open: skip to the next engine, recorded as a `circuit_open` fallback),
    /// (5) hand-off to the engine's worker bounded by the call's remaining deadline, (6) output
    /// validation, outcome to the breaker and telemetry; on failure the next engine is tried
    /// while time remains. A timeout ends the call (its deadline is spent). (7) Sampled calls
    /// are compared against the reference engine off the hot path. Each call runs in a
    /// `tracing` span `infer.run` with fields `model`, `engine`, `outcome` and `fell_back`.
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

    /// Policies (1)-(3), then the attempts in routing order with fallback between them.
    fn admitted(
        &self,
        inputs: Arc<NamedTensors>,
        opts: &RunOptions,
        started: Instant,
        span: &tracing::Span,
    ) -> Result<(NamedTensors, RunReport)> {
        let m = &*self.inner;
        let _slot = m.admission.try_admit().inspect_err(|_| {
            if let Some(s) = m.served.first() {
                s.series.record_overloaded();
            }
        })?;
        m.schema.validate_inputs(&inputs)?;
        let order = self.order(opts)?;
        let budget = opts.deadline.unwrap_or(m.default_deadline);
        let call = Call {
            inputs,
            started,
            deadline: started + budget,
            deadline_ms: budget.as_millis() as u64,
            cancel: opts.cancel.as_ref(),
            span,
        };
        let mut last_err: Option<Error> = None;
        let mut fallback: Option<(usize, &'static str, String)> = None; // (from, kind, message)
        let mut first_reason: Option<String> = None;
        for &i in &order {
            if let Some((from, kind, msg)) = fallback.take() {
                let from = &m.served[from].lane.engine_name;
                m.model_series.record_fallback(from, &m.served[i].lane.engine_name, kind);
                first_reason.get_or_insert_with(|| format!("{from}: {msg}"));
            }
            match self.attempt(i, &call) {
                Attempt::Served { out, timings, queue } => {
                    return Ok(self.served(i, &call, out, timings, queue, first_reason));
                }
                Attempt::End(e) => return Err(e),
                Attempt::Next { kind, message, error } => {
                    fallback = Some((i, kind, message));
                    last_err = Some(error);
                }
            }
        }
        Err(last_err
            .unwrap_or_else(|| Error::Unavailable(format!("no engine serves model `{}`", m.name))))
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

    /// Policies (4)-(6) on one engine: breaker admission, the deadline-bounded hand-off, output
    /// checks, and the outcome recorded to the breaker and the engine's series.
    fn attempt(&self, i: usize, call: &Call<'_>) -> Attempt {
        let m = &*self.inner;
        let s = &m.served[i];
        let engine = &s.lane.engine_name;
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
                return Attempt::next("circuit_open", e);
            }
        };
        let attempt_start = Instant::now();
        if attempt_start >= call.deadline {
            permit.cancel();
            return Attempt::End(Error::Timeout {
                engine: engine.clone(),
                deadline_ms: call.deadline_ms,
                elapsed_ms: call.started.elapsed().as_millis() as u64,
            });
        }
        if call.cancel.is_some_and(CancelToken::is_cancelled) {
            permit.cancel();
            return Attempt::End(Error::Cancelled { engine: engine.clone() });
        }
        let lane =
            s.lane.call(&call.inputs, call.started, call.deadline, call.deadline_ms, call.cancel);
        let reply = match lane {
            Ok(reply) => reply,
            Err(AttemptError::Engine(e)) => {
                permit.record(Outcome::Failure);
                s.series.record_failure(e.kind().as_str(), attempt_start.elapsed(), Duration::ZERO);
                // A timeout ends the call: its deadline is spent.
                return if matches!(e, Error::Timeout { .. }) {
                    Attempt::End(e)
                } else {
                    Attempt::next(e.kind().as_str(), e)
                };
            }
            Err(AttemptError::Quarantined(msg)) => {
                permit.cancel();
                return Attempt::Next {
                    kind: "quarantined",
                    message: msg.clone(),
                    error: Error::Unavailable(msg),
                };
            }
            Err(AttemptError::Full) => {
                permit.cancel();
                s.series.record_overloaded();
                let e =
                    Error::Overloaded { model: m.name.clone(), capacity: m.admission.capacity() };
                return Attempt::next("overloaded", e);
            }
        };
        let attempt = attempt_start.elapsed();
        let checked =
            reply.result.and_then(|(out, t)| check_outputs(&m.schema, engine, out).map(|o| (o, t)));
        match checked {
            Ok((out, timings)) => {
                let outcome = s.breaker.classify(true, attempt, m.sla);
                permit.record(outcome);
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
                Attempt::Served { out, timings, queue: reply.queue }
            }
            Err(e) if e.kind() == ErrorKind::Cancelled => {
                // The caller cancelled: not the engine's failure, no fallback.
                permit.cancel();
                Attempt::End(e)
            }
            Err(e) => {
                permit.record(Outcome::Failure);
                s.series.record_failure(e.kind().as_str(), attempt, reply.queue);
                Attempt::next(e.kind().as_str(), e)
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
    deadline_ms: u64,
    cancel: Option<&'a CancelToken>,
    /// The call's `infer.run` span; each attempt records its engine on it.
    span: &'a tracing::Span,
}

/// How one attempt on one engine ended.
enum Attempt {
    /// The engine served the call.
    Served { out: NamedTensors, timings: RunTimings, queue: Duration },
    /// The call is over with this error (timeout, cancellation): no fallback.
    End(Error),
    /// The engine did not serve; the next engine is tried. `kind` labels the fallback.
    Next { kind: &'static str, message: String, error: Error },
}

impl Attempt {
    fn next(kind: &'static str, error: Error) -> Attempt {
        Attempt::Next { kind, message: error.to_string(), error }
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
