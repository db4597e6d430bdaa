//! The ML Program executor: runs a Core ML `.mlpackage` / `.mlmodel` (ML Program) on the CPU by
//! interpreting its `main` function over candle tensors, with convolutions on the same fused
//! kernels the native models use.
//!
//! Everything slow happens in [`prepare`]: the spec is read, every op is checked (an op the
//! executor does not run fails here, naming the op type and its place), consts become f32
//! tensors (fp16 weights widened), convs are packed with pad and activation fused.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor as CTensor};
use coreml_format::MlModel;
use inference_api::{
    ComputeUnits, Error, FeatureKind, IoSchema, ModelArtifact, NamedTensors, PlacementReport,
    PreparedModel, Result, RunContext, RunTimings, Tensor,
};

use crate::ENGINE_NAME;

mod compile;
mod ops;
mod plan;

pub(crate) use compile::SUPPORTED_OPS;

/// A prepared ML Program.
struct MlProgramModel {
    schema: IoSchema,
    plan: plan::Plan,
    pool: rayon::ThreadPool,
    key: String,
    requested: ComputeUnits,
}

/// Opens and compiles an ML Program artifact.
pub(crate) fn prepare(
    artifact: &ModelArtifact,
    pool: rayon::ThreadPool,
    threads: usize,
    requested: ComputeUnits,
) -> Result<Arc<dyn PreparedModel>> {
    let model = MlModel::open(&artifact.path)?;
    let func = model.main_function().map_err(|e| Error::Unavailable(e.to_string()))?;
    let resolve = |v: &coreml_format::ConstValue| model.resolve(v).map_err(Error::from);
    let plan = compile::compile("main", func, &resolve)?;
    let schema = match &artifact.io_schema {
        Some(s) => with_image_kinds(s.clone(), &model),
        None => model.io_schema()?,
    };
    for spec in &schema.inputs {
        if !plan.inputs.iter().any(|(n, _)| *n == spec.name) {
            return Err(Error::Compile(format!(
                "{}: the description declares input `{}` but `main` takes {:?}",
                artifact.path.display(),
                spec.name,
                plan.inputs.iter().map(|i| &i.0).collect::<Vec<_>>()
            )));
        }
    }
    for spec in &schema.outputs {
        if !plan.outputs.iter().any(|(n, _)| *n == spec.name) {
            return Err(Error::Compile(format!(
                "{}: the description declares output `{}` but `main` returns {:?}",
                artifact.path.display(),
                spec.name,
                plan.outputs.iter().map(|o| &o.0).collect::<Vec<_>>()
            )));
        }
    }
    let key = format!(
        "{ENGINE_NAME}:mlprogram:{}:threads={threads}",
        artifact.sha256.as_deref().unwrap_or("unhashed")
    );
    Ok(Arc::new(MlProgramModel { schema, plan, pool, key, requested }))
}

/// A schema given with the artifact (a manifest's, which records names, dtypes and shapes only)
/// keeps the package's own image features: whether an input is an image, and in which colour
/// layout, is the package's to say.
fn with_image_kinds(mut schema: IoSchema, model: &MlModel) -> IoSchema {
    let Ok(own) = model.io_schema() else { return schema };
    let sides = [(&mut schema.inputs, &own.inputs), (&mut schema.outputs, &own.outputs)];
    for (given, own) in sides {
        for spec in given.iter_mut() {
            if let Some(o) = own.iter().find(|o| o.name == spec.name)
                && matches!(o.kind, FeatureKind::Image { .. })
            {
                spec.kind = o.kind;
            }
        }
    }
    schema
}

fn to_candle(t: &Tensor) -> Result<CTensor> {
    let v = t.to_f32_vec();
    CTensor::from_vec(v, t.shape(), &Device::Cpu)
        .map_err(|e| Error::Runtime(format!("{ENGINE_NAME}: {e}")))
}

impl PreparedModel for MlProgramModel {
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
        let mut args = Vec::with_capacity(self.plan.inputs.len());
        for (name, _) in &self.plan.inputs {
            let t = inputs.get(name).ok_or_else(|| {
                Error::invalid_input(name, "an input `main` takes", "nothing (input missing)")
            })?;
            // An image comes in as u8 [H, W, C] RGB (or gray), whatever the model's colour
            // layout; the program reads float planes in that layout, as Core ML gives it.
            match self.schema.input(name).map(|spec| spec.kind) {
                Some(FeatureKind::Image { format, .. }) => {
                    args.push(to_candle(&coreml_format::image::image_to_planes(name, t, format)?)?);
                }
                _ => args.push(to_candle(t)?),
            }
        }
        let t1 = Instant::now();
        let stop = || ctx.should_stop();
        let outs = self.pool.install(|| self.plan.run(args, &stop)).map_err(|e| {
            crate::engine::stopped_or(ctx, Error::Runtime(format!("{ENGINE_NAME}: ML Program {e}")))
        })?;
        let t2 = Instant::now();
        let produced = self
            .plan
            .outputs
            .iter()
            .zip(&outs)
            .filter_map(|((name, _), y)| self.schema.output(name).map(|spec| (spec, y)));
        crate::engine::store_outputs(&self.schema, produced, outputs)?;
        let t3 = Instant::now();
        Ok(RunTimings { marshal_in: t1 - t0, compute: t2 - t1, marshal_out: t3 - t2 })
    }

    fn cache_key(&self) -> String {
        self.key.clone()
    }

    fn placement(&self) -> PlacementReport {
        crate::engine::cpu_placement(self.requested)
    }
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod compile_tests;
