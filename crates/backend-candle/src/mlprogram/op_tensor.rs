//! Tensor-operation ops: tile, stack, reverse, cumsum, one_hot, range_1d, fill, shape, topk,
//! argsort, band_part, flatten2d, slice_by_size, depth/space and pixel (un)shuffles.

use candle_core::{Result as CResult, Tensor};
use coreml_format::{Argument, Operation};
use inference_api::Result;

use super::Builder;
use super::func::{arg, around, tensor, values};
use crate::mlprogram::ops::axis;

/// Integer values of a run-time tensor (indices, shapes, sizes).
fn ints(t: &Tensor) -> CResult<Vec<i64>> {
    Ok(values(t)?.into_iter().map(|v| v as i64).collect())
}

fn dims_of(t: &Tensor) -> CResult<Vec<usize>> {
    ints(t)?
        .into_iter()
        .map(|d| {
            usize::try_from(d).map_err(|_| candle_core::Error::Msg(format!("negative size {d}")))
        })
        .collect()
}

/// `tile`: repeats `x` `reps[d]` times along each axis.
pub(super) fn tile(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let x = b.var(i, op, "x")?;
    let reps = b.var(i, op, "reps")?;
    b.push_fn(i, op, vec![x, reps], |a| {
        let x = arg(a, 0)?;
        let reps = dims_of(arg(a, 1)?)?;
        if reps.len() != x.rank() {
            candle_core::bail!("tile: {} reps for rank {}", reps.len(), x.rank())
        }
        let mut y = x.clone();
        for (d, &r) in reps.iter().enumerate() {
            if r != 1 {
                let parts = vec![y.clone(); r];
                y = Tensor::cat(&parts, d)?;
            }
        }
        Ok(vec![y])
    });
    Ok(())
}

/// `stack`: joins `values` along a new axis.
pub(super) fn stack(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ax = b.int_or(i, op, "axis", 0)?;
    let args = op.inputs.get("values").cloned().unwrap_or_default();
    let inputs = args.iter().map(|v| b.arg_slot(i, op, v)).collect::<Result<Vec<_>>>()?;
    if inputs.is_empty() {
        return Err(b.bad(i, op, "no values"));
    }
    b.push_fn(i, op, inputs, move |a| {
        let d = axis(ax, a[0].rank() + 1)?;
        Ok(vec![Tensor::stack(a, d)?])
    });
    Ok(())
}

/// `reverse`: flips `axes` (all when absent).
pub(super) fn reverse(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let axes = b.ints(i, op, "axes")?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let mut y = arg(a, 0)?.clone();
        let rank = y.rank();
        let ax: Vec<usize> = match &axes {
            Some(v) => v.iter().map(|&d| axis(d, rank)).collect::<CResult<_>>()?,
            None => (0..rank).collect(),
        };
        for d in ax {
            let n = y.dims()[d];
            let ids: Vec<u32> = (0..n as u32).rev().collect();
            y = y.index_select(&Tensor::new(ids, y.device())?, d)?;
        }
        Ok(vec![y])
    });
    Ok(())
}

/// `cumsum` along `axis`, optionally exclusive and/or from the end.
pub(super) fn cumsum(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ax = b.int_or(i, op, "axis", 0)?;
    let exclusive = b.flag(i, op, "exclusive")?;
    let rev = b.flag(i, op, "reverse")?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let d = axis(ax, x.rank())?;
        let (outer, len, inner) = around(x.dims(), d);
        let v = values(x)?;
        let mut out = vec![0f32; v.len()];
        for o in 0..outer {
            for n in 0..inner {
                let mut acc = 0f32;
                for k in 0..len {
                    let l = if rev { len - 1 - k } else { k };
                    let at = (o * len + l) * inner + n;
                    if exclusive {
                        out[at] = acc;
                        acc += v[at];
                    } else {
                        acc += v[at];
                        out[at] = acc;
                    }
                }
            }
        }
        Ok(vec![tensor(out, x.dims())?])
    });
    Ok(())
}

/// `one_hot`: a new axis of `one_hot_vector_size` holding `on_value` at each index.
pub(super) fn one_hot(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ax = b.int_or(i, op, "axis", -1)?;
    let on = b.scalar(i, op, "on_value")?.unwrap_or(1.0);
    let off = b.scalar(i, op, "off_value")?.unwrap_or(0.0);
    let idx = b.var(i, op, "indices")?;
    let size = b.var(i, op, "one_hot_vector_size")?;
    b.push_fn(i, op, vec![idx, size], move |a| {
        let idx = arg(a, 0)?;
        let n = dims_of(arg(a, 1)?)?.first().copied().unwrap_or(0);
        let mut shape = idx.dims().to_vec();
        let d = axis(ax, shape.len() + 1)?;
        let ids = values(idx)?;
        // Build with the new axis last, then move it to `d`.
        let mut out = vec![off; ids.len() * n];
        for (k, &v) in ids.iter().enumerate() {
            let v = v as i64;
            let v = if v < 0 { v + n as i64 } else { v };
            if v >= 0 && (v as usize) < n {
                out[k * n + v as usize] = on;
            }
        }
        shape.push(n);
        let mut y = tensor(out, &shape)?;
        let last = shape.len() - 1;
        if d != last {
            let mut perm: Vec<usize> = (0..last).collect();
            perm.insert(d, last);
            y = y.permute(perm)?.contiguous()?;
        }
        Ok(vec![y])
    });
    Ok(())
}

/// `range_1d`: `start, start + step, ...` below `end` (above, for a negative step).
pub(super) fn range_1d(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let end = b.var(i, op, "end")?;
    let start = b.var(i, op, "start")?;
    let step = b.var(i, op, "step")?;
    b.push_fn(i, op, vec![end, start, step], |a| {
        let s = |k| -> CResult<f32> {
            values(arg(a, k)?)?
                .first()
                .copied()
                .ok_or_else(|| candle_core::Error::Msg("empty".into()))
        };
        let (end, start, step) = (s(0)?, s(1)?, s(2)?);
        if step == 0.0 {
            candle_core::bail!("range_1d: step 0")
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let v: Vec<f32> = (0..n).map(|k| start + k as f32 * step).collect();
        Ok(vec![tensor(v, &[n])?])
    });
    Ok(())
}

/// `fill`: a tensor of `shape` holding `value`.
pub(super) fn fill(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let value = b.scalar(i, op, "value")?.unwrap_or(0.0);
    let shape = b.var(i, op, "shape")?;
    b.push_fn(i, op, vec![shape], move |a| {
        let dims = dims_of(arg(a, 0)?)?;
        Ok(vec![tensor(vec![value; dims.iter().product()], &dims)?])
    });
    Ok(())
}

/// `fill_like`: `value` in the shape of `ref_tensor`.
pub(super) fn fill_like(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let value = b.scalar(i, op, "value")?.unwrap_or(0.0);
    let r = b.var(i, op, "ref_tensor")?;
    b.push_fn(i, op, vec![r], move |a| {
        let dims = arg(a, 0)?.dims().to_vec();
        Ok(vec![tensor(vec![value; dims.iter().product()], &dims)?])
    });
    Ok(())
}

/// `shape`: the dimensions of `x` as a 1-D tensor.
pub(super) fn shape(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], |a| {
        let d: Vec<f32> = arg(a, 0)?.dims().iter().map(|&d| d as f32).collect();
        let n = d.len();
        Ok(vec![tensor(d, &[n])?])
    });
    Ok(())
}

/// Sorted positions along axis `d` (stable; descending keeps equal values in index order).
fn order(v: &[f32], dims: &[usize], d: usize, ascending: bool) -> Vec<Vec<usize>> {
    let (outer, len, inner) = around(dims, d);
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for n in 0..inner {
            let at = |l: usize| v[(o * len + l) * inner + n];
            let mut idx: Vec<usize> = (0..len).collect();
            idx.sort_by(|&p, &q| {
                let c = at(p).total_cmp(&at(q));
                if ascending { c } else { c.reverse() }
            });
            out.push(idx);
        }
    }
    out
}

/// Writes per-lane lists (from [`order`]) back along axis `d` with `k` entries per lane.
fn scatter_lanes(lanes: &[Vec<f32>], dims: &[usize], d: usize, k: usize) -> CResult<Tensor> {
    let (outer, _, inner) = around(dims, d);
    let mut shape = dims.to_vec();
    shape[d] = k;
    let mut out = vec![0f32; outer * k * inner];
    for o in 0..outer {
        for n in 0..inner {
            let lane = &lanes[o * inner + n];
            for (l, &v) in lane.iter().take(k).enumerate() {
                out[(o * k + l) * inner + n] = v;
            }
        }
    }
    tensor(out, &shape)
}

/// `argsort` along `axis` (descending unless `ascending`).
pub(super) fn argsort(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ax = b.int_or(i, op, "axis", -1)?;
    let asc = b.flag(i, op, "ascending")?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let d = axis(ax, x.rank())?;
        let lanes: Vec<Vec<f32>> = order(&values(x)?, x.dims(), d, asc)
            .into_iter()
            .map(|l| l.into_iter().map(|p| p as f32).collect())
            .collect();
        Ok(vec![scatter_lanes(&lanes, x.dims(), d, x.dims()[d])?])
    });
    Ok(())
}

/// `topk`: the `k` largest (or smallest) values along `axis` and their indices.
pub(super) fn topk(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let k = b.int_or(i, op, "k", 1)?;
    let ax = b.int_or(i, op, "axis", -1)?;
    let asc = b.flag(i, op, "ascending")?;
    if !b.param(i, op, "sort")?.and_then(|v| v.scalar_bool()).unwrap_or(true) {
        return Err(b.unsupported(i, op, "topk with sort=False"));
    }
    let with_idx = b.param(i, op, "return_indices")?.and_then(|v| v.scalar_bool()).unwrap_or(true);
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let d = axis(ax, x.rank())?;
        let len = x.dims()[d];
        let k = if k < 0 { len } else { (k as usize).min(len) };
        let v = values(x)?;
        let ord = order(&v, x.dims(), d, asc);
        let (_, _, inner) = around(x.dims(), d);
        let vals: Vec<Vec<f32>> = ord
            .iter()
            .enumerate()
            .map(|(lane, l)| {
                let (o, n) = (lane / inner, lane % inner);
                l.iter().map(|&p| v[(o * len + p) * inner + n]).collect()
            })
            .collect();
        let mut out = vec![scatter_lanes(&vals, x.dims(), d, k)?];
        if with_idx {
            let idx: Vec<Vec<f32>> =
                ord.into_iter().map(|l| l.into_iter().map(|p| p as f32).collect()).collect();
            out.push(scatter_lanes(&idx, x.dims(), d, k)?);
        }
        Ok(out)
    });
    Ok(())
}

/// `band_part`: keeps `lower` diagonals below and `upper` above (negative keeps all).
pub(super) fn band_part(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let lower = b.int_or(i, op, "lower", -1)?;
    let upper = b.int_or(i, op, "upper", -1)?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let dims = x.dims();
        let r = dims.len();
        if r < 2 {
            candle_core::bail!("band_part: rank {r} < 2")
        }
        let (m, n) = (dims[r - 2], dims[r - 1]);
        let mut v = values(x)?;
        for (e, val) in v.iter_mut().enumerate() {
            let (row, col) = ((e / n) % m, e % n);
            let (row, col) = (row as i64, col as i64);
            let keep = (lower < 0 || row - col <= lower) && (upper < 0 || col - row <= upper);
            if !keep {
                *val = 0.0;
            }
        }
        Ok(vec![tensor(v, dims)?])
    });
    Ok(())
}

/// `flatten2d`: `[prod(dims[..axis]), prod(dims[axis..])]`.
pub(super) fn flatten2d(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ax = b.int_or(i, op, "axis", 1)?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let r = x.rank() as i64;
        let d = if ax < 0 { ax + r } else { ax };
        if d < 0 || d > r {
            candle_core::bail!("flatten2d: axis {ax} for rank {r}")
        }
        let d = d as usize;
        let lead: usize = x.dims()[..d].iter().product();
        let rest: usize = x.dims()[d..].iter().product();
        Ok(vec![x.reshape((lead, rest))?])
    });
    Ok(())
}

/// `slice_by_size`: `size[d]` elements from `begin[d]` (`-1` means to the end).
pub(super) fn slice_by_size(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let x = b.var(i, op, "x")?;
    let begin = b.var(i, op, "begin")?;
    let size = b.ints(i, op, "size")?.ok_or_else(|| b.bad(i, op, "no size"))?;
    b.push_fn(i, op, vec![x, begin], move |a| {
        let mut y = arg(a, 0)?.clone();
        let begin = ints(arg(a, 1)?)?;
        if begin.len() != y.rank() || size.len() != y.rank() {
            candle_core::bail!("slice_by_size: begin/size do not match rank {}", y.rank())
        }
        for d in 0..y.rank() {
            let len = y.dims()[d] as i64;
            let s = if begin[d] < 0 { begin[d] + len } else { begin[d] };
            let n = if size[d] < 0 { len - s } else { size[d] };
            if s < 0 || n < 0 || s + n > len {
                candle_core::bail!(
                    "slice_by_size: {}+{} outside an axis of {len}",
                    begin[d],
                    size[d]
                )
            }
            y = y.narrow(d, s as usize, n as usize)?;
        }
        Ok(vec![y.contiguous()?])
    });
    Ok(())
}

/// Reshape to `split`, permute by `perm`, reshape to `out`.
fn shuffle(x: &Tensor, split: &[usize], perm: &[usize], out: &[usize]) -> CResult<Tensor> {
    x.reshape(split)?.permute(perm)?.contiguous()?.reshape(out)
}

fn nchw(x: &Tensor, what: &str) -> CResult<(usize, usize, usize, usize)> {
    match *x.dims() {
        [n, c, h, w] => Ok((n, c, h, w)),
        ref d => candle_core::bail!("{what}: expected a rank-4 NCHW input, got {d:?}"),
    }
}

/// `depth_to_space` (DCR), `pixel_shuffle` (CRD), `space_to_depth`, `pixel_unshuffle`.
pub(super) fn depth_space(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let kind = op.op_type.clone();
    let param = match kind.as_str() {
        "depth_to_space" | "space_to_depth" => "block_size",
        "pixel_shuffle" => "upscale_factor",
        _ => "downscale_factor",
    };
    let r = b.int_or(i, op, param, 0)?;
    let r = usize::try_from(r)
        .ok()
        .filter(|&r| r > 0)
        .ok_or_else(|| b.bad(i, op, format!("`{param}` must be positive")))?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let (n, c, h, w) = nchw(x, &kind)?;
        let y = match kind.as_str() {
            "depth_to_space" | "pixel_shuffle" => {
                if c % (r * r) != 0 {
                    candle_core::bail!("{kind}: {c} channels not divisible by {}", r * r)
                }
                let oc = c / (r * r);
                if kind == "depth_to_space" {
                    shuffle(x, &[n, r, r, oc, h, w], &[0, 3, 4, 1, 5, 2], &[n, oc, h * r, w * r])?
                } else {
                    shuffle(x, &[n, oc, r, r, h, w], &[0, 1, 4, 2, 5, 3], &[n, oc, h * r, w * r])?
                }
            }
            _ => {
                if h % r != 0 || w % r != 0 {
                    candle_core::bail!("{kind}: {h}x{w} not divisible by {r}")
                }
                let (oh, ow) = (h / r, w / r);
                if kind == "space_to_depth" {
                    shuffle(x, &[n, c, oh, r, ow, r], &[0, 3, 5, 1, 2, 4], &[n, c * r * r, oh, ow])?
                } else {
                    shuffle(x, &[n, c, oh, r, ow, r], &[0, 1, 3, 5, 2, 4], &[n, c * r * r, oh, ow])?
                }
            }
        };
        Ok(vec![y])
    });
    Ok(())
}

/// `reshape_like`: reshape to the shape of `ref_tensors` (iOS16: concatenated slices of them).
pub(super) fn reshape_like(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let begins = tuple_ints(b, i, op, "begins")?;
    let ends = tuple_ints(b, i, op, "ends")?;
    let end_masks: Vec<bool> = tuple_ints(b, i, op, "end_masks")?.iter().map(|&m| m != 0).collect();
    let x = b.var(i, op, "x")?;
    let refs: Vec<Argument> = op.inputs.get("ref_tensors").cloned().unwrap_or_default();
    let mut inputs = vec![x];
    for r in &refs {
        inputs.push(b.arg_slot(i, op, r)?);
    }
    b.push_fn(i, op, inputs, move |a| {
        let mut shape = Vec::new();
        for (k, r) in a[1..].iter().enumerate() {
            let d = r.dims();
            let s = usize::try_from(*begins.get(k).unwrap_or(&0)).unwrap_or(0);
            let e = if end_masks.get(k).copied().unwrap_or(false) {
                d.len()
            } else {
                usize::try_from(*ends.get(k).unwrap_or(&0)).unwrap_or(0)
            };
            shape.extend_from_slice(d.get(s..e).unwrap_or(&[]));
        }
        Ok(vec![arg(a, 0)?.reshape(shape)?])
    });
    Ok(())
}

/// A `Tuple[const<int32>]` (or `Tuple[const<bool>]`) input: one const per binding (as
/// coremltools writes `reshape_like`'s `begins`/`ends`/`end_masks`), or one list const.
fn tuple_ints(b: &mut Builder<'_>, i: usize, op: &Operation, name: &str) -> Result<Vec<i64>> {
    let args = op.inputs.get(name).cloned().unwrap_or_default();
    if args.len() == 1 {
        return b.ints(i, op, name)?.ok_or_else(|| b.bad(i, op, format!("no `{name}`")));
    }
    let mut out = Vec::with_capacity(args.len());
    for a in &args {
        let v = match a {
            Argument::Value(v) => Some(std::sync::Arc::new((b.resolve)(v)?)),
            Argument::Name(n) => b.named_const(n)?,
        };
        let v = v
            .and_then(|v| v.to_i64_vec())
            .ok_or_else(|| b.bad(i, op, format!("`{name}` is not a tuple of integer consts")))?;
        out.extend(v);
    }
    Ok(out)
}

fn block_params(
    b: &mut Builder<'_>,
    i: usize,
    op: &Operation,
    pads: &str,
) -> Result<([usize; 2], [usize; 4])> {
    let bs = b.usizes(i, op, "block_shape")?.unwrap_or_default();
    let p = b.usizes(i, op, pads)?.unwrap_or_default();
    match (bs.as_slice(), p.as_slice()) {
        (&[bh, bw], &[t, bo, l, r]) if bh > 0 && bw > 0 => Ok(([bh, bw], [t, bo, l, r])),
        _ => Err(b.bad(i, op, format!("block_shape {bs:?} / {pads} {p:?}"))),
    }
}

/// `space_to_batch` (TensorFlow order): pads H/W, then moves `bh x bw` blocks into the batch.
pub(super) fn space_to_batch(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ([bh, bw], [t, bo, l, r]) = block_params(b, i, op, "paddings")?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?.pad_with_zeros(2, t, bo)?.pad_with_zeros(3, l, r)?;
        let (n, c, h, w) = nchw(&x, "space_to_batch")?;
        if h % bh != 0 || w % bw != 0 {
            candle_core::bail!("space_to_batch: padded {h}x{w} not divisible by {bh}x{bw}")
        }
        let (oh, ow) = (h / bh, w / bw);
        // [n, c, oh, bh, ow, bw] -> [bh, bw, n, c, oh, ow]
        let y =
            shuffle(&x, &[n, c, oh, bh, ow, bw], &[3, 5, 0, 1, 2, 4], &[bh * bw * n, c, oh, ow])?;
        Ok(vec![y])
    });
    Ok(())
}

/// `batch_to_space`: the inverse of `space_to_batch`, then `crops` removed.
pub(super) fn batch_to_space(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ([bh, bw], [t, bo, l, r]) = block_params(b, i, op, "crops")?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let (nb, c, h, w) = nchw(x, "batch_to_space")?;
        if nb % (bh * bw) != 0 {
            candle_core::bail!("batch_to_space: batch {nb} not divisible by {}", bh * bw)
        }
        let n = nb / (bh * bw);
        // [bh, bw, n, c, h, w] -> [n, c, h, bh, w, bw]
        let y = shuffle(x, &[bh, bw, n, c, h, w], &[2, 3, 4, 0, 5, 1], &[n, c, h * bh, w * bw])?;
        let (fh, fw) = (h * bh, w * bw);
        if t + bo > fh || l + r > fw {
            candle_core::bail!("batch_to_space: crops larger than {fh}x{fw}")
        }
        Ok(vec![y.narrow(2, t, fh - t - bo)?.narrow(3, l, fw - l - r)?.contiguous()?])
    });
    Ok(())
}
