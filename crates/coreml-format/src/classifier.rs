//! ML Program classifiers: what `ct.convert(..., classifier_config=ct.ClassifierConfig(labels))`
//! writes, read into a [`Classifier`]. `main` ends in a `classify` op whose `classes` is a list
//! of string or int64 labels; the description names the predicted label output
//! (`predictedFeatureName`, a string or int64 feature) and the probabilities output
//! (`predictedProbabilitiesName`, a dictionary from label to probability).
//!
//! The project carries tensors only, so the dictionary becomes an f32 tensor of the shape of
//! `classify`'s `probabilities` input (`[.., classes]`, one score per label in label order), an
//! int64 label output an i64 `[1]` tensor, and a string label output is left out of the schema
//! (the label is the arg-max of the scores looked up in [`Classifier::labels`]).
//! Legacy NeuralNetwork classifiers keep their labels in the spec itself, not in a `classify`
//! op; their front end fills [`inference_api::ClassLabels`] on its own.

use inference_api::{DType, FeatureKind, TensorSpec};

use crate::program::Function;
use crate::value::{ConstData, ConstValue};

/// A classifier ML Program's labels and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classifier {
    /// The predicted-label output (`predictedFeatureName`, `classLabel` by default).
    pub label_output: String,
    /// Whether the labels are int64 (else strings).
    pub int_labels: bool,
    /// The probabilities output (`predictedProbabilitiesName`, `classLabel_probs` by default).
    pub probabilities_output: String,
    /// The labels in class-index order (int64 labels as decimal text).
    pub labels: Vec<String>,
    /// Shape of the scores (`classify`'s `probabilities` input), when the program states it.
    pub scores_shape: Option<Vec<inference_api::Dim>>,
}

impl Classifier {
    /// The tensor spec of the probabilities output: f32 scores, one per label.
    pub fn probabilities_spec(&self) -> TensorSpec {
        let shape = self.scores_shape.clone().unwrap_or_else(|| {
            vec![inference_api::Dim::Fixed(1), inference_api::Dim::Fixed(self.labels.len())]
        });
        TensorSpec {
            name: self.probabilities_output.clone(),
            dtype: DType::F32,
            shape,
            kind: FeatureKind::MultiArray,
        }
    }

    /// The labels as [`inference_api::ClassLabels`] (for `IoSchema::classifier`).
    pub fn class_labels(&self) -> inference_api::ClassLabels {
        inference_api::ClassLabels {
            output: self.probabilities_output.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// The labels of a `classify` op's `classes` value: strings, or int64 as decimal text.
pub fn class_label_texts(v: &ConstValue) -> Result<(Vec<String>, bool), String> {
    let items: Vec<&ConstValue> = match &v.data {
        ConstData::Items(items) => items.iter().collect(),
        _ => vec![v],
    };
    let mut labels = Vec::new();
    let mut ints = None;
    for item in items {
        let (mut texts, int) = match &item.data {
            ConstData::String(s) => (s.clone(), false),
            ConstData::Bool(_) => return Err("a boolean class label (strings or int64)".into()),
            _ => match item.to_i64_vec() {
                Some(v) => (v.iter().map(i64::to_string).collect(), true),
                None => {
                    return Err(format!("a class label of type {} (strings or int64)", item.dtype));
                }
            },
        };
        if ints.is_some_and(|was| was != int) {
            return Err("class labels mix strings and integers".into());
        }
        ints = Some(int);
        labels.append(&mut texts);
    }
    if labels.is_empty() {
        return Err("the class label list is empty".into());
    }
    Ok((labels, ints.unwrap_or(false)))
}

/// Reads the classifier of an ML Program's `main`: `Ok(None)` when `main` has no `classify` op
/// or the description names no predicted outputs.
pub(crate) fn read(
    main: &Function,
    predicted: &str,
    probabilities: &str,
) -> Result<Option<Classifier>, String> {
    let Some(op) = main.block.operations.iter().rev().find(|op| op.op_type == "classify") else {
        return Ok(None);
    };
    if predicted.is_empty() && probabilities.is_empty() {
        return Ok(None);
    }
    let classes = main
        .const_input(op, "classes")
        .ok_or("classify's `classes` is not a const list of labels")?;
    let (labels, int_labels) = class_label_texts(classes)?;
    let out_name = |k: usize, fallback: &str| {
        op.outputs.get(k).map_or_else(|| fallback.to_string(), |o| o.name.clone())
    };
    let label_output =
        if predicted.is_empty() { out_name(0, "classLabel") } else { predicted.to_string() };
    let probabilities_output = if probabilities.is_empty() {
        out_name(1, "classLabel_probs")
    } else {
        probabilities.to_string()
    };
    let scores_shape =
        op.input_name("probabilities").and_then(|n| crate::model::returned_shape(main, n));
    if let Some(shape) = &scores_shape
        && let Some(inference_api::Dim::Fixed(c)) = shape.last()
        && *c != labels.len()
    {
        return Err(format!("classify has {} labels for {c} scores", labels.len()));
    }
    Ok(Some(Classifier { label_output, int_labels, probabilities_output, labels, scores_shape }))
}
