//! The I/O schema of a legacy NeuralNetwork spec. Core ML runs a NeuralNetwork in floating
//! point whatever its features declare, so a double multi-array feature (what the old
//! NeuralNetworkBuilder declares by default) is carried as f32. A classifier's
//! (`neuralNetworkClassifier`) class labels become [`IoSchema::classifier`], its probability
//! dictionary an f32 tensor of one score per class, and its predicted-label output (a string or
//! int64 feature) is left out of the schema: the project has no string tensors, and the label is
//! the arg-max of the scores.

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

/// Whether the spec is a NeuralNetwork (plain, classifier or regressor).
fn is_neural_network(spec: &pb::Model) -> bool {
    use pb::model::Type as T;
    matches!(
        spec.r#type,
        Some(T::NeuralNetwork(_) | T::NeuralNetworkClassifier(_) | T::NeuralNetworkRegressor(_))
    )
}

/// The tensor spec of a feature, a double multi-array taken as f32.
fn tensor_spec(model: &MlModel, f: &Feature, all: &[pb::FeatureDescription]) -> Result<TensorSpec> {
    if let Some(s) = &f.spec {
        return Ok(s.clone());
    }
    let not_tensor = || {
        FormatError::unsupported(
            model.spec_path(),
            format!("feature `{}` of type {} is not a tensor", f.name, f.type_name),
        )
    };
    use pb::array_feature_type::ArrayDataType as A;
    use pb::feature_type::Type as T;
    let mut desc = all.iter().find(|d| d.name == f.name).ok_or_else(not_tensor)?.clone();
    match desc.r#type.as_mut().and_then(|t| t.r#type.as_mut()) {
        Some(T::MultiArrayType(a)) if a.data_type == A::Double as i32 => {
            a.data_type = A::Float32 as i32;
        }
        _ => return Err(not_tensor()),
    }
    Feature::from_proto(&desc)
        .map_err(|e| FormatError::malformed(model.spec_path(), e))?
        .spec
        .ok_or_else(not_tensor)
}

/// The schema of a NeuralNetwork spec; `Ok(None)` for any other model.
pub(crate) fn schema(model: &MlModel) -> Result<Option<IoSchema>> {
    if !is_neural_network(model.spec()) {
        return Ok(None);
    }
    let labels = class_labels(model.spec()).unwrap_or_default();
    let desc = model.spec().description.as_ref();
    let (ins, outs) = desc.map_or((&[][..], &[][..]), |d| (&d.input[..], &d.output[..]));
    let probs = desc.map(|d| d.predicted_probabilities_name.clone()).unwrap_or_default();
    let label = desc.map(|d| d.predicted_feature_name.clone()).unwrap_or_default();
    let classifier = class_labels(model.spec()).is_some();
    let inputs =
        model.inputs().iter().map(|f| tensor_spec(model, f, ins)).collect::<Result<Vec<_>>>()?;
    let mut outputs = Vec::new();
    for f in model.outputs() {
        if classifier && f.name == probs {
            outputs.push(TensorSpec::fixed(&f.name, DType::F32, &[labels.len()]));
        } else if classifier && f.name == label {
            // The predicted label: a string (or int64) feature, the arg-max of the scores.
            continue;
        } else {
            outputs.push(tensor_spec(model, f, outs)?);
        }
    }
    let classifier = (classifier && !probs.is_empty() && !labels.is_empty())
        .then_some(ClassLabels { output: probs, labels });
    Ok(Some(IoSchema { inputs, outputs, classifier }))
}

/// The type of a layer as the spec spells its `layer` field, lower camel case
/// (`convolution`, `innerProduct`, `uniDirectionalLstm`).
pub fn layer_type_name(layer: &pb::neural_network_layer::Layer) -> String {
    use std::fmt::Write;
    /// Keeps what is written up to the first `(`, then stops the formatting (the rest is the
    /// layer's parameters, weights included).
    struct Head(String);
    impl Write for Head {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            match s.find('(') {
                Some(k) => {
                    self.0.push_str(&s[..k]);
                    Err(std::fmt::Error)
                }
                None => {
                    self.0.push_str(s);
                    Ok(())
                }
            }
        }
    }
    let mut head = Head(String::new());
    let _stopped = write!(head, "{layer:?}");
    let mut chars = head.0.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "unknown".into(),
    }
}

/// Number of layers of each type in a NeuralNetwork spec (empty for other models).
pub fn layer_histogram(spec: &pb::Model) -> std::collections::BTreeMap<String, usize> {
    use pb::model::Type as T;
    let layers = match &spec.r#type {
        Some(T::NeuralNetwork(n)) => &n.layers,
        Some(T::NeuralNetworkClassifier(n)) => &n.layers,
        Some(T::NeuralNetworkRegressor(n)) => &n.layers,
        _ => return Default::default(),
    };
    let mut h = std::collections::BTreeMap::new();
    for l in layers {
        let name = l.layer.as_ref().map_or_else(|| "(none)".to_string(), layer_type_name);
        *h.entry(name).or_insert(0) += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types_are_named_as_the_spec_spells_them() {
        use pb::neural_network_layer::Layer as L;
        let conv = L::Convolution(pb::ConvolutionLayerParams {
            weights: Some(pb::WeightParams { float_value: vec![1.0; 9], ..Default::default() }),
            ..Default::default()
        });
        assert_eq!(layer_type_name(&conv), "convolution");
        assert_eq!(layer_type_name(&L::InnerProduct(Default::default())), "innerProduct");
        assert_eq!(
            layer_type_name(&L::UniDirectionalLstm(Default::default())),
            "uniDirectionalLstm"
        );
    }
}
