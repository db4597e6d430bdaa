//! Native model architectures built from safetensors weights on the shared kernels.

use std::collections::HashMap;

use candle_core::Tensor;
use inference_api::{Error, Result};

pub(crate) mod efficientnet_lite;
pub(crate) mod fastvit;

/// A forward pass from an NCHW f32 input to logits. `stop` is polled between blocks: when it
/// answers true the pass ends early with an error (the caller maps it to its cancel/timeout).
pub(crate) trait Network: Send + Sync {
    /// Logits per image.
    fn classes(&self) -> usize;

    /// Runs on `x` (`dims` = `[n, c, h, w]`, NCHW) into `out` (`n x classes` values), with
    /// `ws` for every intermediate value: once `ws` has grown to the model's needs (the first
    /// run), a run allocates nothing.
    fn forward_into(
        &self,
        x: &[f32],
        dims: [usize; 4],
        out: &mut [f32],
        ws: &mut Workspace,
        stop: &dyn Fn() -> bool,
    ) -> std::result::Result<(), String>;

    /// [`Network::forward_into`] on a candle tensor, with a fresh workspace.
    fn forward(&self, x: &Tensor, stop: &dyn Fn() -> bool) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let data = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; n * self.classes()];
        self.forward_into(&data, [n, c, h, w], &mut out, &mut Workspace::default(), stop)
            .map_err(candle_core::Error::Msg)?;
        Tensor::from_vec(out, (n, self.classes()), &candle_core::Device::Cpu)
    }
}

/// The buffers a network's run keeps its activations in, reused from run to run: each only
/// grows, to the largest size a run has asked of it.
#[derive(Default)]
pub(crate) struct Workspace {
    pub(crate) bufs: [Vec<f32>; 4],
}

/// `v`'s first `len` values, growing `v` when it is shorter (contents unspecified).
pub(crate) fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// A fully connected classifier (`classes x features` weights, as PyTorch stores them) on the
/// kernels' packed GEMM.
pub(crate) struct Classifier {
    w: kernels::PackedB,
    bias: Vec<f32>,
}

impl Classifier {
    /// From `weight` (`classes x features`, row-major) and `bias` (`classes`).
    pub(crate) fn new(weight: &[f32], bias: Vec<f32>, features: usize) -> Result<Classifier> {
        let classes = bias.len();
        let b = kernels::Strided { data: weight, batch: 0, row: 1, col: features };
        let w = kernels::PackedB::new(b, features, classes).ok_or_else(|| {
            Error::Load(format!(
                "classifier weight has {} values, expected {classes} x {features}",
                weight.len()
            ))
        })?;
        Ok(Classifier { w, bias })
    }

    /// Outputs.
    pub(crate) fn classes(&self) -> usize {
        self.w.n()
    }

    /// Input features.
    pub(crate) fn features(&self) -> usize {
        self.w.k()
    }

    /// `out[n x classes] = pooled[n x features] * weight^T + bias`.
    pub(crate) fn forward(&self, n: usize, pooled: &[f32], out: &mut [f32]) -> Result<(), String> {
        let a = kernels::Strided { data: pooled, batch: 0, row: self.w.k(), col: 1 };
        if kernels::matmul_packed(n, a, &self.w, Some(&self.bias), out) {
            Ok(())
        } else {
            Err(format!(
                "classifier: {} pooled values and {} outputs do not fit {n} x {} -> {}",
                pooled.len(),
                out.len(),
                self.w.k(),
                self.w.n()
            ))
        }
    }
}

/// Per-channel means of `n x c` planes of `hw` values into `pooled` (`n x c`).
pub(crate) fn global_mean(x: &[f32], hw: usize, pooled: &mut [f32]) -> Result<(), String> {
    if kernels::mean_rows_into(x, hw, pooled) {
        Ok(())
    } else {
        Err(format!("global mean: {} values are not {} planes of {hw}", x.len(), pooled.len()))
    }
}

/// Whether blocks run as fused kernels (`kernels::InvertedResidual`); `INFER_NO_FUSION=1`
/// turns that off (read once), for same-binary A/B runs.
pub(crate) fn fusion_enabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    !*OFF.get_or_init(|| std::env::var("INFER_NO_FUSION").is_ok_and(|v| v == "1"))
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
