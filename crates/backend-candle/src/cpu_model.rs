//! The one CPU model type: a prepared model of the CPU engine, whether its computation is a
//! native network or an ML Program plan. It owns the run skeleton both share (validate the
//! inputs, check the call's context, marshal, compute on the model's thread pool with a stop
//! check, store the outputs in the caller's buffers, time each phase); the [`Body`] says only
//! how inputs become candle tensors and what computes.

use std::sync::Arc;
use std::time::Instant;

use candle_core::Tensor as CTensor;
use inference_api::{
    ComputeUnits, DType, Error, IoSchema, NamedTensors, PlacementReport, PreparedModel, Result,
    RunContext, RunTimings, Tensor, TensorData, TensorSpec,
};

use crate::ENGINE_NAME;

/// What a [`CpuModel`] computes: a native network or an ML Program plan.
pub(crate) trait Body: Send + Sync {
    /// The candle tensors the computation takes, from inputs the schema has validated.
    fn marshal(&self, schema: &IoSchema, inputs: &NamedTensors) -> Result<Vec<CTensor>>;
    /// Runs on the model's thread pool; `stop` is polled between blocks or ops. Returns the
    /// outputs by name (names the schema does not declare are dropped).
    fn compute(
        &self,
        args: Vec<CTensor>,
        stop: &dyn Fn() -> bool,
    ) -> candle_core::Result<Vec<(String, CTensor)>>;
    /// Words that name the computation in an error (`""`, `"ML Program "`).
    fn what(&self) -> &'static str;
    /// Runs from the caller's (validated) inputs straight into `outputs` on the kernels alone,
    /// on the calling thread with the kernels' loops spread over `threads` (no candle tensors,
    /// no hand-off to the model's pool: in the steady state nothing is allocated); `None` when
    /// this body has no such path and the run goes through [`Body::compute`].
    fn compute_direct(
        &self,
        _schema: &IoSchema,
        _inputs: &NamedTensors,
        _outputs: &mut NamedTensors,
        _threads: usize,
        _stop: &dyn Fn() -> bool,
    ) -> Option<Result<()>> {
        None
    }
}

/// A prepared model of the CPU engine.
pub(crate) struct CpuModel {
    schema: IoSchema,
    body: Box<dyn Body>,
    pool: rayon::ThreadPool,
    key: String,
    requested: ComputeUnits,
}

impl CpuModel {
    /// A shared model over `body`, run on `pool`, cached under `key`.
    pub(crate) fn shared(
        schema: IoSchema,
        body: Box<dyn Body>,
        pool: rayon::ThreadPool,
        key: String,
        requested: ComputeUnits,
    ) -> Arc<dyn PreparedModel> {
        Arc::new(CpuModel { schema, body, pool, key, requested })
    }
}

impl PreparedModel for CpuModel {
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
        let stop = || ctx.should_stop();
        let threads = self.pool.current_num_threads();
        if let Some(done) = self.body.compute_direct(&self.schema, inputs, outputs, threads, &stop)
        {
            done.map_err(|e| stopped_or(ctx, e))?;
            let zero = std::time::Duration::ZERO;
            return Ok(RunTimings { marshal_in: zero, compute: t0.elapsed(), marshal_out: zero });
        }
        let args = self.body.marshal(&self.schema, inputs)?;
        let t1 = Instant::now();
        let outs = self.pool.install(|| self.body.compute(args, &stop)).map_err(|e| {
            stopped_or(ctx, Error::Runtime(format!("{ENGINE_NAME}: {}{e}", self.body.what())))
        })?;
        let t2 = Instant::now();
        let produced =
            outs.iter().filter_map(|(name, y)| self.schema.output(name).map(|spec| (spec, y)));
        store_outputs(&self.schema, produced, outputs)?;
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

/// Maps a failure inside the computation: when the call was cancelled or its deadline passed
/// (the kernels stop between ops), that is the error; otherwise `err`.
pub(crate) fn stopped_or(ctx: &RunContext, err: Error) -> Error {
    ctx.check(ENGINE_NAME).err().unwrap_or(err)
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
    remove_stale_outputs(schema, outputs);
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

/// The caller's f32 buffer for output `name` of `dims`, to be overwritten: the tensor already
/// in `outputs` when it has that shape and type (so a steady-state run allocates nothing),
/// else a fresh zeroed one put there.
pub(crate) fn f32_output<'a>(
    outputs: &'a mut NamedTensors,
    name: &str,
    dims: &[usize],
) -> Result<&'a mut [f32]> {
    let fits = outputs
        .get(name)
        .is_some_and(|t| t.shape() == dims && matches!(t.data(), TensorData::F32(_)));
    if !fits {
        let t = Tensor::new(dims.to_vec(), TensorData::F32(vec![0.0; dims.iter().product()]))?;
        outputs.insert(name.to_string(), t);
    }
    match outputs.get_mut(name).map(Tensor::data_mut) {
        Some(TensorData::F32(out)) => Ok(out),
        _ => Err(Error::Runtime(format!("{ENGINE_NAME}: output `{name}` buffer vanished"))),
    }
}

/// Removes the caller's outputs whose names the schema does not declare (allocates only when
/// there are some).
pub(crate) fn remove_stale_outputs(schema: &IoSchema, outputs: &mut NamedTensors) {
    if outputs.names().all(|n| schema.output(n).is_some()) {
        return;
    }
    let stale: Vec<String> =
        outputs.names().filter(|n| schema.output(n).is_none()).map(str::to_string).collect();
    for n in stale {
        outputs.remove(&n);
    }
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
    // A declared shape of rank 0 is also how a package says "rank unknown" (an output whose
    // rank depends on a run-time shape, as `fill` with a computed shape gives): only a
    // non-empty declared shape constrains the output's shape. The dtype is the spec's by
    // construction above.
    let rank_unknown = spec.shape.is_empty() && !out.shape().is_empty();
    if !rank_unknown {
        spec.check(&out)
            .map_err(|e| Error::Runtime(format!("{ENGINE_NAME} produced a bad output: {e}")))?;
    }
    Ok(out)
}
