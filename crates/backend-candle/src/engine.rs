//! `CandleEngine`: probing the CPU, preparing artifacts, running them on a private thread pool.

use std::sync::Arc;

use candle_core::{Device, Tensor as CTensor};
use inference_api::{
    ArtifactFormat, CapabilityReport, DType, DeviceClass, Engine, EngineId, Error, IoSchema,
    ModelArtifact, NamedTensors, PrepareOptions, PreparedModel, Result, TensorSpec,
};

use crate::cpu_model::{Body, CpuModel, remove_stale_outputs};
use crate::models::{
    Network, Weights, Workspace, efficientnet_lite::EfficientNetLite, fastvit::FastVit,
};

/// Name this engine reports and the runtime routes by (the name of [`EngineId::CANDLE_CPU`]).
pub const ENGINE_NAME: &str = "candle-cpu";

/// The CPU engine. Cheap to construct; each prepared model owns a thread pool of the
/// configured size.
#[derive(Debug, Clone, Default)]
pub struct CandleEngine {
    threads: Option<usize>,
}

/// CPU features the kernels can use, as found at run time.
pub fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx2") {
            found.push("avx2");
        }
        if std::is_x86_feature_detected!("fma") {
            found.push("fma");
        }
        if std::is_x86_feature_detected!("avx512f") {
            found.push("avx512f");
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            found.push("neon");
        }
    }
    found
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Architectures this engine builds from native weights, with their I/O schema.
const ARCHITECTURES: &[(&str, usize)] = &[("efficientnet-lite0", 224), ("fastvit-t8", 256)];

impl CandleEngine {
    /// An engine using all available cores.
    pub fn new() -> CandleEngine {
        CandleEngine { threads: None }
    }

    /// An engine whose prepared models use `threads` worker threads (at least 1).
    pub fn with_threads(threads: usize) -> CandleEngine {
        CandleEngine { threads: Some(threads.max(1)) }
    }

    fn threads_for(&self, options: &PrepareOptions) -> usize {
        options.threads.or(self.threads).unwrap_or_else(default_threads).max(1)
    }
}

impl Engine for CandleEngine {
    fn name(&self) -> &str {
        ENGINE_NAME
    }

    fn id(&self) -> EngineId {
        EngineId::CANDLE_CPU
    }

    fn probe(&self) -> CapabilityReport {
        let features = cpu_features();
        let mut r = CapabilityReport::new(ENGINE_NAME, DeviceClass::Cpu);
        r.dtypes = vec![DType::F32];
        r.formats =
            vec![ArtifactFormat::Safetensors, ArtifactFormat::MlPackage, ArtifactFormat::MlModel];
        r.compute_devices = vec!["cpu".into()];
        r.details = vec![
            (
                "cpu_features".into(),
                if features.is_empty() { "none".into() } else { features.join(",") },
            ),
            ("threads".into(), self.threads.unwrap_or_else(default_threads).to_string()),
            (
                "architectures".into(),
                ARCHITECTURES.iter().map(|a| a.0).collect::<Vec<_>>().join(","),
            ),
            ("mlprogram_ops".into(), crate::mlprogram::SUPPORTED_OPS.join(",")),
            ("neuralnetwork_layers".into(), crate::neural_network::supported_layers().join(",")),
        ];
        r
    }

    fn prepare(
        &self,
        artifact: &ModelArtifact,
        options: &PrepareOptions,
    ) -> Result<Arc<dyn PreparedModel>> {
        match artifact.format {
            ArtifactFormat::Safetensors => {}
            ArtifactFormat::MlPackage | ArtifactFormat::MlModel => {
                let threads = self.threads_for(options);
                let pool = worker_pool(threads)?;
                return crate::mlprogram::prepare(artifact, pool, threads, options.compute_units);
            }
            other => {
                return Err(Error::Unavailable(format!(
                    "{ENGINE_NAME} cannot prepare a {other} artifact ({}): a compiled .mlmodelc has \
                     no readable program; give the .mlpackage or .mlmodel it came from",
                    artifact.path.display()
                )));
            }
        }
        let arch = artifact.architecture.as_deref().ok_or_else(|| {
            Error::Load(format!(
                "{}: a .safetensors file needs an architecture; load it through a model folder \
                 whose manifest.toml names one ({})",
                artifact.path.display(),
                ARCHITECTURES.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let Some(&(_, size)) = ARCHITECTURES.iter().find(|a| a.0 == arch) else {
            return Err(Error::Unavailable(format!(
                "{ENGINE_NAME} has no architecture `{arch}`; known: {}",
                ARCHITECTURES.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")
            )));
        };
        let weights = Weights::load(&artifact.path)?;
        let net: Box<dyn Network> = match arch {
            "efficientnet-lite0" => Box::new(EfficientNetLite::load(&weights)?),
            _ => Box::new(FastVit::load_t8(weights, 1000)?),
        };
        let schema = artifact.io_schema.clone().unwrap_or_else(|| IoSchema {
            inputs: vec![TensorSpec::fixed("input", DType::F32, &[1, 3, size, size])],
            outputs: vec![TensorSpec::fixed("logits", DType::F32, &[1, 1000])],
            classifier: None,
        });
        if schema.inputs.len() != 1 || schema.outputs.len() != 1 {
            return Err(Error::Load(format!(
                "{arch} has one input and one output; the schema declares {} and {}",
                schema.inputs.len(),
                schema.outputs.len()
            )));
        }
        let threads = self.threads_for(options);
        let pool = worker_pool(threads)?;
        let key = format!(
            "{ENGINE_NAME}:{arch}:{}:threads={threads}",
            artifact.sha256.as_deref().unwrap_or("unhashed")
        );
        let body = NativeBody {
            net,
            output: schema.outputs[0].name.clone(),
            ws: std::sync::Mutex::new(Workspace::default()),
        };
        Ok(CpuModel::shared(schema, Box::new(body), pool, key, options.compute_units))
    }
}

/// A native network (one f32 input, one output) as the body of a [`CpuModel`].
struct NativeBody {
    net: Box<dyn Network>,
    output: String,
    /// The activations' buffers, kept between runs (a run that finds them in use by another
    /// run at the same time takes fresh ones).
    ws: std::sync::Mutex<Workspace>,
}

impl NativeBody {
    /// The direct run (see [`Body::compute_direct`]) once its output is known to be f32.
    fn run_direct(
        &self,
        schema: &IoSchema,
        inputs: &NamedTensors,
        outputs: &mut NamedTensors,
        threads: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        let spec = &schema.inputs[0];
        let input = inputs
            .get(&spec.name)
            .ok_or_else(|| Error::invalid_input(&spec.name, "present", "missing"))?;
        let dims: [usize; 4] = input.shape().try_into().map_err(|_| {
            Error::invalid_input(&spec.name, "4-D [n, c, h, w]", format!("{:?}", input.shape()))
        })?;
        let x = input.as_f32()?;
        remove_stale_outputs(schema, outputs);
        let out =
            crate::cpu_model::f32_output(outputs, &self.output, &[dims[0], self.net.classes()])?;
        let mut fresh;
        let mut guard = match self.ws.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let ws = match guard.as_deref_mut() {
            Some(ws) => ws,
            None => {
                fresh = Workspace::default();
                &mut fresh
            }
        };
        kernels::with_threads(threads, || self.net.forward_into(x, dims, out, ws, stop))
            .map_err(|e| Error::Runtime(format!("{ENGINE_NAME}: {e}")))
    }
}

impl Body for NativeBody {
    fn marshal(&self, schema: &IoSchema, inputs: &NamedTensors) -> Result<Vec<CTensor>> {
        let spec = &schema.inputs[0];
        let input = inputs
            .get(&spec.name)
            .ok_or_else(|| Error::invalid_input(&spec.name, "present", "missing"))?;
        let x = CTensor::from_slice(input.as_f32()?, input.shape(), &Device::Cpu)
            .map_err(|e| Error::Runtime(format!("{ENGINE_NAME}: {e}")))?;
        Ok(vec![x])
    }

    fn compute(
        &self,
        args: Vec<CTensor>,
        stop: &dyn Fn() -> bool,
    ) -> candle_core::Result<Vec<(String, CTensor)>> {
        let x = args.first().ok_or_else(|| candle_core::Error::Msg("no input".into()))?;
        Ok(vec![(self.output.clone(), self.net.forward(x, stop)?)])
    }

    fn what(&self) -> &'static str {
        ""
    }

    fn compute_direct(
        &self,
        schema: &IoSchema,
        inputs: &NamedTensors,
        outputs: &mut NamedTensors,
        threads: usize,
        stop: &dyn Fn() -> bool,
    ) -> Option<Result<()>> {
        let spec = schema.output(&self.output)?;
        let plain = spec.dtype == DType::F32
            && !matches!(spec.kind, inference_api::FeatureKind::Image { .. });
        plain.then(|| self.run_direct(schema, inputs, outputs, threads, stop))
    }
}

/// The private thread pool a prepared model runs its kernels on.
fn worker_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("candle-cpu-{i}"))
        .build()
        .map_err(|e| Error::Load(format!("cannot start {threads} worker threads: {e}")))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn the_engine_name_is_its_typed_id() {
        assert_eq!(CandleEngine::new().id(), ENGINE_NAME);
    }

    #[test]
    fn native_networks_poll_stop_between_blocks() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let weights =
            Weights::load(&root.join("models/efficientnet-lite0/efficientnet-lite0.safetensors"))
                .expect("bundled Lite0 weights");
        let net = EfficientNetLite::load(&weights).expect("Lite0");
        let x = CTensor::zeros((1, 3, 224, 224), candle_core::DType::F32, &Device::Cpu).unwrap();
        let polls = Cell::new(0);
        let stop = || {
            polls.set(polls.get() + 1);
            polls.get() == 3
        };
        let e = net.forward(&x, &stop).expect_err("stopped at the third poll");
        assert!(e.to_string().contains("stopped early"), "{e}");
        assert_eq!(polls.get(), 3, "no poll after the stop");
    }
}
