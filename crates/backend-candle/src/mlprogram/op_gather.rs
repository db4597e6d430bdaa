//! Gather and scatter ops: `gather` (with `batch_dims`), `gather_along_axis`, `gather_nd`,
//! `scatter`, `scatter_along_axis`, `scatter_nd` (update/add/sub/mul/div/max/min modes).
//! Indices arrive as f32 (the executor's one value type) and are checked against the axis.

use candle_core::Result as CResult;
use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, around, index, strides, tensor, values};
use crate::mlprogram::ops::axis;

/// `gather`: `x` indexed along `axis` by `indices`, the first `batch_dims` axes shared.
pub(super) fn gather(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ax = b.int_or(i, op, "axis", 0)?;
    let bd = usize::try_from(b.int_or(i, op, "batch_dims", 0)?)
        .map_err(|_| b.bad(i, op, "negative batch_dims"))?;
    let x = b.var(i, op, "x")?;
    let idx = b.var(i, op, "indices")?;
    b.push_fn(i, op, vec![x, idx], move |a| {
        let (x, ind) = (arg(a, 0)?, arg(a, 1)?);
        let dims = x.dims();
        let d = axis(ax, dims.len())?;
        if bd > d || bd > ind.rank() || dims[..bd] != ind.dims()[..bd] {
            candle_core::bail!("gather: batch_dims {bd} does not fit {dims:?} / {:?}", ind.dims())
        }
        let (outer, len, inner) = around(dims, d);
        let per_batch: usize = dims[bd..d].iter().product();
        let nq: usize = ind.dims()[bd..].iter().product();
        let (xv, iv) = (values(x)?, values(ind)?);
        let mut out = Vec::with_capacity(outer * nq * inner);
        for p in 0..outer {
            let batch = p / per_batch.max(1);
            for q in 0..nq {
                let k = index(iv[batch * nq + q], len)?;
                let at = (p * len + k) * inner;
                out.extend_from_slice(&xv[at..at + inner]);
            }
        }
        let shape: Vec<usize> = [&dims[..d], &ind.dims()[bd..], &dims[d + 1..]].concat();
        Ok(vec![tensor(out, &shape)?])
    });
    Ok(())
}

/// `gather_along_axis`: numpy's `take_along_axis`.
pub(super) fn gather_along_axis(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ax = b.int_or(i, op, "axis", 0)?;
    let x = b.var(i, op, "x")?;
    let idx = b.var(i, op, "indices")?;
    b.push_fn(i, op, vec![x, idx], move |a| {
        let (x, ind) = (arg(a, 0)?, arg(a, 1)?);
        let d = axis(ax, x.rank())?;
        check_along(x.dims(), ind.dims(), d, "gather_along_axis")?;
        let (xv, iv) = (values(x)?, values(ind)?);
        let (xs, is) = (strides(x.dims()), strides(ind.dims()));
        let mut out = Vec::with_capacity(iv.len());
        for (e, &v) in iv.iter().enumerate() {
            let mut at = 0;
            for k in 0..is.len() {
                let c = (e / is[k]) % ind.dims()[k];
                at += xs[k] * if k == d { index(v, x.dims()[d])? } else { c };
            }
            out.push(xv[at]);
        }
        Ok(vec![tensor(out, ind.dims())?])
    });
    Ok(())
}

fn check_along(x: &[usize], ind: &[usize], d: usize, what: &str) -> CResult<()> {
    let ok = x.len() == ind.len() && (0..x.len()).all(|k| k == d || x[k] == ind[k]);
    if !ok {
        candle_core::bail!("{what}: indices {ind:?} do not fit data {x:?} on axis {d}")
    }
    Ok(())
}

/// `gather_nd`: the last axis of `indices` addresses the leading axes of `x` (after
/// `batch_dims` shared ones).
pub(super) fn gather_nd(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let bd = usize::try_from(b.int_or(i, op, "batch_dims", 0)?)
        .map_err(|_| b.bad(i, op, "negative batch_dims"))?;
    let x = b.var(i, op, "x")?;
    let idx = b.var(i, op, "indices")?;
    b.push_fn(i, op, vec![x, idx], move |a| {
        let (x, ind) = (arg(a, 0)?, arg(a, 1)?);
        let (dims, idims) = (x.dims(), ind.dims());
        let Some(&kk) = idims.last() else { candle_core::bail!("gather_nd: scalar indices") };
        if bd + kk > dims.len() || bd >= idims.len() || dims[..bd] != idims[..bd] {
            candle_core::bail!("gather_nd: indices {idims:?} do not fit {dims:?}")
        }
        let xs = strides(dims);
        let inner: usize = dims[bd + kk..].iter().product();
        let per_batch: usize = idims[bd..idims.len() - 1].iter().product();
        let (xv, iv) = (values(x)?, values(ind)?);
        let mut out = Vec::new();
        for (row, tuple) in iv.chunks(kk.max(1)).enumerate() {
            let batch = row / per_batch.max(1);
            let mut at = 0;
            let mut bb = batch;
            for k in (0..bd).rev() {
                at += (bb % dims[k]) * xs[k];
                bb /= dims[k];
            }
            for (k, &v) in tuple.iter().take(kk).enumerate() {
                at += index(v, dims[bd + k])? * xs[bd + k];
            }
            out.extend_from_slice(&xv[at..at + inner]);
        }
        let shape: Vec<usize> = [&idims[..idims.len() - 1], &dims[bd + kk..]].concat();
        Ok(vec![tensor(out, &shape)?])
    });
    Ok(())
}

/// How a scatter combines the existing value with the update.
fn combine(mode: &str) -> Option<fn(f32, f32) -> f32> {
    Some(match mode {
        "update" => |_, u| u,
        "add" => |d, u| d + u,
        "sub" => |d, u| d - u,
        "mul" => |d, u| d * u,
        "div" => |d, u| d / u,
        "max" => f32::max,
        "min" => f32::min,
        _ => return None,
    })
}

fn mode_of(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<fn(f32, f32) -> f32> {
    let m = b.string(i, op, "mode")?.unwrap_or_else(|| "add".into());
    combine(&m).ok_or_else(|| b.unsupported(i, op, format!("scatter mode `{m}`")))
}

fn scatter_inputs(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<Vec<usize>> {
    Ok(vec![b.var(i, op, "data")?, b.var(i, op, "indices")?, b.var(i, op, "updates")?])
}

/// `scatter`: rows of `updates` combined into `data` at `indices` along `axis`.
pub(super) fn scatter(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let f = mode_of(b, i, op)?;
    let ax = b.int_or(i, op, "axis", 0)?;
    let inputs = scatter_inputs(b, i, op)?;
    b.push_fn(i, op, inputs, move |a| {
        let (data, ind, upd) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
        let d = axis(ax, data.rank())?;
        let (outer, len, inner) = around(data.dims(), d);
        let iv = values(ind)?;
        let c = iv.len();
        if upd.elem_count() != outer * c * inner {
            candle_core::bail!(
                "scatter: updates {:?} do not fit data {:?}",
                upd.dims(),
                data.dims()
            )
        }
        let (mut out, uv) = (values(data)?, values(upd)?);
        for o in 0..outer {
            for (k, &v) in iv.iter().enumerate() {
                let row = index(v, len)?;
                for n in 0..inner {
                    let at = (o * len + row) * inner + n;
                    out[at] = f(out[at], uv[(o * c + k) * inner + n]);
                }
            }
        }
        Ok(vec![tensor(out, data.dims())?])
    });
    Ok(())
}

/// `scatter_along_axis`: the inverse of `gather_along_axis`, combining by `mode`.
pub(super) fn scatter_along_axis(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let f = mode_of(b, i, op)?;
    let ax = b.int_or(i, op, "axis", 0)?;
    let inputs = scatter_inputs(b, i, op)?;
    b.push_fn(i, op, inputs, move |a| {
        let (data, ind, upd) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
        let d = axis(ax, data.rank())?;
        check_along(data.dims(), ind.dims(), d, "scatter_along_axis")?;
        if ind.dims() != upd.dims() {
            candle_core::bail!("scatter_along_axis: indices and updates differ in shape")
        }
        let (mut out, iv, uv) = (values(data)?, values(ind)?, values(upd)?);
        let (xs, is) = (strides(data.dims()), strides(ind.dims()));
        for (e, &v) in iv.iter().enumerate() {
            let mut at = 0;
            for k in 0..is.len() {
                let c = (e / is[k]) % ind.dims()[k];
                at += xs[k] * if k == d { index(v, data.dims()[d])? } else { c };
            }
            out[at] = f(out[at], uv[e]);
        }
        Ok(vec![tensor(out, data.dims())?])
    });
    Ok(())
}

/// `scatter_nd`: slices of `updates` combined into `data` at the index tuples of `indices`.
pub(super) fn scatter_nd(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let f = mode_of(b, i, op)?;
    let inputs = scatter_inputs(b, i, op)?;
    b.push_fn(i, op, inputs, move |a| {
        let (data, ind, upd) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
        let dims = data.dims();
        let Some(&kk) = ind.dims().last() else { candle_core::bail!("scatter_nd: scalar indices") };
        if kk > dims.len() {
            candle_core::bail!("scatter_nd: index tuples of {kk} for rank {}", dims.len())
        }
        let xs = strides(dims);
        let inner: usize = dims[kk..].iter().product();
        let (mut out, iv, uv) = (values(data)?, values(ind)?, values(upd)?);
        let rows = iv.len() / kk.max(1);
        if uv.len() != rows * inner {
            candle_core::bail!("scatter_nd: updates {:?} do not fit", upd.dims())
        }
        for (r, tuple) in iv.chunks(kk.max(1)).enumerate() {
            let mut at = 0;
            for (k, &v) in tuple.iter().take(kk).enumerate() {
                at += index(v, dims[k])? * xs[k];
            }
            for n in 0..inner {
                out[at + n] = f(out[at + n], uv[r * inner + n]);
            }
        }
        Ok(vec![tensor(out, dims)?])
    });
    Ok(())
}
