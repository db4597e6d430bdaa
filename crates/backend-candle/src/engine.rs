//! `CandleEngine`: probing the CPU, preparing artifacts, running them on a private thread pool.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor as CTensor};
use inference_api::{
    ArtifactFormat, CapabilityReport, ComputeUnits, DType, DeviceClass, Engine, EngineId, Error,
    IoSchema, ModelArtifact, NamedTensors, PlacementReport, PrepareOptions, PreparedModel, Result,
    RunContext, RunTimings, Tensor, TensorData, TensorSpec,
};

use crate::models::{Network, Weights, efficientnet_lite::EfficientNetLite, fastvit::FastVit};

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
        Ok(Arc::new(CandleModel { schema, net, pool, key, requested: options.compute_units }))
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

struct CandleModel {
    schema: IoSchema,
    net: Box<dyn Network>,
    pool: rayon::ThreadPool,
    key: String,
    requested: ComputeUnits,
}

fn rt(e: candle_core::Error) -> Error {
    Error::Runtime(format!("{ENGINE_NAME}: {e}"))
}

/// Maps a failure inside the computation: when the call was cancelled or its deadline passed
/// (the kernels stop between ops), that is the error; otherwise `err`.
pub(crate) fn stopped_or(ctx: &RunContext, err: Error) -> Error {
    ctx.check(ENGINE_NAME).err().unwrap_or(err)
}

impl PreparedModel for CandleModel {
    fn io_schema(&self) -> &IoSchema {
        &self.schema
    }

    fn run_timed(
        &self,
        inputs: &NamedTensors,
        ctx: &RunContext,
    ) -> Result<(NamedTensors, RunTimings)> {
        let mut outputs = NamedTensors::new();
        let timings = self.run_into(inputs, &mut outputs, ctx)?;
        Ok((outputs, timings))
    }

    fn run_into(
        &self,
        inputs: &NamedTensors,
        outputs: &mut NamedTensors,
        ctx: &RunContext,
    ) -> Result<RunTimings> {
        self.schema.validate_inputs(inputs)?;
        ctx.check(ENGINE_NAME)?;
        let t0 = Instant::now();
        let spec = &self.schema.inputs[0];
        let input = inputs
            .get(&spec.name)
            .ok_or_else(|| Error::invalid_input(&spec.name, "present", "missing"))?;
        let x = CTensor::from_slice(input.as_f32()?, input.shape(), &Device::Cpu).map_err(rt)?;
        let t1 = Instant::now();
        let stop = || ctx.should_stop();
        let y = self
            .pool
            .install(|| self.net.forward(&x, &stop))
            .map_err(|e| stopped_or(ctx, rt(e)))?;
        let t2 = Instant::now();
        store_outputs(&self.schema, [(&self.schema.outputs[0], &y)], outputs)?;
        let t3 = Instant::now();
        Ok(RunTimings { marshal_in: t1 - t0, compute: t2 - t1, marshal_out: t3 - t2 })
    }

    fn cache_key(&self) -> String {
        self.key.clone()
    }

    fn placement(&self) -> PlacementReport {
        cpu_placement(self.requested)
    }
}

/// Placement of every model this engine prepares: all work on the CPU, whatever was asked.
pub(crate) fn cpu_placement(requested: ComputeUnits) -> PlacementReport {
    PlacementReport::new(requested, vec![("cpu".into(), 1.0)], "cpu")
}

/// Stores candle outputs into the caller's map: an existing tensor of the same name, shape and
/// dtype is overwritten in place (no allocation when the caller holds the only reference);
/// otherwise a new tensor is inserted. Names the schema does not declare are removed.
pub(crate) fn store_outputs<'a>(
    schema: &IoSchema,
    produced: impl IntoIterator<Item = (&'a TensorSpec, &'a CTensor)>,
    outputs: &mut NamedTensors,
) -> Result<()> {
    let stale: Vec<String> =
        outputs.names().filter(|n| schema.output(n).is_none()).map(str::to_string).collect();
    for n in stale {
        outputs.remove(&n);
    }
    for (spec, y) in produced {
        let reused = match outputs.get_mut(&spec.name) {
            Some(dst) if dst.shape() == y.dims() && dst.dtype() == spec.dtype => {
                write_in_place(spec, y, dst)?
            }
            _ => false,
        };
        if !reused {
            outputs.insert(spec.name.clone(), output_tensor(spec, y)?);
        }
    }
    Ok(())
}

/// Copies a contiguous f32 candle tensor into `dst` (f32, or f16 rounded to nearest even);
/// false when `y` is not laid out so it can be read in place.
fn write_in_place(spec: &TensorSpec, y: &CTensor, dst: &mut Tensor) -> Result<bool> {
    if y.dtype() != candle_core::DType::F32 {
        return Ok(false);
    }
    let (storage, layout) = y.storage_and_layout();
    let (candle_core::Storage::Cpu(cpu), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    else {
        return Ok(false);
    };
    let src = cpu
        .as_slice::<f32>()
        .map_err(|e| Error::Runtime(format!("{ENGINE_NAME}: output `{}`: {e}", spec.name)))?;
    let src = &src[start..end];
    match dst.data_mut() {
        TensorData::F32(d) if d.len() == src.len() => d.copy_from_slice(src),
        TensorData::F16(d) if d.len() == src.len() => {
            d.iter_mut().zip(src).for_each(|(o, &v)| *o = half::f16::from_f32(v));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Copies a candle output into a caller tensor of the spec's dtype (f32, or f16 rounded to
/// nearest even) and checks it against the spec.
pub(crate) fn output_tensor(spec: &inference_api::TensorSpec, y: &CTensor) -> Result<Tensor> {
    let dims = y.dims().to_vec();
    let values = y
        .to_dtype(candle_core::DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| Error::Runtime(format!("{ENGINE_NAME}: output `{}`: {e}", spec.name)))?;
    if let inference_api::FeatureKind::Image { format, .. } = spec.kind {
        // Image outputs leave as u8 [H, W, C] RGB (or gray), as the Core ML engine gives them.
        let out = coreml_format::image::planes_to_image(&spec.name, &values, &dims, format)?;
        spec.check(&out)
            .map_err(|e| Error::Runtime(format!("{ENGINE_NAME} produced a bad output: {e}")))?;
        return Ok(out);
    }
    let data = match spec.dtype {
        DType::F16 => {
            inference_api::TensorData::F16(values.into_iter().map(half::f16::from_f32).collect())
        }
        // Integer outputs (indices, shapes, casts): the executor's f32 values are integral.
        DType::I32 => inference_api::TensorData::I32(values.iter().map(|&v| v as i32).collect()),
        DType::I64 => inference_api::TensorData::I64(values.iter().map(|&v| v as i64).collect()),
        DType::I8 => inference_api::TensorData::I8(values.iter().map(|&v| v as i8).collect()),
        DType::U8 => inference_api::TensorData::U8(values.iter().map(|&v| v as u8).collect()),
        _ => inference_api::TensorData::F32(values),
    };
    let out = Tensor::new(dims, data)?;
    spec.check(&out)
        .map_err(|e| Error::Runtime(format!("{ENGINE_NAME} produced a bad output: {e}")))?;
    Ok(out)
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
