//! The ML Program executor: runs a Core ML `.mlpackage` / `.mlmodel` (ML Program) on the CPU by
//! interpreting its `main` function over candle tensors, with convolutions on the same fused
//! kernels the native models use.
//!
//! Everything slow happens in [`prepare`]: the spec is read, every op is checked (an op the
//! executor does not run fails here, naming the op type and its place), consts become f32
//! tensors (fp16 weights widened), convs are packed with pad and activation fused.

use std::sync::Arc;

use candle_core::{Device, Tensor as CTensor};
use coreml_format::MlModel;
use inference_api::{
    ComputeUnits, Error, FeatureKind, IoSchema, ModelArtifact, NamedTensors, PreparedModel, Result,
    Tensor,
};

use crate::ENGINE_NAME;
use crate::cpu_model::{Body, CpuModel};

mod compile;
mod kernel_ops;
mod nn_prepare;
mod ops;
mod plan;

pub(crate) use compile::SUPPORTED_OPS;

/// A compiled ML Program as the body of a [`CpuModel`].
struct ProgramBody {
    plan: plan::Plan,
}

/// Opens and compiles an ML Program artifact.
pub(crate) fn prepare(
    artifact: &ModelArtifact,
    pool: rayon::ThreadPool,
    threads: usize,
    requested: ComputeUnits,
) -> Result<Arc<dyn PreparedModel>> {
    let model = MlModel::open(&artifact.path)?;
    if crate::neural_network::network(&model).is_some() {
        return nn_prepare::prepare(artifact, &model, pool, threads, requested);
    }
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
    Ok(CpuModel::shared(schema, Box::new(ProgramBody { plan }), pool, key, requested))
}

/// A schema given with the artifact (a manifest's, which records names, dtypes and shapes only)
/// keeps the package's own image features: whether an input is an image, and in which colour
/// layout, is the package's to say. So are a classifier's labels, when the given schema has
/// none.
fn with_image_kinds(mut schema: IoSchema, model: &MlModel) -> IoSchema {
    let Ok(own) = model.io_schema() else { return schema };
    if schema.classifier.is_none()
        && let Some(c) = own.classifier.as_ref().filter(|c| schema.output(&c.output).is_some())
    {
        schema.classifier = Some(c.clone());
    }
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

impl Body for ProgramBody {
    fn marshal(&self, schema: &IoSchema, inputs: &NamedTensors) -> Result<Vec<CTensor>> {
        let mut args = Vec::with_capacity(self.plan.inputs.len());
        for (name, _) in &self.plan.inputs {
            let t = inputs.get(name).ok_or_else(|| {
                Error::invalid_input(name, "an input `main` takes", "nothing (input missing)")
            })?;
            // An image comes in as u8 [H, W, C] RGB (or gray), whatever the model's colour
            // layout; the program reads float planes in that layout, as Core ML gives it.
            match schema.input(name).map(|spec| spec.kind) {
                Some(FeatureKind::Image { format, .. }) => {
                    args.push(to_candle(&coreml_format::image::image_to_planes(name, t, format)?)?);
                }
                _ => args.push(to_candle(t)?),
            }
        }
        Ok(args)
    }

    fn compute(
        &self,
        args: Vec<CTensor>,
        stop: &dyn Fn() -> bool,
    ) -> candle_core::Result<Vec<(String, CTensor)>> {
        let outs = self.plan.run(args, stop).map_err(candle_core::Error::Msg)?;
        Ok(self.plan.outputs.iter().map(|(name, _)| name.clone()).zip(outs).collect())
    }

    fn what(&self) -> &'static str {
        "ML Program "
    }
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod compile_tests;
