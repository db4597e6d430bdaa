//! Reads the reference files the fixture scripts write: safetensors of named tensors, with
//! the model's inputs as `in.<name>` and the expected outputs as `out.<name>`.

use std::path::Path;

use inference_api::{NamedTensors, Tensor, TensorData};

/// Every tensor of a safetensors file, in file order (f32, i32 and u8 elements).
pub(crate) fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let words = |d: &[u8]| d.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect::<Vec<_>>();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = match view.dtype() {
                safetensors::Dtype::F32 => TensorData::F32(
                    words(view.data()).into_iter().map(f32::from_le_bytes).collect(),
                ),
                safetensors::Dtype::I32 => TensorData::I32(
                    words(view.data()).into_iter().map(i32::from_le_bytes).collect(),
                ),
                safetensors::Dtype::U8 => TensorData::U8(view.data().to_vec()),
                other => panic!("{}: {name} has dtype {other:?}", path.display()),
            };
            (name, Tensor::new(view.shape().to_vec(), data).expect("tensor"))
        })
        .collect()
}

/// `(inputs, expected outputs sorted by name)` from the `in.` / `out.` tensors of a file.
#[allow(dead_code)] // not every test binary that includes this file reads both halves
pub(crate) fn inputs_and_outputs(path: &Path) -> (NamedTensors, Vec<(String, Tensor)>) {
    let (mut inputs, mut outputs) = (NamedTensors::new(), Vec::new());
    for (name, t) in tensors(path) {
        if let Some(n) = name.strip_prefix("in.") {
            inputs.insert(n, t);
        } else if let Some(n) = name.strip_prefix("out.") {
            outputs.push((n.to_string(), t));
        }
    }
    outputs.sort_by(|a, b| a.0.cmp(&b.0));
    (inputs, outputs)
}
