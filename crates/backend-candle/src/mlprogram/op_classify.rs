//! `classify`: the last op of an ML Program converted with a `ClassifierConfig`. Its outputs
//! are the predicted label and the probabilities (a dictionary in Core ML); here the
//! probabilities pass through as the `[.., classes]` scores tensor, and the label is the
//! arg-max over the last axis (the first on ties, as numpy): the int64 label's value for int64
//! labels, the class index for string labels (which the schema leaves out: no string tensors;
//! `IoSchema::classifier` carries the labels, see `coreml_format::classifier`).

use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, tensor, values};

/// `classify(probabilities, classes)` -> (label, probabilities).
pub(super) fn classify(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let probs = b.var(i, op, "probabilities")?;
    let classes = b.param(i, op, "classes")?.ok_or_else(|| b.bad(i, op, "no `classes`"))?;
    let (labels, int_labels) =
        coreml_format::classifier::class_label_texts(&classes).map_err(|e| b.bad(i, op, e))?;
    // What the label output holds for class k: the int64 label itself, else k.
    let label_values: Vec<f32> = if int_labels {
        labels
            .iter()
            .map(|l| l.parse::<i64>().map(|v| v as f32))
            .collect::<Result<_, _>>()
            .map_err(|e| b.bad(i, op, format!("int64 label: {e}")))?
    } else {
        (0..labels.len()).map(|k| k as f32).collect()
    };
    if op.outputs.len() != 2 {
        return Err(b.bad(i, op, format!("{} outputs, expected 2", op.outputs.len())));
    }
    b.push_fn(i, op, vec![probs], move |a| {
        let p = arg(a, 0)?;
        let dims = p.dims();
        let classes = dims.last().copied().unwrap_or(1);
        if classes != label_values.len() {
            candle_core::bail!("classify: {classes} scores for {} class labels", label_values.len())
        }
        let v = values(p)?;
        let picked: Vec<f32> = v
            .chunks_exact(classes.max(1))
            .map(|row| {
                let mut best = 0;
                for (k, &x) in row.iter().enumerate() {
                    if x > row[best] {
                        best = k;
                    }
                }
                label_values[best]
            })
            .collect();
        let mut label_dims = dims[..dims.len().saturating_sub(1)].to_vec();
        if label_dims.is_empty() {
            label_dims.push(1);
        }
        Ok(vec![tensor(picked, &label_dims)?, p.clone()])
    });
    Ok(())
}
