//! What `infer inspect` says about a legacy NeuralNetwork classifier: its labels, where the
//! scores are, and that the predicted-label output is not in the I/O schema.

use coreml_format::MlModel;
use inference_api::{ClassLabels, IoSchema};

/// The NeuralNetwork classifier's predicted-label output that the schema leaves out (a string
/// or int64 feature); `None` for other models.
pub(crate) fn omitted_label(model: &MlModel, schema: &IoSchema) -> Option<String> {
    coreml_format::neural_network::class_labels(model.spec())?;
    let label = &model.spec().description.as_ref()?.predicted_feature_name;
    (!label.is_empty() && schema.output(label).is_none()).then(|| label.clone())
}

/// The note `inspect` prints under a NeuralNetwork classifier's labels: where the scores are and
/// why the predicted-label output is not in the I/O schema.
pub(crate) fn classifier_note(c: &ClassLabels, label: &str) -> String {
    format!(
        "`{label}` is not in the I/O schema (there are no string tensors): it is the label of the \
         arg-max of `{}`; `{}` holds one probability per class as an f32 tensor",
        c.output, c.output
    )
}

/// Fills in the output shapes a NeuralNetwork's description leaves out (coremltools writes none)
/// from the CPU engine, which learns them from one run at prepare: the runtime checks every
/// answer against the schema, so an unknown shape would refuse every answer. Other models, and
/// schemas without a missing shape, are left as they are.
pub(crate) fn settle_output_shapes(
    model: &MlModel,
    path: &std::path::Path,
    schema: &mut IoSchema,
) -> anyhow::Result<()> {
    use inference_api::Engine;
    let is_nn = matches!(model.model_type(), coreml_format::ModelType::NeuralNetwork { .. });
    if !is_nn || schema.outputs.iter().all(|o| !o.shape.is_empty()) {
        return Ok(());
    }
    let artifact = inference_api::ModelArtifact::from_path(path)?;
    let prepared = backend_candle::CandleEngine::new()
        .prepare(&artifact, &inference_api::PrepareOptions::default())?;
    for o in schema.outputs.iter_mut().filter(|o| o.shape.is_empty()) {
        if let Some(p) = prepared.io_schema().output(&o.name) {
            o.shape = p.shape.clone();
        }
    }
    Ok(())
}
