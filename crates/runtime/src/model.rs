//! A loaded model and the call path: admission, routing, breaker, deadline, telemetry, shadow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use inference_api::{ComputeUnits, Error, IoSchema, NamedTensors, Result, RunReport};
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
    pub(crate) tolerance: f32,
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
    /// are compared against the reference engine off the hot path.
    ///
    /// Each call runs in a `tracing` span `infer.run` with fields `model`, `engine` (the
    /// engine that served, or the last one tried), `outcome` (`ok` or the error kind) and
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
        let result = self.run_traced(inputs.into(), opts, &span);
        match &result {
            Ok((_, report)) => {
                span.record("engine", report.engine.as_str());
                span.record("outcome", "ok");
                span.record("fell_back", report.fell_back);
            }
            Err(e) => {
                span.record("outcome", e.kind());
            }
        }
        result
    }

    fn run_traced(
        &self,
        inputs: Arc<NamedTensors>,
        opts: &RunOptions,
        span: &tracing::Span,
    ) -> Result<(NamedTensors, RunReport)> {
        let started = Instant::now();
        let m = &*self.inner;
        let deadline_d = opts.deadline.unwrap_or(m.default_deadline);
        let deadline = started + deadline_d;
        let deadline_ms = deadline_d.as_millis() as u64;
        let _slot = match m.admission.try_admit() {
            Ok(s) => s,
            Err(e) => {
                if let Some(s) = m.served.first() {
                    s.series.record_overloaded();
                }
                m.model_series.record_err(e.kind(), started.elapsed());
                return Err(e);
            }
        };
        if let Err(e) = m.schema.validate_inputs(&inputs) {
            m.model_series.record_err(e.kind(), started.elapsed());
            return Err(e);
        }
        let routing = match &opts.routing {
            Some(r) => r.clone(),
            None => m.routing.read().clone(),
        };
        let order =
            match router::order(&routing, m.served.iter().map(|s| s.lane.engine_name.as_str())) {
                Ok(o) => o,
                Err(unknown) => {
                    let e = Error::Unavailable(format!(
                        "engine `{unknown}` does not serve model `{}` (serving: {}); see the load \
                     report for why it did not load",
                        m.name,
                        self.engines().join(", ")
                    ));
                    m.model_series.record_err(e.kind(), started.elapsed());
                    return Err(e);
                }
            };

        let mut last_err: Option<Error> = None;
        let mut pending: Option<(usize, &'static str, String)> = None; // (from, kind, message)
        let mut first_reason: Option<String> = None;
        for &i in &order {
            let s = &m.served[i];
            if let Some((from, kind, msg)) = pending.take() {
                m.model_series.record_fallback(
                    &m.served[from].lane.engine_name,
                    &s.lane.engine_name,
                    kind,
                );
                first_reason
                    .get_or_insert_with(|| format!("{}: {msg}", m.served[from].lane.engine_name));
            }
            span.record("engine", s.lane.engine_name.as_str());
            let permit = match s.breaker.try_acquire() {
                Ok(p) => p,
                Err(rej) => {
                    s.series.record_circuit_open();
                    let e = Error::CircuitOpen {
                        engine: s.lane.engine_name.clone(),
                        retry_after_ms: rej.retry_after.as_millis() as u64,
                    };
                    pending = Some((i, "circuit_open", e.to_string()));
                    last_err = Some(e);
                    continue;
                }
            };
            let attempt_start = Instant::now();
            if attempt_start >= deadline {
                s.breaker.cancel(permit);
                let e = Error::Timeout {
                    engine: s.lane.engine_name.clone(),
                    deadline_ms,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                };
                m.model_series.record_err(e.kind(), started.elapsed());
                return Err(e);
            }
            match s.lane.call(&inputs, started, deadline, deadline_ms) {
                Ok(reply) => {
                    let attempt = attempt_start.elapsed();
                    let res = reply.result.and_then(|(out, t)| {
                        check_outputs(&m.schema, &s.lane.engine_name, out).map(|o| (o, t))
                    });
                    match res {
                        Ok((out, timings)) => {
                            let outcome = s.breaker.classify(true, attempt, m.sla);
                            s.breaker.record(permit, outcome);
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
                            let fell_back = first_reason.is_some();
                            if fell_back {
                                s.series.record_served_as_fallback();
                            }
                            self.maybe_shadow(i, &inputs, &out);
                            let total = started.elapsed();
                            m.model_series.record_ok(total, reply.queue);
                            let report = RunReport {
                                engine: s.lane.engine_name.clone(),
                                compute_units: s.compute_units,
                                fell_back,
                                fallback_reason: first_reason,
                                timings,
                                queue_wait: reply.queue,
                                total,
                            };
                            return Ok((out, report));
                        }
                        Err(e) => {
                            s.breaker.record(permit, Outcome::Failure);
                            s.series.record_failure(e.kind(), attempt, reply.queue);
                            pending = Some((i, e.kind(), e.to_string()));
                            last_err = Some(e);
                        }
                    }
                }
                Err(AttemptError::Engine(e)) => {
                    let attempt = attempt_start.elapsed();
                    s.breaker.record(permit, Outcome::Failure);
                    s.series.record_failure(e.kind(), attempt, Duration::ZERO);
                    if matches!(e, Error::Timeout { .. }) {
                        m.model_series.record_err(e.kind(), started.elapsed());
                        return Err(e);
                    }
                    pending = Some((i, e.kind(), e.to_string()));
                    last_err = Some(e);
                }
                Err(AttemptError::Quarantined(msg)) => {
                    s.breaker.cancel(permit);
                    pending = Some((i, "quarantined", msg.clone()));
                    last_err = Some(Error::Unavailable(msg));
                }
                Err(AttemptError::Full) => {
                    s.breaker.cancel(permit);
                    s.series.record_overloaded();
                    let e = Error::Overloaded {
                        model: m.name.clone(),
                        capacity: m.admission.capacity(),
                    };
                    pending = Some((i, "overloaded", e.to_string()));
                    last_err = Some(e);
                }
            }
        }
        let e = last_err
            .unwrap_or_else(|| Error::Unavailable(format!("no engine serves model `{}`", m.name)));
        m.model_series.record_err(e.kind(), started.elapsed());
        Err(e)
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

/// Checks that an engine returned every declared output with the declared dtype and shape.
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
    }
    Ok(out)
}
