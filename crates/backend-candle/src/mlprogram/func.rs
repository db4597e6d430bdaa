//! Ops as closures over candle tensors (the plan's `Kind::Func` steps) and the helpers the op
//! family modules share: element-wise maps, numpy broadcasting of two operands, axis handling.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};
use coreml_format::Operation;

use super::Builder;
use crate::mlprogram::plan::Kind;

/// What a registry op computes at run time: the step's input tensors to its outputs.
pub(crate) type OpFn = dyn Fn(&[&Tensor]) -> Result<Vec<Tensor>> + Send + Sync;

/// A run-time op from one of the op-family modules.
#[derive(Clone)]
pub(crate) struct FuncOp {
    name: &'static str,
    f: Arc<OpFn>,
}

impl std::fmt::Debug for FuncOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FuncOp({})", self.name)
    }
}

impl FuncOp {
    /// Runs the op on the step's inputs.
    pub(crate) fn call(&self, args: &[&Tensor]) -> Result<Vec<Tensor>> {
        (self.f)(args)
    }

    /// The profile row of this op (`INFER_PROFILE`): its registry name.
    pub(crate) fn profile_kind(&self) -> &'static str {
        self.name
    }
}

/// The `k`-th run-time input of a step.
pub(crate) fn arg<'t>(args: &[&'t Tensor], k: usize) -> Result<&'t Tensor> {
    args.get(k).copied().ok_or_else(|| candle_core::Error::Msg(format!("missing input {k}")))
}

/// All elements as f32, in row-major order.
pub(crate) fn values(x: &Tensor) -> Result<Vec<f32>> {
    x.to_dtype(DType::F32)?.contiguous()?.flatten_all()?.to_vec1::<f32>()
}

/// A tensor of `dims` from row-major values.
pub(crate) fn tensor(v: Vec<f32>, dims: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(v, dims, &Device::Cpu)
}

/// Element-wise `f` over `x`.
pub(crate) fn map(x: &Tensor, f: impl Fn(f32) -> f32) -> Result<Tensor> {
    let v: Vec<f32> = values(x)?.into_iter().map(f).collect();
    tensor(v, x.dims())
}

/// Element-wise `f` over `x` and `y` broadcast together the numpy way.
pub(crate) fn zip(x: &Tensor, y: &Tensor, f: impl Fn(f32, f32) -> f32) -> Result<Tensor> {
    let shape = x.shape().broadcast_shape_binary_op(y.shape(), "mil-binary")?;
    let a = values(&x.broadcast_as(&shape)?)?;
    let b = values(&y.broadcast_as(&shape)?)?;
    let v: Vec<f32> = a.into_iter().zip(b).map(|(a, b)| f(a, b)).collect();
    tensor(v, shape.dims())
}

/// Row-major strides of `dims`.
pub(crate) fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for d in (0..dims.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * dims[d + 1];
    }
    s
}

/// `(outer, len, inner)` of `dims` around axis `a`.
pub(crate) fn around(dims: &[usize], a: usize) -> (usize, usize, usize) {
    let outer = dims[..a].iter().product();
    let inner = dims[a + 1..].iter().product();
    (outer, dims[a], inner)
}

/// An index value (stored as f32 inside the executor) on an axis of `len`, negatives counted
/// from the end; out of range is an error.
pub(crate) fn index(v: f32, len: usize) -> Result<usize> {
    let i = v as i64;
    let n = if i < 0 { i + len as i64 } else { i };
    if n < 0 || n >= len as i64 {
        candle_core::bail!("index {i} out of range for an axis of {len}")
    }
    Ok(n as usize)
}

impl Builder<'_> {
    /// Pushes a run-time closure op reading `inputs`.
    pub(super) fn push_fn(
        &mut self,
        i: usize,
        op: &Operation,
        inputs: Vec<usize>,
        f: impl Fn(&[&Tensor]) -> Result<Vec<Tensor>> + Send + Sync + 'static,
    ) {
        let name = crate::mlprogram::compile::registry::static_name(&op.op_type);
        self.push(i, op, Kind::Func(FuncOp { name, f: Arc::new(f) }), inputs);
    }

    /// Pushes an element-wise op on input `x`.
    pub(super) fn push_map(
        &mut self,
        i: usize,
        op: &Operation,
        f: impl Fn(f32) -> f32 + Send + Sync + 'static,
    ) -> inference_api::Result<()> {
        let x = self.var(i, op, "x")?;
        self.push_fn(i, op, vec![x], move |a| Ok(vec![map(arg(a, 0)?, &f)?]));
        Ok(())
    }

    /// Pushes a broadcasting element-wise op on inputs `x` and `y`.
    pub(super) fn push_zip(
        &mut self,
        i: usize,
        op: &Operation,
        f: impl Fn(f32, f32) -> f32 + Send + Sync + 'static,
    ) -> inference_api::Result<()> {
        let x = self.var(i, op, "x")?;
        let y = self.var(i, op, "y")?;
        self.push_fn(i, op, vec![x, y], move |a| Ok(vec![zip(arg(a, 0)?, arg(a, 1)?, &f)?]));
        Ok(())
    }

    /// A required numeric scalar parameter.
    pub(super) fn req_scalar(
        &mut self,
        i: usize,
        op: &Operation,
        input: &str,
    ) -> inference_api::Result<f32> {
        self.scalar(i, op, input)?.ok_or_else(|| self.bad(i, op, format!("no `{input}`")))
    }

    /// An optional integer scalar parameter (first value of an int const).
    pub(super) fn int_or(
        &mut self,
        i: usize,
        op: &Operation,
        input: &str,
        default: i64,
    ) -> inference_api::Result<i64> {
        Ok(self.ints(i, op, input)?.and_then(|v| v.first().copied()).unwrap_or(default))
    }

    /// An optional float const parameter as values.
    pub(super) fn floats(
        &mut self,
        i: usize,
        op: &Operation,
        input: &str,
    ) -> inference_api::Result<Option<Vec<f32>>> {
        match self.param(i, op, input)? {
            None => Ok(None),
            Some(v) => v
                .to_f32_vec()
                .map(Some)
                .ok_or_else(|| self.bad(i, op, format!("`{input}` is not numeric"))),
        }
    }
}
