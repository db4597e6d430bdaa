//! The ML Program executor: runs a Core ML `.mlpackage` / `.mlmodel` (ML Program) on the CPU by
//! interpreting its `main` function over candle tensors, with convolutions on the same fused
//! kernels the native models use.
//!
//! Everything slow happens in [`prepare`]: the spec is read, every op is checked (an op the
//! executor does not run fails here, naming the op type and its place), consts become f32
//! tensors (fp16 weights widened), convs are packed with pad and activation fused.

use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor as CTensor};
use coreml_format::MlModel;
use inference_api::{
    ComputeUnits, Error, FeatureKind, IoSchema, ModelArtifact, NamedTensors, PreparedModel, Result,
    Tensor,
};

use crate::ENGINE_NAME;
use crate::cpu_model::{Body, CpuModel};

mod compile;
mod direct;
mod kernel_ops;
mod nn_prepare;
mod ops;
mod plan;

pub(crate) use compile::SUPPORTED_OPS;

/// A compiled ML Program as the body of a [`CpuModel`].
struct ProgramBody {
    plan: plan::Plan,
    /// Whether every input and output is a plain f32 array, so runs can go through the
    /// lowered plan ([`direct::Direct`]) straight from and to the caller's tensors.
    plain: bool,
    direct: Mutex<DirectState>,
}

impl ProgramBody {
    /// The body running `plan` for a model of `schema`.
    fn new(plan: plan::Plan, schema: &IoSchema) -> ProgramBody {
        let image =
            |spec: &inference_api::TensorSpec| matches!(spec.kind, FeatureKind::Image { .. });
        let plain_f32 = |spec: &inference_api::TensorSpec| {
            spec.dtype == inference_api::DType::F32 && !image(spec)
        };
        // Image inputs become float planes on the way in (as for the interpreter).
        let plain = plan.inputs.len() <= MAX_DIRECT_INPUTS
            && schema.inputs.iter().all(|spec| plain_f32(spec) || image(spec))
            && schema.outputs.iter().all(plain_f32);
        ProgramBody { plan, plain, direct: Mutex::default() }
    }
}

/// The plan lowered onto buffers for the input shapes seen last.
#[derive(Default)]
struct DirectState {
    /// Lowerings for the input shapes seen last (most recent first, at most
    /// [`MAX_LOWERED`]), each with its buffers.
    lowered: Vec<(direct::Direct, direct::Arena)>,
    /// Input shapes the plan could not be lowered for, and why.
    refused: Vec<(Vec<Vec<usize>>, String)>,
}

/// Most input shapes a model keeps a lowered plan for (a flexible-shape model called with a
/// few shapes in turn keeps each; the least recently used goes first).
const MAX_LOWERED: usize = 4;

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
    let body = ProgramBody::new(plan, &schema);
    Ok(CpuModel::shared(schema, Box::new(body), pool, key, requested))
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
        // A plain model's first run at new input shapes records every value's shape, and the
        // plan is lowered for them; later runs at those shapes take `compute_direct`.
        let dims: Vec<Vec<usize>> = args.iter().map(|t| t.dims().to_vec()).collect();
        let lower = self.plain
            && self.direct.try_lock().is_ok_and(|st| {
                !st.lowered.iter().any(|(d, _)| d.input_dims == dims)
                    && !st.refused.iter().any(|(d, _)| *d == dims)
            });
        let mut shapes = Vec::new();
        let outs = self
            .plan
            .run(args, stop, lower.then_some(&mut shapes))
            .map_err(candle_core::Error::Msg)?;
        if lower && let Ok(mut st) = self.direct.lock() {
            match direct::Direct::build(&self.plan, &shapes) {
                Ok(d) => {
                    st.lowered.insert(0, (d, direct::Arena::default()));
                    st.lowered.truncate(MAX_LOWERED);
                }
                Err(why) => st.refused.push((dims, why)),
            }
        }
        Ok(self.plan.outputs.iter().map(|(name, _)| name.clone()).zip(outs).collect())
    }

    fn compute_direct(
        &self,
        schema: &IoSchema,
        inputs: &NamedTensors,
        outputs: &mut NamedTensors,
        threads: usize,
        stop: &dyn Fn() -> bool,
    ) -> Option<Result<()>> {
        if !self.plain {
            return None;
        }
        let mut guard = self.direct.try_lock().ok()?;
        // An image input as the float planes the program reads (this allocates them).
        let planes: [Option<Tensor>; MAX_DIRECT_INPUTS] = std::array::from_fn(|i| {
            let (name, _) = self.plan.inputs.get(i)?;
            let Some(FeatureKind::Image { format, .. }) = schema.input(name).map(|s| s.kind) else {
                return None;
            };
            coreml_format::image::image_to_planes(name, inputs.get(name)?, format).ok()
        });
        let input = |i: usize, name: &str| planes[i].as_ref().or_else(|| inputs.get(name));
        let fits = |d: &direct::Direct| {
            self.plan.inputs.iter().enumerate().zip(&d.input_dims).all(|((i, (name, _)), dims)| {
                input(i, name).is_some_and(|t| t.shape() == dims.as_slice())
            })
        };
        let at = guard.lowered.iter().position(|(d, _)| fits(d))?;
        if at > 0 {
            // Most recently used first (a rotation: no allocation).
            guard.lowered[..=at].rotate_right(1);
        }
        let (d, arena) = guard.lowered.first_mut()?;
        let d = &*d;
        let mut xs: [&[f32]; MAX_DIRECT_INPUTS] = [&[]; MAX_DIRECT_INPUTS];
        for (i, (name, _)) in self.plan.inputs.iter().enumerate() {
            xs[i] = input(i, name)?.as_f32().ok()?;
        }
        crate::cpu_model::remove_stale_outputs(schema, outputs);
        let mut failed = Ok(());
        let mut write = |i: usize, values: &[f32]| {
            let Some((name, _)) = self.plan.outputs.get(i) else { return };
            if schema.output(name).is_none() || failed.is_err() {
                return;
            }
            let dims = d.output_dims().nth(i).unwrap_or(&[]);
            failed = crate::cpu_model::f32_output(outputs, name, dims).and_then(|out| {
                if out.len() != values.len() {
                    return Err(Error::Runtime(format!("{ENGINE_NAME}: output `{name}` size")));
                }
                out.copy_from_slice(values);
                Ok(())
            });
        };
        let xs = &xs[..self.plan.inputs.len()];
        let ran = kernels::with_threads(threads, || d.run(&self.plan, arena, xs, stop, &mut write));
        match ran {
            Ok(()) => Some(failed),
            Err(direct::RunError::Failed(e)) => {
                Some(Err(Error::Runtime(format!("{ENGINE_NAME}: ML Program {e}"))))
            }
            Err(direct::RunError::Shape(why)) => {
                // A value's shape depends on the input's values: back to the interpreter.
                let (d, _) = guard.lowered.remove(0);
                guard.refused.push((d.input_dims, why));
                None
            }
        }
    }

    fn what(&self) -> &'static str {
        "ML Program "
    }
}

/// Most inputs a plan run through [`direct::Direct`] takes (held on the stack).
const MAX_DIRECT_INPUTS: usize = 8;

#[cfg(test)]
#[path = "compile_tests.rs"]
mod compile_tests;
