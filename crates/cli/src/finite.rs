//! NaN and infinity checks on the tensors `infer run` and `infer classify` hand to a model and
//! get back: a non-finite input is refused, a non-finite output is a failed run (exit non-zero).

use anyhow::{Result, bail};
use inference_api::{NamedTensors, Tensor, TensorData};

/// The number of non-finite elements of a float tensor and the index of the first.
pub(crate) fn non_finite(t: &Tensor) -> Option<(usize, usize)> {
    let mut count = 0usize;
    let mut first = None;
    let mut note = |i: usize, finite: bool| {
        if !finite {
            count += 1;
            first.get_or_insert(i);
        }
    };
    match t.data() {
        TensorData::F32(v) => v.iter().enumerate().for_each(|(i, x)| note(i, x.is_finite())),
        TensorData::F16(v) => v.iter().enumerate().for_each(|(i, x)| note(i, x.is_finite())),
        _ => {}
    }
    first.map(|f| (count, f))
}

/// Refuses inputs holding NaN or infinity, naming the tensor, how many and where; `source`
/// names where they came from.
pub(crate) fn check_inputs(inputs: &NamedTensors, source: &str) -> Result<()> {
    for (name, t) in inputs.iter() {
        if let Some((count, first)) = non_finite(t) {
            bail!(
                "input `{name}` from {source} has {count} NaN or infinite value(s) (first at \
                 flat index {first}); models need finite inputs: fix or regenerate the tensor"
            );
        }
    }
    Ok(())
}

/// An error when any output holds NaN or infinity: the engine failed, whatever it returned.
pub(crate) fn check_outputs(outputs: &NamedTensors, model: &str, engine: &str) -> Result<()> {
    for (name, t) in outputs.iter() {
        if let Some((count, first)) = non_finite(t) {
            bail!(
                "{model} on {engine} produced {count} NaN or infinite value(s) in output \
                 `{name}` (first at flat index {first}), so the result is not usable: check the \
                 weights and the manifest's preprocessing numbers, or try another engine with \
                 --engine"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference_api::f16;

    #[test]
    fn finds_nan_and_infinities_in_f32_and_f16() {
        let t = Tensor::from_f32([4], vec![1.0, f32::NAN, 2.0, f32::NEG_INFINITY]).unwrap();
        assert_eq!(non_finite(&t), Some((2, 1)));
        let h = Tensor::new([2], TensorData::F16(vec![f16::ONE, f16::INFINITY])).unwrap();
        assert_eq!(non_finite(&h), Some((1, 1)));
        let ok = Tensor::from_f32([2], vec![0.0, -1e30]).unwrap();
        assert_eq!(non_finite(&ok), None);
        let e = check_inputs(&NamedTensors::new().with("x", t), "in.safetensors").unwrap_err();
        assert!(e.to_string().contains("input `x` from in.safetensors has 2 NaN"), "{e}");
    }
}
