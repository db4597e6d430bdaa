//! Layout ops beyond the plan's built-in steps: `sliding_windows`, `concat` with
//! `interleave=True`, `transpose` with negative axes in `perm`, and `slice_by_index` with
//! run-time bounds (the common forms stay on the plan's own steps in `compile.rs`).

use candle_core::Tensor;
use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::arg;
use crate::mlprogram::ops::{SliceSpec, axis, slice_by_index};

/// `sliding_windows(x, axis, size, stride)`: every window of `size` along `axis`, `stride`
/// apart, as a new axis after it: `[.., (L - size) / stride + 1, size, ..]`.
pub(super) fn sliding_windows(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ax = b.int_or(i, op, "axis", 0)?;
    let size = b.int_or(i, op, "size", 0)?;
    let stride = b.int_or(i, op, "stride", 1)?;
    let (Ok(size), Ok(stride)) = (usize::try_from(size), usize::try_from(stride)) else {
        return Err(b.bad(i, op, "negative size or stride"));
    };
    if size == 0 || stride == 0 {
        return Err(b.bad(i, op, "size and stride must be positive"));
    }
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let d = axis(ax, x.rank())?;
        let len = x.dims()[d];
        if len < size {
            candle_core::bail!("sliding_windows: window {size} longer than axis {d} ({len})")
        }
        let n = (len - size) / stride + 1;
        let windows: Vec<Tensor> =
            (0..n).map(|k| x.narrow(d, k * stride, size)).collect::<candle_core::Result<_>>()?;
        Ok(vec![Tensor::stack(&windows, d)?])
    });
    Ok(())
}

/// `concat`: interleaved here (inputs of one shape; slices of each taken in turn along
/// `axis`), plain concatenation on the plan's step.
pub(super) fn concat(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    if !b.flag(i, op, "interleave")? {
        return super::core_op(b, i, op);
    }
    let ax = b.int_or(i, op, "axis", 0)?;
    let args = op.inputs.get("values").cloned().unwrap_or_default();
    let inputs = args.iter().map(|a| b.arg_slot(i, op, a)).collect::<Result<Vec<_>>>()?;
    if inputs.is_empty() {
        return Err(b.bad(i, op, "no values"));
    }
    b.push_fn(i, op, inputs, move |a| {
        let first = arg(a, 0)?;
        if a.iter().any(|t| t.dims() != first.dims()) {
            candle_core::bail!("interleaved concat of tensors of different shapes")
        }
        let d = axis(ax, first.rank())?;
        // [.., L, ..] x n -> [.., L, n, ..] -> [.., L * n, ..].
        let stacked = Tensor::stack(a, d + 1)?;
        let mut dims = first.dims().to_vec();
        dims[d] *= a.len();
        Ok(vec![stacked.reshape(dims)?])
    });
    Ok(())
}

/// `transpose`: a `perm` with negative axes is counted from the end; otherwise the plan's step.
pub(super) fn transpose(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let perm = b.ints(i, op, "perm")?.ok_or_else(|| b.bad(i, op, "no perm"))?;
    if perm.iter().all(|&p| p >= 0) {
        return super::core_op(b, i, op);
    }
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let p: Vec<usize> =
            perm.iter().map(|&p| axis(p, x.rank())).collect::<candle_core::Result<_>>()?;
        Ok(vec![x.permute(p)?.contiguous()?])
    });
    Ok(())
}

/// `slice_by_index` whose `begin`, `end` or `stride` is computed at run time (the const form
/// is the plan's own `Slice` step); the masks are consts.
pub(super) fn slice_dynamic(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let masks = [
        b.flags(i, op, "begin_mask")?,
        b.flags(i, op, "end_mask")?,
        b.flags(i, op, "squeeze_mask")?,
    ];
    let mut inputs = vec![b.var(i, op, "x")?];
    for name in ["begin", "end", "stride"] {
        if op.inputs.contains_key(name) {
            inputs.push(b.var(i, op, name)?);
        }
    }
    let has_stride = op.inputs.contains_key("stride");
    b.push_fn(i, op, inputs, move |a| {
        let ints = |k: usize| -> candle_core::Result<Vec<i64>> {
            Ok(super::func::values(arg(a, k)?)?.into_iter().map(|v| v as i64).collect())
        };
        let [begin_mask, end_mask, squeeze_mask] = masks.clone();
        let spec = SliceSpec {
            begin: ints(1)?,
            end: ints(2)?,
            stride: if has_stride { ints(3)? } else { Vec::new() },
            begin_mask,
            end_mask,
            squeeze_mask,
        };
        Ok(vec![slice_by_index(arg(a, 0)?, &spec)?])
    });
    Ok(())
}
