//! Native model architectures built from safetensors weights on the shared kernels.

use std::collections::HashMap;

use candle_core::Tensor;
use inference_api::{Error, Result};

pub(crate) mod efficientnet_lite;
pub(crate) mod fastvit;

/// A forward pass from an NCHW f32 input to logits. `stop` is polled between blocks: when it
/// answers true the pass ends early with an error (the caller maps it to its cancel/timeout).
pub(crate) trait Network: Send + Sync {
    fn forward(&self, x: &Tensor, stop: &dyn Fn() -> bool) -> candle_core::Result<Tensor>;
}

/// The error a network returns when `stop` asked it to end early.
pub(crate) fn stopped() -> candle_core::Error {
    candle_core::Error::Msg("stopped early: the call was cancelled or its deadline passed".into())
}

/// Named weights of one checkpoint, taken out one by one with clear errors.
pub(crate) struct Weights {
    map: HashMap<String, Tensor>,
    origin: String,
}

impl Weights {
    pub(crate) fn load(path: &std::path::Path) -> Result<Weights> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
        let map = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu)
            .map_err(|e| {
                Error::Load(format!(
                    "{} is not a readable safetensors file ({e}); it may be truncated or corrupt: \
                     restore it (for the bundled model: `cargo xtask import-weights`)",
                    path.display()
                ))
            })?;
        Ok(Weights { map, origin: path.display().to_string() })
    }

    /// The tensor `name` as f32 values with its shape, checked against `shape` when given.
    pub(crate) fn get(
        &self,
        name: &str,
        shape: Option<&[usize]>,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = self.map.get(name).ok_or_else(|| {
            Error::Load(format!(
                "{}: weight `{name}` is missing; is this the right architecture?",
                self.origin
            ))
        })?;
        let dims = t.dims().to_vec();
        if let Some(s) = shape
            && s != dims.as_slice()
        {
            return Err(Error::Load(format!(
                "{}: weight `{name}` has shape {dims:?}, expected {s:?}",
                self.origin
            )));
        }
        let v = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::Load(format!("{}: weight `{name}`: {e}", self.origin)))?;
        Ok((v, dims))
    }
}
