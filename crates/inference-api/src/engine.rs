//! The `Engine` and `PreparedModel` traits and the reports they return.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{ComputeUnits, DType, EngineId, IoSchema, NamedTensors, Result, RunContext};

/// On-disk format of a model artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ArtifactFormat {
    /// Native weights in a `.safetensors` file, interpreted by a named architecture.
    Safetensors,
    /// A Core ML package directory (`.mlpackage`).
    MlPackage,
    /// A legacy single-file Core ML model (`.mlmodel`).
    MlModel,
    /// A compiled Core ML model directory (`.mlmodelc`).
    MlModelc,
}

impl ArtifactFormat {
    /// Guesses the format from a path's extension.
    pub fn from_path(path: &Path) -> Option<ArtifactFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "safetensors" => Some(ArtifactFormat::Safetensors),
            "mlpackage" => Some(ArtifactFormat::MlPackage),
            "mlmodel" => Some(ArtifactFormat::MlModel),
            "mlmodelc" => Some(ArtifactFormat::MlModelc),
            _ => None,
        }
    }

    /// Lower-case name, as in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactFormat::Safetensors => "safetensors",
            ArtifactFormat::MlPackage => "mlpackage",
            ArtifactFormat::MlModel => "mlmodel",
            ArtifactFormat::MlModelc => "mlmodelc",
        }
    }
}

impl std::fmt::Display for ArtifactFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is on disk for one model, as an engine needs it to prepare the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelArtifact {
    /// Model name (from the manifest, or the file stem).
    pub name: String,
    /// File format.
    pub format: ArtifactFormat,
    /// Path of the file or package directory.
    pub path: PathBuf,
    /// Verified sha256 of the file, when known (manifest loads verify it).
    pub sha256: Option<String>,
    /// Architecture name for native weights (e.g. `efficientnet-lite0`).
    pub architecture: Option<String>,
    /// I/O schema declared by the manifest, when there is one.
    pub io_schema: Option<IoSchema>,
}

impl ModelArtifact {
    /// An artifact for a bare path, its format guessed from the extension.
    pub fn from_path(path: impl Into<PathBuf>) -> Result<ModelArtifact> {
        let path = path.into();
        let format = ArtifactFormat::from_path(&path).ok_or_else(|| {
            crate::Error::Load(format!(
                "cannot tell the format of {}: expected a .safetensors, .mlpackage, .mlmodel or \
                 .mlmodelc path, or a model folder with a manifest.toml",
                path.display()
            ))
        })?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
        Ok(ModelArtifact { name, format, path, sha256: None, architecture: None, io_schema: None })
    }
}

/// Options for [`Engine::prepare`]; build with [`PrepareOptions::new`] and the `with_` methods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PrepareOptions {
    /// Devices the engine may use (Core ML); CPU engines serve on the CPU whatever is asked.
    pub compute_units: ComputeUnits,
    /// Worker threads for CPU kernels; `None` uses the engine's default.
    pub threads: Option<usize>,
}

impl PrepareOptions {
    /// Default options: `ComputeUnits::default()`, the engine's default thread count.
    pub fn new() -> PrepareOptions {
        PrepareOptions::default()
    }

    /// Sets the compute units.
    pub fn with_compute_units(mut self, units: ComputeUnits) -> PrepareOptions {
        self.compute_units = units;
        self
    }

    /// Sets the CPU worker thread count.
    pub fn with_threads(mut self, threads: Option<usize>) -> PrepareOptions {
        self.threads = threads;
        self
    }
}

/// Broad class of the hardware an engine runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum DeviceClass {
    /// General-purpose CPU cores.
    Cpu,
    /// A GPU.
    Gpu,
    /// Apple's Neural Engine.
    NeuralEngine,
    /// Several devices chosen per operation (Core ML `All`).
    Mixed,
    /// Nothing: a test or fault-injection engine.
    Virtual,
}

/// What an engine can do on this machine, and why not when it cannot. Build with
/// [`CapabilityReport::new`] and fill the fields.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct CapabilityReport {
    /// Engine name.
    pub engine: String,
    /// True when the engine can prepare and run models here.
    pub available: bool,
    /// Why the engine is unavailable, and what to do about it.
    pub reason: Option<String>,
    /// Hardware class the engine runs on.
    pub device_class: DeviceClass,
    /// Operating system and architecture, e.g. `linux x86_64`.
    pub os: String,
    /// Element types accepted at the model boundary.
    pub dtypes: Vec<DType>,
    /// Artifact formats the engine can prepare.
    pub formats: Vec<ArtifactFormat>,
    /// Compute devices found (e.g. `cpu`, `gpu`, `neural_engine`).
    pub compute_devices: Vec<String>,
    /// Engine-specific facts as key/value pairs (CPU features, thread count, library path...).
    pub details: Vec<(String, String)>,
}

/// Where a prepared model runs: what was asked, what the backend planned, what served.
/// Build with [`PlacementReport::new`].
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PlacementReport {
    /// Compute units the caller asked for.
    pub requested: ComputeUnits,
    /// Planned share of work per device (cost-weighted, sums to 1), where the backend can tell.
    /// Empty when the backend has no plan to report; never a guess.
    pub planned: Vec<(String, f64)>,
    /// The device class that actually serves the model.
    pub served_by: String,
}

impl CapabilityReport {
    /// An available engine of `device_class` on this OS, with no dtypes, formats, devices or
    /// details yet (fill the public fields).
    pub fn new(engine: impl Into<String>, device_class: DeviceClass) -> CapabilityReport {
        CapabilityReport {
            engine: engine.into(),
            available: true,
            reason: None,
            device_class,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            dtypes: Vec::new(),
            formats: Vec::new(),
            compute_devices: Vec::new(),
            details: Vec::new(),
        }
    }
}

impl PlacementReport {
    /// A placement served by `served_by` for `requested`, with `planned` shares per device.
    pub fn new(
        requested: ComputeUnits,
        planned: Vec<(String, f64)>,
        served_by: impl Into<String>,
    ) -> PlacementReport {
        PlacementReport { requested, planned, served_by: served_by.into() }
    }
}

/// Time spent in each phase of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RunTimings {
    /// Converting caller tensors into the engine's form.
    pub marshal_in: Duration,
    /// The model's computation.
    pub compute: Duration,
    /// Converting results back into caller tensors.
    pub marshal_out: Duration,
}

impl RunTimings {
    /// Sum of the phases.
    pub fn total(&self) -> Duration {
        self.marshal_in + self.compute + self.marshal_out
    }
}

/// What one call did: which engine served, on what, and how long each phase took.
/// Build with [`RunReport::new`] and fill the fields.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct RunReport {
    /// Engine that produced the outputs.
    pub engine: String,
    /// Compute units that engine was prepared with.
    pub compute_units: ComputeUnits,
    /// Whether the call fell back from a preferred engine.
    pub fell_back: bool,
    /// Why it fell back (the preferred engine's error or breaker state).
    pub fallback_reason: Option<String>,
    /// Phase timings inside the engine.
    pub timings: RunTimings,
    /// Time waiting in the model's queue before an engine picked the call up.
    pub queue_wait: Duration,
    /// Wall time of the whole call as the caller saw it.
    pub total: Duration,
}

impl RunReport {
    /// A report for a call served by `engine` with `compute_units`, no fallback, zero times.
    pub fn new(engine: impl Into<String>, compute_units: ComputeUnits) -> RunReport {
        RunReport { engine: engine.into(), compute_units, ..RunReport::default() }
    }
}

/// A backend that can prepare models: the Candle CPU engine, Core ML, test engines.
pub trait Engine: Send + Sync {
    /// Stable engine name (`candle-cpu`, `coreml`, ...).
    fn name(&self) -> &str;

    /// Typed identity of the engine (its name by default; the bundled engines return their
    /// [`EngineId`] constant).
    fn id(&self) -> EngineId {
        EngineId::new(self.name())
    }

    /// What the engine can do here, or why it cannot.
    fn probe(&self) -> CapabilityReport;

    /// Loads and prepares a model for repeated runs. Slow work (compiling, weight conversion,
    /// kernel packing) happens here, never in `run`.
    fn prepare(
        &self,
        artifact: &ModelArtifact,
        options: &PrepareOptions,
    ) -> Result<Arc<dyn PreparedModel>>;
}

/// A model ready to run; shareable across threads.
pub trait PreparedModel: Send + Sync {
    /// Declared inputs and outputs.
    fn io_schema(&self) -> &IoSchema;

    /// Runs the model on validated-or-not inputs; implementations validate against
    /// [`PreparedModel::io_schema`] before doing any work. Engines that can stop early poll
    /// `ctx` ([`RunContext::check`]) and return its `Cancelled`/`Timeout` error.
    fn run(&self, inputs: &NamedTensors, ctx: &RunContext) -> Result<NamedTensors> {
        self.run_timed(inputs, ctx).map(|(out, _)| out)
    }

    /// Runs the model and reports phase timings.
    fn run_timed(
        &self,
        inputs: &NamedTensors,
        ctx: &RunContext,
    ) -> Result<(NamedTensors, RunTimings)>;

    /// Runs the model writing into `outputs`: a tensor of `outputs` whose name, shape and dtype
    /// match an output is overwritten in place (its buffer reused, no allocation when the
    /// caller holds the only reference); other outputs are inserted, stale names removed.
    /// On error `outputs` is left as it was.
    fn run_into(
        &self,
        inputs: &NamedTensors,
        outputs: &mut NamedTensors,
        ctx: &RunContext,
    ) -> Result<RunTimings> {
        let (out, timings) = self.run_timed(inputs, ctx)?;
        outputs.write_from(&out);
        Ok(timings)
    }

    /// A key identifying this prepared form (content hash, engine, options).
    fn cache_key(&self) -> String;

    /// Where the model runs.
    fn placement(&self) -> PlacementReport;
}
