//! Ops that pick elements by the values of a run-time tensor: `select` (element-wise choice by
//! a condition), `non_zero` (the indices of non-zero elements, a data-dependent `[N, rank]`
//! shape) and `reverse_sequence` (reverses the first `lengths[b]` elements of each batch).

use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, strides, tensor, values};
use crate::mlprogram::ops::axis;

/// `select`: `a` where `cond` is true (non-zero), else `b`, all three broadcast together.
pub(super) fn select(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let c = b.var(i, op, "cond")?;
    let x = b.var(i, op, "a")?;
    let y = b.var(i, op, "b")?;
    b.push_fn(i, op, vec![c, x, y], |a| {
        let (c, x, y) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
        let shape = c
            .shape()
            .broadcast_shape_binary_op(x.shape(), "select")?
            .broadcast_shape_binary_op(y.shape(), "select")?;
        let c = values(&c.broadcast_as(&shape)?)?;
        let x = values(&x.broadcast_as(&shape)?)?;
        let y = values(&y.broadcast_as(&shape)?)?;
        let v = c.iter().zip(x).zip(y).map(|((&c, x), y)| if c != 0.0 { x } else { y }).collect();
        Ok(vec![tensor(v, shape.dims())?])
    });
    Ok(())
}

/// `non_zero`: a `[N, rank]` tensor of the indices (row-major order) of the non-zero
/// elements of `x`.
pub(super) fn non_zero(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], |a| {
        let x = arg(a, 0)?;
        let dims = x.dims().to_vec();
        let st = strides(&dims);
        let mut out = Vec::new();
        let mut n = 0;
        for (e, v) in values(x)?.into_iter().enumerate() {
            if v != 0.0 {
                n += 1;
                out.extend(dims.iter().zip(&st).map(|(&d, &s)| ((e / s) % d) as f32));
            }
        }
        Ok(vec![tensor(out, &[n, dims.len()])?])
    });
    Ok(())
}

/// `reverse_sequence`: for each index `k` of `batch_axis`, reverses the first `lengths[k]`
/// elements along `seq_axis`.
pub(super) fn reverse_sequence(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let seq = b.int_or(i, op, "seq_axis", 0)?;
    let batch = b.int_or(i, op, "batch_axis", 0)?;
    let x = b.var(i, op, "x")?;
    let lengths = b.var(i, op, "lengths")?;
    b.push_fn(i, op, vec![x, lengths], move |a| {
        let x = arg(a, 0)?;
        let dims = x.dims().to_vec();
        let (s, bt) = (axis(seq, dims.len())?, axis(batch, dims.len())?);
        if s == bt {
            candle_core::bail!("reverse_sequence: seq_axis and batch_axis are both {s}")
        }
        let lens = values(arg(a, 1)?)?;
        if lens.len() != dims[bt] {
            candle_core::bail!(
                "reverse_sequence: {} lengths for a batch axis of {}",
                lens.len(),
                dims[bt]
            )
        }
        let st = strides(&dims);
        let v = values(x)?;
        let mut out = v.clone();
        for (e, o) in out.iter_mut().enumerate() {
            let k = (e / st[bt]) % dims[bt];
            let p = (e / st[s]) % dims[s];
            let len = lens[k];
            if len < 0.0 || len as usize > dims[s] {
                candle_core::bail!("reverse_sequence: length {len} outside 0..={}", dims[s])
            }
            let len = len as usize;
            if p < len {
                let q = len - 1 - p;
                *o = v[e - p * st[s] + q * st[s]];
            }
        }
        Ok(vec![tensor(out, &dims)?])
    });
    Ok(())
}
