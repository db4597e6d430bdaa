//! Preparing a legacy NeuralNetwork `.mlmodel`: its layers translated into a MIL function
//! (`crate::neural_network`), compiled into the same plan as an ML Program, and run by the same
//! body. A NeuralNetwork's description often leaves an output's shape out; such a shape is
//! taken from one run of the plan on zero inputs at prepare time (fixed when every input is,
//! open sizes of the same rank otherwise).

use std::sync::Arc;

use coreml_format::MlModel;
use inference_api::{
    ComputeUnits, Dim, Error, ModelArtifact, NamedTensors, PreparedModel, Result, Tensor,
};

use super::{ProgramBody, compile, with_image_kinds};
use crate::ENGINE_NAME;
use crate::cpu_model::{Body, CpuModel};

/// Prepares the NeuralNetwork `model` opened from `artifact`.
pub(super) fn prepare(
    artifact: &ModelArtifact,
    model: &MlModel,
    pool: rayon::ThreadPool,
    threads: usize,
    requested: ComputeUnits,
) -> Result<Arc<dyn PreparedModel>> {
    let func = crate::neural_network::translate(model)?;
    let resolve = |v: &coreml_format::ConstValue| Ok(v.clone());
    let plan = compile::compile("main", &func, &resolve)?;
    let mut schema = match &artifact.io_schema {
        Some(s) => with_image_kinds(s.clone(), model),
        None => model.io_schema()?,
    };
    schema.outputs.retain(|o| plan.outputs.iter().any(|(n, _)| *n == o.name));
    let body = ProgramBody::new(plan, &schema);
    if schema.outputs.iter().any(|o| o.shape.is_empty()) {
        let fixed = schema.inputs.iter().all(|s| s.fixed_shape().is_some());
        let mut zeros = NamedTensors::new();
        for s in &schema.inputs {
            let shape: Vec<usize> = s
                .shape
                .iter()
                .map(|d| match *d {
                    Dim::Fixed(n) => n,
                    Dim::Range { min, .. } => min.max(1),
                })
                .collect();
            zeros.insert(s.name.clone(), Tensor::zeros(shape, s.dtype)?);
        }
        let args = body.marshal(&schema, &zeros)?;
        let outs = body.compute(args, &|| false).map_err(|e| {
            Error::Compile(format!(
                "{ENGINE_NAME}: {}: a trial run to learn the output shapes failed: {e}",
                artifact.path.display()
            ))
        })?;
        for spec in schema.outputs.iter_mut().filter(|o| o.shape.is_empty()) {
            if let Some((_, y)) = outs.iter().find(|(n, _)| *n == spec.name) {
                spec.shape = y
                    .dims()
                    .iter()
                    .map(|&n| if fixed { Dim::Fixed(n) } else { Dim::Range { min: 1, max: None } })
                    .collect();
            }
        }
    }
    let key = format!(
        "{ENGINE_NAME}:neuralnetwork:{}:threads={threads}",
        artifact.sha256.as_deref().unwrap_or("unhashed")
    );
    Ok(CpuModel::shared(schema, Box::new(body), pool, key, requested))
}
