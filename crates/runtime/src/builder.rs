//! The runtime builder and model loading (one lane per engine that can take the model).

use std::sync::Arc;
use std::time::{Duration, Instant};

use inference_api::{
    ComputeUnits, DeviceClass, Engine, Error, ModelArtifact, ModelSpec, PrepareOptions, Result,
    tolerance as tol,
};
use parking_lot::RwLock;
use telemetry::Telemetry;

use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::clock::{Clock, SystemClock};
use crate::deadline::{Estimate, Lane, LaneConfig};
use crate::model::{LoadedModel, ModelInner, Served};
use crate::queue::Admission;
use crate::router::Routing;
use crate::shadow::{Shadow, ShadowConfig};

/// Builds a [`Runtime`]. Engines are given in preference order; a model's spec
/// ([`inference_api::ServingSpec::preferred_engines`], a manifest's
/// `serving.preferred_backends`) moves the engines it names to the front, in its order.
///
/// Each call passes through, in this order: the model's bounded queue ([`Self::queue_capacity`]),
/// input validation, routing ([`Self::routing`]), then per engine its circuit breaker
/// ([`Self::breaker`], timed by [`Self::clock`]), its deadline-bounded workers
/// ([`Self::workers_per_engine`], [`Self::max_abandoned_workers`]), telemetry, and the sampled
/// shadow comparison ([`Self::shadow`]).
pub struct RuntimeBuilder {
    engines: Vec<Arc<dyn Engine>>,
    telemetry: Telemetry,
    clock: Arc<dyn Clock>,
    breaker: BreakerConfig,
    queue_capacity: usize,
    admission_wait: Duration,
    stuck_grace: Duration,
    workers: usize,
    max_abandoned: usize,
    /// Workers stuck inside an engine, across every model this runtime loads.
    stuck_total: Arc<std::sync::atomic::AtomicUsize>,
    shadow: Option<ShadowConfig>,
    routing: Routing,
    threads: Option<usize>,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            engines: Vec::new(),
            telemetry: Telemetry::new(),
            clock: Arc::new(SystemClock::new()),
            breaker: BreakerConfig::default(),
            queue_capacity: 64,
            admission_wait: Duration::ZERO,
            stuck_grace: Duration::from_millis(250),
            workers: 1,
            max_abandoned: 4,
            stuck_total: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            shadow: None,
            routing: Routing::Auto,
            threads: None,
        }
    }
}

impl RuntimeBuilder {
    /// Adds an engine; earlier engines are preferred.
    pub fn engine(mut self, e: Arc<dyn Engine>) -> Self {
        self.engines.push(e);
        self
    }

    /// Telemetry sink (default: a fresh registry, readable with [`Runtime::telemetry`]).
    pub fn telemetry(mut self, t: Telemetry) -> Self {
        self.telemetry = t;
        self
    }

    /// Clock of the circuit breakers (default: the system clock).
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// Circuit breaker settings (the slow-call threshold defaults to the manifest SLA).
    pub fn breaker(mut self, cfg: BreakerConfig) -> Self {
        self.breaker = cfg;
        self
    }

    /// Calls in flight per model (waiting or running) before `Overloaded` (default 64).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// How long a call waits for a slot when the model's queue is full, at most its deadline
    /// (default zero: `Overloaded` at once). Per call: [`crate::RunOptions::with_admission_wait`].
    pub fn admission_wait(mut self, wait: Duration) -> Self {
        self.admission_wait = wait;
        self
    }

    /// How long a worker may stay inside an engine after its call was cancelled (given up at
    /// the deadline while not the engine's fault, or lost to a hedge) before the instance is
    /// quarantined and rebuilt (default 250 ms).
    pub fn stuck_grace(mut self, grace: Duration) -> Self {
        self.stuck_grace = grace;
        self
    }

    /// Worker threads per (model, engine) instance (default 1).
    pub fn workers_per_engine(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Workers allowed to stay stuck inside engines before a timed-out engine is no longer
    /// rebuilt (default 4). One cap for the whole runtime: it counts stuck workers across every
    /// engine and every model this runtime loads, so hung calls cannot pile up threads (and
    /// rebuilt model instances) without bound however many models there are.
    pub fn max_abandoned_workers(mut self, n: usize) -> Self {
        self.max_abandoned = n;
        self
    }

    /// Enables sampled shadow parity against a reference engine.
    pub fn shadow(mut self, cfg: ShadowConfig) -> Self {
        self.shadow = Some(cfg);
        self
    }

    /// Default routing of loaded models.
    pub fn routing(mut self, r: Routing) -> Self {
        self.routing = r;
        self
    }

    /// CPU threads passed to engines in [`PrepareOptions::threads`].
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// The runtime.
    pub fn build(self) -> Runtime {
        Runtime { b: Arc::new(self) }
    }
}

/// Routes calls over engines; load models with [`Runtime::load_spec`].
#[derive(Clone)]
pub struct Runtime {
    b: Arc<RuntimeBuilder>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.b.engines.iter().map(|e| e.name()).collect();
        f.debug_struct("Runtime").field("engines", &names).finish()
    }
}

/// What happened on one engine when a model was loaded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EngineLoad {
    /// Engine name.
    pub engine: String,
    /// True when the engine serves the model.
    pub loaded: bool,
    /// Why it does not (unavailable here, cannot read the format, prepare failed).
    pub reason: Option<String>,
    /// Time spent preparing.
    pub load_time: Duration,
    /// Compute units asked for.
    pub compute_units: ComputeUnits,
}

/// Per-engine outcome of loading one model.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct LoadReport {
    /// Model name.
    pub model: String,
    /// One entry per engine given to the builder, in routing order.
    pub engines: Vec<EngineLoad>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "model {}:", self.model)?;
        for e in &self.engines {
            if e.loaded {
                writeln!(f, "  {}: loaded in {:.1} ms", e.engine, e.load_time.as_secs_f64() * 1e3)?;
            } else {
                writeln!(f, "  {}: not loaded: {}", e.engine, e.reason.as_deref().unwrap_or("?"))?;
            }
        }
        Ok(())
    }
}

impl Runtime {
    /// A builder.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The telemetry registry everything is recorded into.
    pub fn telemetry(&self) -> &Telemetry {
        &self.b.telemetry
    }

    /// Loads a model on every engine that can take it, from its plain-data spec (a
    /// `model_manifest::ModelBundle` converts into one: `rt.load_spec(&bundle)`). Fails with
    /// [`Error::Unavailable`] listing each engine's reason when none can.
    pub fn load_spec(&self, spec: impl Into<ModelSpec>) -> Result<LoadedModel> {
        self.load_model(&spec.into())
    }

    /// The same as [`Runtime::load_spec`], under the name callers holding a
    /// `model_manifest::ModelBundle` used before the spec existed.
    pub fn load_bundle(&self, spec: impl Into<ModelSpec>) -> Result<LoadedModel> {
        self.load_model(&spec.into())
    }

    /// Loads a bare artifact (no manifest) with default serving settings; its schema is the
    /// artifact's own or, without one, that of the first engine that prepares it.
    pub fn load_artifact(&self, artifact: ModelArtifact) -> Result<LoadedModel> {
        self.load_model(&ModelSpec::from_artifact(artifact))
    }

    fn load_model(&self, spec: &ModelSpec) -> Result<LoadedModel> {
        let b = &*self.b;
        let serving = &spec.serving;
        let name = spec.name.clone();
        let mut engines = b.engines.clone();
        let rank = |e: &Arc<dyn Engine>| {
            serving.preferred_engines.iter().position(|p| p == e.name()).unwrap_or(usize::MAX)
        };
        engines.sort_by_key(rank); // stable: unnamed engines keep builder order
        let options =
            PrepareOptions::new().with_compute_units(serving.compute_units).with_threads(b.threads);
        let cu = serving.compute_units.as_str();
        let mut report = LoadReport { model: name.clone(), engines: Vec::new() };
        let mut served = Vec::new();
        let sla = serving.sla;
        let mut schema = spec.io_schema.clone();
        for engine in engines {
            let ename = engine.name().to_string();
            let series = b.telemetry.series(&name, &ename, cu);
            let probe = engine.probe();
            let fail = |reason: String, t: Duration| EngineLoad {
                engine: ename.clone(),
                loaded: false,
                reason: Some(reason),
                load_time: t,
                compute_units: serving.compute_units,
            };
            if !probe.available {
                let r = probe.reason.unwrap_or_else(|| "unavailable on this machine".into());
                series.record_load(Err(&r));
                report.engines.push(fail(r, Duration::ZERO));
                continue;
            }
            if !probe.formats.contains(&spec.artifact.format) {
                let r = format!(
                    "cannot read {} artifacts (reads: {})",
                    spec.artifact.format,
                    probe.formats.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
                );
                series.record_load(Err(&r));
                report.engines.push(fail(r, Duration::ZERO));
                continue;
            }
            let t0 = Instant::now();
            match engine.prepare(&spec.artifact, &options) {
                Ok(prepared) => {
                    let t = t0.elapsed();
                    series.record_load(Ok(t));
                    // Shadow parity tolerance by precision, from the one api table.
                    let tolerance = match probe.device_class {
                        DeviceClass::Cpu => tol::FP32,
                        _ if serving.compute_units == ComputeUnits::CpuOnly => tol::FP32,
                        _ => spec.tolerance,
                    };
                    if schema.is_none() {
                        schema = Some(prepared.io_schema().clone());
                    }
                    let series2 = Arc::clone(&series);
                    let breaker = CircuitBreaker::new(b.breaker.clone(), Arc::clone(&b.clock))
                        .with_observer(move |from, to| {
                            series2.record_breaker_transition(from.gauge(), to.gauge())
                        });
                    let lane = Lane::new(
                        engine,
                        spec.artifact.clone(),
                        options.clone(),
                        prepared,
                        LaneConfig {
                            workers: b.workers,
                            channel_capacity: b.queue_capacity,
                            max_abandoned: b.max_abandoned,
                            stuck_grace: b.stuck_grace,
                        },
                        Arc::clone(&series),
                        Arc::clone(&b.stuck_total),
                    );
                    served.push(Served {
                        lane,
                        breaker: Arc::new(breaker),
                        series,
                        compute_units: serving.compute_units,
                        tolerance,
                        attempt_est: Estimate::default(),
                        run_est: Estimate::default(),
                    });
                    report.engines.push(EngineLoad {
                        engine: ename,
                        loaded: true,
                        reason: None,
                        load_time: t,
                        compute_units: serving.compute_units,
                    });
                }
                Err(e) => {
                    let r = e.to_string();
                    series.record_load(Err(&r));
                    report.engines.push(fail(r, t0.elapsed()));
                }
            }
        }
        if served.is_empty() {
            let why: Vec<String> = report
                .engines
                .iter()
                .map(|e| format!("{}: {}", e.engine, e.reason.as_deref().unwrap_or("?")))
                .collect();
            return Err(Error::Unavailable(format!(
                "no engine can serve model `{name}` ({}); add an engine that reads {} artifacts",
                if why.is_empty() { "no engines configured".into() } else { why.join("; ") },
                spec.artifact.format
            )));
        }
        let shadow = b.shadow.as_ref().and_then(|cfg| {
            let idx = served.iter().position(|s| cfg.reference == s.lane.engine_name.as_str())?;
            let reference = served[idx].lane.prepared()?;
            Shadow::start(cfg.clone(), reference).map(|s| (s, idx))
        });
        let model_series = b.telemetry.model(&name);
        Ok(LoadedModel {
            inner: Arc::new(ModelInner {
                admission: Admission::new(&name, b.queue_capacity)
                    .with_series(Arc::clone(&model_series)),
                model_series,
                name,
                schema: schema.unwrap_or_default(),
                served,
                routing: RwLock::new(b.routing.clone()),
                default_deadline: serving.timeout.max(Duration::from_millis(1)),
                admission_wait: b.admission_wait,
                sla,
                shadow,
                report,
            }),
        })
    }
}
