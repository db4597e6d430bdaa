//! Test support (feature `testing`): a scripted fault-injection engine and in-memory bundles.
//!
//! [`FaultyEngine`] is not a backend. It answers deterministic outputs for the model's declared
//! schema, and misbehaves on script: latency, errors, hangs, panics, wrong shapes or wrong
//! values, per call (a queue of faults), always (a standing fault), or with a probability
//! drawn from a seeded generator.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use inference_api::{
    ArtifactFormat, CapabilityReport, DType, DeviceClass, Engine, Error, IoSchema, ModelArtifact,
    NamedTensors, PlacementReport, PrepareOptions, PreparedModel, Result, RunContext, RunTimings,
    Tensor, TensorData, TensorSpec,
};
use model_manifest::{Manifest, ModelBundle};
use parking_lot::{Condvar, Mutex};

/// One scripted behaviour.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer correctly at once.
    None,
    /// Answer correctly after this long.
    Latency(Duration),
    /// Return this error.
    Error(Error),
    /// Block until [`FaultyEngine::release_hangs`] (or 30 s), then answer.
    Hang,
    /// Panic with this message.
    Panic(String),
    /// Answer with every output one element too long.
    WrongShape,
    /// Answer with every value shifted by this much (`f32::NAN` gives non-finite outputs).
    WrongValues(f32),
    /// Work (yielding the CPU) until the call's cancellation token is cancelled, like an engine
    /// that polls its [`RunContext`] between ops, then return the context's error; gives up
    /// after 30 s. Ignores the deadline on purpose, so a test sees the token reach the engine.
    SpinUntilCancelled,
}

#[derive(Debug)]
enum Mode {
    Always(Fault),
    Random {
        p: f64,
        fault: Fault,
        state: u64,
    },
    /// Cumulative probability bounds in increasing order, each with its fault.
    Mix {
        plan: Vec<(f64, Fault)>,
        state: u64,
    },
}

#[derive(Debug)]
struct Script {
    queue: Mutex<VecDeque<Fault>>,
    mode: Mutex<Mode>,
    calls: AtomicU64,
    hang_epoch: Mutex<u64>,
    hang_cv: Condvar,
}

impl Script {
    fn next(&self) -> Fault {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = self.queue.lock().pop_front() {
            return f;
        }
        match &mut *self.mode.lock() {
            Mode::Always(f) => f.clone(),
            Mode::Random { p, fault, state } => {
                if splitmix(state) < *p {
                    fault.clone()
                } else {
                    Fault::None
                }
            }
            Mode::Mix { plan, state } => {
                let u = splitmix(state);
                plan.iter().find(|(bound, _)| u < *bound).map_or(Fault::None, |(_, f)| f.clone())
            }
        }
    }
}

/// A uniform draw in [0, 1) from a SplitMix64 state.
fn splitmix(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A fault-injection engine for tests and demos.
#[derive(Debug, Clone)]
pub struct FaultyEngine {
    name: String,
    device: DeviceClass,
    unavailable: Option<String>,
    prepare_error: Option<Error>,
    script: Arc<Script>,
}

impl FaultyEngine {
    /// A healthy engine named `name` (device class `Virtual`, reads every format).
    pub fn new(name: &str) -> FaultyEngine {
        FaultyEngine {
            name: name.to_string(),
            device: DeviceClass::Virtual,
            unavailable: None,
            prepare_error: None,
            script: Arc::new(Script {
                queue: Mutex::new(VecDeque::new()),
                mode: Mutex::new(Mode::Always(Fault::None)),
                calls: AtomicU64::new(0),
                hang_epoch: Mutex::new(0),
                hang_cv: Condvar::new(),
            }),
        }
    }

    /// Reports this device class from `probe` (CPU engines get fp32 parity tolerances).
    pub fn with_device(mut self, d: DeviceClass) -> Self {
        self.device = d;
        self
    }

    /// Makes `probe` report the engine unavailable for `reason`.
    pub fn unavailable(mut self, reason: &str) -> Self {
        self.unavailable = Some(reason.to_string());
        self
    }

    /// Makes `prepare` fail with `e`.
    pub fn failing_prepare(mut self, e: Error) -> Self {
        self.prepare_error = Some(e);
        self
    }

    /// The standing behaviour of every call not scripted by [`Self::push`].
    pub fn set_fault(&self, f: Fault) {
        *self.script.mode.lock() = Mode::Always(f);
    }

    /// Each call misbehaves with probability `p` (seeded, reproducible).
    pub fn set_random(&self, p: f64, f: Fault, seed: u64) {
        *self.script.mode.lock() = Mode::Random { p, fault: f, state: seed };
    }

    /// Each call that reaches the engine draws one fault from a mix (seeded, reproducible):
    /// `plan` holds `(probability, fault)` pairs whose probabilities add up to at most 1; the
    /// rest of the time the call is answered correctly. The draw happens in the engine, so a
    /// call the runtime refuses or moves elsewhere consumes nothing (unlike [`Self::push`],
    /// whose queued faults wait for calls that reach the engine).
    pub fn set_mix(&self, plan: impl IntoIterator<Item = (f64, Fault)>, seed: u64) {
        let mut total = 0.0;
        let plan = plan
            .into_iter()
            .map(|(p, f)| {
                total += p;
                (total, f)
            })
            .collect();
        *self.script.mode.lock() = Mode::Mix { plan, state: seed };
    }

    /// Queues behaviours for the next calls, one each, before the standing one applies.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.script.queue.lock().extend(faults);
    }

    /// Wakes every hung call (they then answer).
    pub fn release_hangs(&self) {
        *self.script.hang_epoch.lock() += 1;
        self.script.hang_cv.notify_all();
    }

    /// Calls that reached the engine so far.
    pub fn calls(&self) -> u64 {
        self.script.calls.load(Ordering::Relaxed)
    }
}

impl Engine for FaultyEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn probe(&self) -> CapabilityReport {
        let mut r = CapabilityReport::new(self.name.clone(), self.device);
        r.available = self.unavailable.is_none();
        r.reason = self.unavailable.clone();
        r.os = std::env::consts::OS.into();
        r.dtypes = vec![DType::F32];
        r.formats = vec![
            ArtifactFormat::Safetensors,
            ArtifactFormat::MlPackage,
            ArtifactFormat::MlModel,
            ArtifactFormat::MlModelc,
        ];
        r.compute_devices = vec!["virtual".into()];
        r.details = vec![("kind".into(), "fault-injection test engine".into())];
        r
    }

    fn prepare(
        &self,
        artifact: &ModelArtifact,
        options: &PrepareOptions,
    ) -> Result<Arc<dyn PreparedModel>> {
        if let Some(e) = &self.prepare_error {
            return Err(e.clone());
        }
        let schema = artifact.io_schema.clone().unwrap_or_else(|| IoSchema {
            inputs: vec![TensorSpec::fixed("input", DType::F32, &[1, 4])],
            outputs: vec![TensorSpec::fixed("output", DType::F32, &[1, 10])],
            classifier: None,
        });
        Ok(Arc::new(FaultyModel {
            name: self.name.clone(),
            schema,
            script: Arc::clone(&self.script),
            units: options.compute_units,
        }))
    }
}

struct FaultyModel {
    name: String,
    schema: IoSchema,
    script: Arc<Script>,
    units: inference_api::ComputeUnits,
}

impl FaultyModel {
    /// Writes the answer into `out`: in place into a same-shaped f32 tensor of `out` (no
    /// allocation when nobody else holds it), else a new tensor.
    fn fill(
        &self,
        inputs: &NamedTensors,
        shift: f32,
        extra: usize,
        out: &mut NamedTensors,
    ) -> Result<()> {
        // Deterministic in the inputs: every healthy FaultyEngine gives the same answer.
        let (sum, n) = inputs.iter().fold((0f64, 0usize), |(s, n), (_, t)| match t.as_f32() {
            Ok(v) => (s + v.iter().map(|&x| f64::from(x)).sum::<f64>(), n + v.len()),
            Err(_) => (s, n),
        });
        let mean = if n == 0 { 0.0 } else { (sum / n as f64) as f32 };
        let value = |i: usize| (i as f32 * 0.37).sin() + mean + shift;
        for spec in &self.schema.outputs {
            let mut shape = spec.fixed_shape().unwrap_or_else(|| vec![1, 10]);
            if let Some(last) = shape.last_mut() {
                *last += extra;
            }
            if let Some(t) = out.get_mut(&spec.name)
                && t.shape() == shape.as_slice()
                && let TensorData::F32(d) = t.data_mut()
            {
                d.iter_mut().enumerate().for_each(|(i, x)| *x = value(i));
                continue;
            }
            let len: usize = shape.iter().product();
            out.insert(spec.name.clone(), Tensor::from_f32(shape, (0..len).map(value).collect())?);
        }
        Ok(())
    }
}

impl PreparedModel for FaultyModel {
    fn io_schema(&self) -> &IoSchema {
        &self.schema
    }

    fn run_timed(
        &self,
        inputs: &NamedTensors,
        ctx: &RunContext,
    ) -> Result<(NamedTensors, RunTimings)> {
        let mut out = NamedTensors::new();
        let timings = self.run_into(inputs, &mut out, ctx)?;
        Ok((out, timings))
    }

    /// Writes the answer into `outputs` in place (like the CPU engine), so tests can see the
    /// runtime's output pool at work.
    fn run_into(
        &self,
        inputs: &NamedTensors,
        outputs: &mut NamedTensors,
        ctx: &RunContext,
    ) -> Result<RunTimings> {
        let t0 = Instant::now();
        let fault = self.script.next();
        match fault {
            Fault::None => self.fill(inputs, 0.0, 0, outputs),
            Fault::Latency(d) => {
                std::thread::sleep(d);
                self.fill(inputs, 0.0, 0, outputs)
            }
            Fault::Error(e) => Err(e),
            Fault::Hang => {
                let mut g = self.script.hang_epoch.lock();
                let start = *g;
                let end = Instant::now() + Duration::from_secs(30);
                while *g == start && Instant::now() < end {
                    self.script.hang_cv.wait_until(&mut g, end);
                }
                drop(g);
                self.fill(inputs, 0.0, 0, outputs)
            }
            Fault::SpinUntilCancelled => {
                let end = Instant::now() + Duration::from_secs(30);
                while !ctx.is_cancelled() && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(1));
                }
                ctx.check(&self.name)?;
                self.fill(inputs, 0.0, 0, outputs)
            }
            Fault::Panic(msg) => panic!("{msg}"),
            Fault::WrongShape => self.fill(inputs, 0.0, 1, outputs),
            Fault::WrongValues(d) => self.fill(inputs, d, 0, outputs),
        }?;
        Ok(RunTimings { compute: t0.elapsed(), ..Default::default() })
    }

    fn cache_key(&self) -> String {
        format!("faulty:{}", self.name)
    }

    fn placement(&self) -> PlacementReport {
        PlacementReport::new(self.units, vec![], "virtual")
    }
}

/// Serving settings of an in-memory test bundle.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// Model name.
    pub name: String,
    /// `serving.sla_ms`.
    pub sla_ms: u64,
    /// `serving.timeout_ms`.
    pub timeout_ms: u64,
    /// `serving.preferred_backends`.
    pub preferred: Vec<String>,
    /// `parity.fp32_max_abs` (fp16 is ten times this).
    pub fp32_max_abs: f32,
}

impl Default for BundleSpec {
    fn default() -> Self {
        BundleSpec {
            name: "tiny".into(),
            sla_ms: 200,
            timeout_ms: 2000,
            preferred: vec![],
            fp32_max_abs: 1e-3,
        }
    }
}

/// An in-memory bundle (input `input` f32 [1, 4], output `logits` f32 [1, 10]) whose weights
/// file does not exist: for engines that never read it, like [`FaultyEngine`].
pub fn bundle(spec: &BundleSpec) -> Result<ModelBundle> {
    let preferred: Vec<String> = spec.preferred.iter().map(|p| format!("\"{p}\"")).collect();
    let text = format!(
        r#"
name = "{name}"
version = "1"
task = "test"
license = "MIT"
[origin]
source = "runtime::testing"
[[files]]
path = "w.safetensors"
role = "weights"
sha256 = "{zeros}"
size = 0
[[inputs]]
name = "input"
dtype = "f32"
shape = [1, 4]
[[outputs]]
name = "logits"
dtype = "f32"
shape = [1, 10]
[parity]
fp32_max_abs = {tol}
fp16_max_abs = {tol16}
int8_max_abs = 0.05
[serving]
sla_ms = {sla}
timeout_ms = {timeout}
preferred_backends = [{preferred}]
compute_units = "all"
"#,
        name = spec.name,
        zeros = "0".repeat(64),
        tol = spec.fp32_max_abs,
        tol16 = spec.fp32_max_abs * 10.0,
        sla = spec.sla_ms,
        timeout = spec.timeout_ms,
        preferred = preferred.join(", "),
    );
    let manifest = Manifest::parse(&text, "runtime::testing::bundle")?;
    let io_schema = manifest.io_schema("runtime::testing::bundle")?;
    let dir = PathBuf::from("/nonexistent/runtime-testing");
    let artifact = ModelArtifact {
        name: spec.name.clone(),
        format: ArtifactFormat::Safetensors,
        path: dir.join("w.safetensors"),
        sha256: None,
        architecture: None,
        io_schema: Some(io_schema.clone()),
    };
    Ok(ModelBundle { dir, manifest, io_schema, artifact, labels: None })
}

/// An input matching [`bundle`]'s schema.
pub fn input(values: [f32; 4]) -> NamedTensors {
    let t = Tensor::from_f32([1, 4], values.to_vec()).expect("4 values fill a [1, 4] tensor");
    NamedTensors::new().with("input", t)
}
