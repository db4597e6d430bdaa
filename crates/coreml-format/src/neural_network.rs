//! The I/O schema of a legacy NeuralNetwork classifier (`neuralNetworkClassifier`): its class
//! labels become [`IoSchema::classifier`], its probability dictionary an f32 tensor of one score
//! per class, and its predicted-label output (a string or int64 feature) is left out of the
//! schema: the project has no string tensors, and the label is the arg-max of the scores.

use coreml_proto::proto as pb;
use inference_api::{ClassLabels, DType, IoSchema, TensorSpec};

use crate::description::Feature;
use crate::error::{FormatError, Result};
use crate::model::MlModel;

/// The class labels of a NeuralNetwork classifier spec, in class-index order (int64 labels as
/// decimal text); `None` when the spec is not a NeuralNetwork classifier.
pub fn class_labels(spec: &pb::Model) -> Option<Vec<String>> {
    use pb::neural_network_classifier::ClassLabels as C;
    let Some(pb::model::Type::NeuralNetworkClassifier(n)) = &spec.r#type else { return None };
    Some(match &n.class_labels {
        Some(C::StringClassLabels(v)) => v.vector.clone(),
        Some(C::Int64ClassLabels(v)) => v.vector.iter().map(i64::to_string).collect(),
        None => Vec::new(),
    })
}

/// The schema of a NeuralNetwork classifier; `Ok(None)` for any other model.
pub(crate) fn classifier_schema(model: &MlModel) -> Result<Option<IoSchema>> {
    let Some(labels) = class_labels(model.spec()) else { return Ok(None) };
    let desc = model.spec().description.as_ref();
    let probs = desc.map(|d| d.predicted_probabilities_name.clone()).unwrap_or_default();
    let label = desc.map(|d| d.predicted_feature_name.clone()).unwrap_or_default();
    let not_tensor = |f: &Feature| {
        FormatError::unsupported(
            model.spec_path(),
            format!("feature `{}` of type {} is not a tensor", f.name, f.type_name),
        )
    };
    let inputs = model
        .inputs()
        .iter()
        .map(|f| f.spec.clone().ok_or_else(|| not_tensor(f)))
        .collect::<Result<Vec<_>>>()?;
    let mut outputs = Vec::new();
    for f in model.outputs() {
        if f.name == probs {
            outputs.push(TensorSpec::fixed(&f.name, DType::F32, &[labels.len()]));
        } else if f.name == label {
            // The predicted label: a string (or int64) feature, the arg-max of the scores.
            continue;
        } else {
            outputs.push(f.spec.clone().ok_or_else(|| not_tensor(f))?);
        }
    }
    let classifier =
        (!probs.is_empty() && !labels.is_empty()).then(|| ClassLabels { output: probs, labels });
    Ok(Some(IoSchema { inputs, outputs, classifier }))
}
