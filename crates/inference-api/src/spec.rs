//! [`ModelSpec`]: what a runtime needs to serve one model, as plain data (artifact, schema,
//! serving settings, named parity tolerance). `model-manifest` builds one from a manifest
//! folder; a bare [`ModelArtifact`] makes one with [`ModelSpec::from_artifact`].

use std::time::Duration;

use crate::{ComputeUnits, EngineId, IoSchema, ModelArtifact, Tolerance, tolerance};

/// How a model is served: its latency SLA, default deadline, preferred engines and compute
/// units. Build with [`ServingSpec::default`] and the `with_` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServingSpec {
    /// A call slower than this counts as slow for the circuit breaker; `None`: no SLA.
    pub sla: Option<Duration>,
    /// Deadline of a call that does not set its own.
    pub timeout: Duration,
    /// Engines moved to the front of the routing order, in this order.
    pub preferred_engines: Vec<EngineId>,
    /// Compute units asked of engines that can choose (Core ML).
    pub compute_units: ComputeUnits,
}

impl Default for ServingSpec {
    /// No SLA, a 2 s deadline, no preferred engine, `ComputeUnits::All`.
    fn default() -> Self {
        ServingSpec {
            sla: None,
            timeout: Duration::from_secs(2),
            preferred_engines: Vec::new(),
            compute_units: ComputeUnits::All,
        }
    }
}

impl ServingSpec {
    /// Sets the SLA (`None`: none).
    pub fn with_sla(mut self, sla: Option<Duration>) -> ServingSpec {
        self.sla = sla;
        self
    }

    /// Sets the default deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> ServingSpec {
        self.timeout = timeout;
        self
    }

    /// Sets the preferred engines, in order.
    pub fn with_preferred_engines(
        mut self,
        engines: impl IntoIterator<Item = EngineId>,
    ) -> ServingSpec {
        self.preferred_engines = engines.into_iter().collect();
        self
    }

    /// Sets the compute units.
    pub fn with_compute_units(mut self, units: ComputeUnits) -> ServingSpec {
        self.compute_units = units;
        self
    }
}

/// One model as a runtime serves it.
///
/// ```
/// use std::time::Duration;
/// use inference_api::{ModelArtifact, ModelSpec, ServingSpec, tolerance};
///
/// let artifact = ModelArtifact::from_path("models/tiny.mlpackage")?;
/// let spec = ModelSpec::from_artifact(artifact)
///     .with_serving(ServingSpec::default().with_timeout(Duration::from_millis(500)))
///     .with_tolerance(tolerance::FP16);
/// assert_eq!(spec.name, "tiny");
/// assert!(spec.io_schema.is_none()); // taken from the engine that prepares it
/// # Ok::<(), inference_api::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelSpec {
    /// The name calls and telemetry use.
    pub name: String,
    /// What engines prepare.
    pub artifact: ModelArtifact,
    /// Declared inputs and outputs; `None` takes the schema of the first engine that
    /// prepares the artifact.
    pub io_schema: Option<IoSchema>,
    /// How the model is served.
    pub serving: ServingSpec,
    /// Parity budget of an accelerated (non-CPU, not CPU-only) engine against the CPU
    /// reference in shadow comparisons; CPU engines always use [`tolerance::FP32`].
    pub tolerance: Tolerance,
}

impl ModelSpec {
    /// A spec for `artifact` with default serving settings and the fp16 tolerance; the
    /// schema is the artifact's own, if it declares one.
    pub fn from_artifact(artifact: ModelArtifact) -> ModelSpec {
        ModelSpec {
            name: artifact.name.clone(),
            io_schema: artifact.io_schema.clone(),
            artifact,
            serving: ServingSpec::default(),
            tolerance: tolerance::FP16,
        }
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> ModelSpec {
        self.name = name.into();
        self
    }

    /// Sets the declared schema.
    pub fn with_io_schema(mut self, schema: IoSchema) -> ModelSpec {
        self.io_schema = Some(schema);
        self
    }

    /// Sets the serving settings.
    pub fn with_serving(mut self, serving: ServingSpec) -> ModelSpec {
        self.serving = serving;
        self
    }

    /// Sets the accelerated engines' parity tolerance (one of [`crate::tolerance`]).
    pub fn with_tolerance(mut self, tolerance: Tolerance) -> ModelSpec {
        self.tolerance = tolerance;
        self
    }
}

impl From<ModelArtifact> for ModelSpec {
    fn from(a: ModelArtifact) -> ModelSpec {
        ModelSpec::from_artifact(a)
    }
}

impl From<&ModelSpec> for ModelSpec {
    fn from(s: &ModelSpec) -> ModelSpec {
        s.clone()
    }
}
