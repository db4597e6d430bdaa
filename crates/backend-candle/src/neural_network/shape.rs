//! Layers that move or reduce data: `concat`/`concatND`, `flatten`/`flattenTo2D`, `reshape`/
//! `reshapeStatic`, `permute`/`transpose`, `squeeze`/`expandDims`, `split`/`splitND`,
//! `slice`/`sliceStatic`, the legacy `reduce` and the ND `reduce*` layers.

use coreml_format::proto::{self as pb, NeuralNetworkLayer as Layer};
use inference_api::Result;

use super::{Emitter, boolean, bools, int, ints, name};

/// `concat`: along the channel axis (the third from last).
pub(super) fn concat(e: &mut Emitter, l: &Layer, p: &pb::ConcatLayerParams) -> Result<()> {
    if p.sequence_concat {
        return Err(e.unsupported("sequenceConcat"));
    }
    concat_along(e, l, -3, false)
}

/// `concatND`: along `axis`, optionally interleaved.
pub(super) fn concat_nd(e: &mut Emitter, l: &Layer, p: &pb::ConcatNdLayerParams) -> Result<()> {
    concat_along(e, l, p.axis, p.interleave)
}

fn concat_along(e: &mut Emitter, l: &Layer, axis: i64, interleave: bool) -> Result<()> {
    let ins = e.inputs(l)?;
    let rank = ins.iter().map(|(_, r)| *r).max().flatten();
    let values = ins.iter().flat_map(|(v, _)| name(v)).collect();
    let inputs = vec![("values", values), ("axis", int(axis)), ("interleave", boolean(interleave))];
    let y = e.op("concat", inputs, rank);
    e.out(l, y)
}

fn known_rank(e: &Emitter, rank: Option<usize>) -> Result<usize> {
    rank.ok_or_else(|| e.unsupported("input of unknown rank"))
}

/// `flatten`: `[..., C, H, W]` to `[..., C*H*W, 1, 1]` (channel-last order: H, W, C first).
pub(super) fn flatten(e: &mut Emitter, l: &Layer, p: &pb::FlattenLayerParams) -> Result<()> {
    let (mut x, rank) = e.input(l, 0)?;
    let r = known_rank(e, rank)?;
    if r < 3 {
        let y = e.reshape(&x, &[-1]);
        return e.out(l, y);
    }
    if p.mode == pb::flatten_layer_params::FlattenOrder::ChannelLast as i32 {
        let mut perm: Vec<i64> = (0..r as i64).collect();
        perm[r - 3..].copy_from_slice(&[r as i64 - 2, r as i64 - 1, r as i64 - 3]);
        x = e.op("transpose", vec![("x", name(&x)), ("perm", ints(&perm))], Some(r));
    }
    let mut shape = vec![0i64; r - 3];
    shape.extend([-1, 1, 1]);
    let y = e.reshape(&x, &shape);
    e.out(l, y)
}

/// `flattenTo2D`: `[prod(dims[..axis]), prod(dims[axis..])]`.
pub(super) fn flatten_to_2d(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::FlattenTo2DLayerParams,
) -> Result<()> {
    let (x, _) = e.input(l, 0)?;
    let y = e.op("flatten2d", vec![("x", name(&x)), ("axis", int(p.axis))], Some(2));
    e.out(l, y)
}

/// `reshape`: to `[C, H, W]` (or `[1, C, H, W]`) per batch item, channel-first order.
pub(super) fn reshape(e: &mut Emitter, l: &Layer, p: &pb::ReshapeLayerParams) -> Result<()> {
    if p.mode != pb::reshape_layer_params::ReshapeOrder::ChannelFirst as i32 {
        return Err(e.unsupported("CHANNEL_LAST reshape"));
    }
    let target = match p.target_shape.as_slice() {
        [c, h, w] | [1, c, h, w] => [*c, *h, *w],
        other => return Err(e.unsupported(format!("target shape {other:?}"))),
    };
    let (x, rank) = e.input(l, 0)?;
    let r = known_rank(e, rank)?;
    let mut shape = if r >= 3 { vec![0i64; r - 3] } else { vec![1] };
    shape.extend(target);
    let y = e.reshape(&x, &shape);
    e.out(l, y)
}

/// `reshapeStatic`: to `targetShape`.
pub(super) fn reshape_static(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::ReshapeStaticLayerParams,
) -> Result<()> {
    let (x, _) = e.input(l, 0)?;
    let y = e.reshape(&x, &p.target_shape);
    e.out(l, y)
}

/// `permute`: a permutation of (sequence, C, H, W) that keeps the sequence axis in place.
pub(super) fn permute(e: &mut Emitter, l: &Layer, p: &pb::PermuteLayerParams) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let r = known_rank(e, rank)?;
    let a: Vec<i64> = p.axis.iter().map(|&v| v as i64).collect();
    let perm = match (r, a.as_slice()) {
        (4, [0, c, h, w]) => vec![0, *c, *h, *w],
        (5, [0, c, h, w]) => vec![0, 1, c + 1, h + 1, w + 1],
        _ => return Err(e.unsupported(format!("permutation {a:?} of a rank-{r} input"))),
    };
    let y = e.op("transpose", vec![("x", name(&x)), ("perm", ints(&perm))], Some(r));
    e.out(l, y)
}

/// `transpose`: by `axes`.
pub(super) fn transpose(e: &mut Emitter, l: &Layer, p: &pb::TransposeLayerParams) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let perm: Vec<i64> = p.axes.iter().map(|&v| v as i64).collect();
    let y = e.op("transpose", vec![("x", name(&x)), ("perm", ints(&perm))], rank);
    e.out(l, y)
}

/// `squeeze`: the given axes, or every axis of size 1.
pub(super) fn squeeze(e: &mut Emitter, l: &Layer, p: &pb::SqueezeLayerParams) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let y = if p.squeeze_all || p.axes.is_empty() {
        e.op("squeeze", vec![("x", name(&x))], None)
    } else {
        let r = rank.map(|r| r.saturating_sub(p.axes.len()));
        e.op("squeeze", vec![("x", name(&x)), ("axes", ints(&p.axes))], r)
    };
    e.out(l, y)
}

/// `expandDims`: new axes of size 1.
pub(super) fn expand_dims(e: &mut Emitter, l: &Layer, p: &pb::ExpandDimsLayerParams) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let r = rank.map(|r| r + p.axes.len());
    let y = e.op("expand_dims", vec![("x", name(&x)), ("axes", ints(&p.axes))], r);
    e.out(l, y)
}

fn split_along(e: &mut Emitter, l: &Layer, axis: i64, sizes: &[u64]) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let n = l.output.len();
    let mut inputs = vec![("x", name(&x)), ("axis", int(axis))];
    if sizes.is_empty() {
        inputs.push(("num_splits", int(n as i64)));
    } else {
        let s: Vec<i64> = sizes.iter().map(|&v| v as i64).collect();
        inputs.push(("split_sizes", ints(&s)));
    }
    let outs = e.op_n("split", inputs, n, rank);
    for (k, v) in outs.into_iter().enumerate() {
        e.bind(l, k, v)?;
    }
    Ok(())
}

/// `split`: into equal parts along the channel axis, one per output.
pub(super) fn split(e: &mut Emitter, l: &Layer, _p: &pb::SplitLayerParams) -> Result<()> {
    split_along(e, l, -3, &[])
}

/// `splitND`: along `axis`, into equal parts or `splitSizes`.
pub(super) fn split_nd(e: &mut Emitter, l: &Layer, p: &pb::SplitNdLayerParams) -> Result<()> {
    split_along(e, l, p.axis, &p.split_sizes)
}

/// `slice`: `[start, end)` with a stride along C, H or W (negative indices count from the end).
pub(super) fn slice(e: &mut Emitter, l: &Layer, p: &pb::SliceLayerParams) -> Result<()> {
    use pb::slice_layer_params::SliceAxis as A;
    let (x, rank) = e.input(l, 0)?;
    let r = known_rank(e, rank)?;
    let axis = match A::try_from(p.axis) {
        Ok(A::ChannelAxis) => r.checked_sub(3),
        Ok(A::HeightAxis) => r.checked_sub(2),
        Ok(A::WidthAxis) => r.checked_sub(1),
        Err(_) => None,
    }
    .ok_or_else(|| e.bad(format!("slice axis {} of a rank-{r} input", p.axis)))?;
    let mut begin = vec![0i64; r];
    let mut end = vec![0i64; r];
    let mut stride = vec![1i64; r];
    let mut begin_mask = vec![true; r];
    let mut end_mask = vec![true; r];
    begin[axis] = p.start_index;
    begin_mask[axis] = false;
    end[axis] = p.end_index;
    end_mask[axis] = false;
    stride[axis] = p.stride.max(1) as i64;
    let inputs = vec![
        ("x", name(&x)),
        ("begin", ints(&begin)),
        ("end", ints(&end)),
        ("stride", ints(&stride)),
        ("begin_mask", bools(&begin_mask)),
        ("end_mask", bools(&end_mask)),
    ];
    let y = e.op("slice_by_index", inputs, Some(r));
    e.out(l, y)
}

/// `sliceStatic`: `slice_by_index` with masks.
pub(super) fn slice_static(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::SliceStaticLayerParams,
) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let squeezed = p.squeeze_masks.iter().filter(|&&s| s).count();
    let mut inputs = vec![
        ("x", name(&x)),
        ("begin", ints(&p.begin_ids)),
        ("end", ints(&p.end_ids)),
        ("stride", ints(&p.strides)),
        ("begin_mask", bools(&p.begin_masks)),
        ("end_mask", bools(&p.end_masks)),
    ];
    if !p.squeeze_masks.is_empty() {
        inputs.push(("squeeze_mask", bools(&p.squeeze_masks)));
    }
    let y = e.op("slice_by_index", inputs, rank.map(|r| r.saturating_sub(squeezed)));
    e.out(l, y)
}

/// The legacy `reduce`: over C, H, W or a combination, keeping the reduced axes as size 1.
pub(super) fn reduce(e: &mut Emitter, l: &Layer, p: &pb::ReduceLayerParams) -> Result<()> {
    use pb::reduce_layer_params::{ReduceAxis as A, ReduceOperation as O};
    let (x, rank) = e.input(l, 0)?;
    let axes: &[i64] = match A::try_from(p.axis) {
        Ok(A::Chw) => &[-3, -2, -1],
        Ok(A::Hw) => &[-2, -1],
        Ok(A::C) => &[-3],
        Ok(A::H) => &[-2],
        Ok(A::W) => &[-1],
        Err(_) => return Err(e.bad(format!("reduce axis {}", p.axis))),
    };
    let op = match O::try_from(p.mode) {
        Ok(O::Sum) => "reduce_sum",
        Ok(O::Avg) => "reduce_mean",
        Ok(O::Prod) => "reduce_prod",
        Ok(O::Logsum) => "reduce_log_sum",
        Ok(O::Sumsquare) => "reduce_sum_square",
        Ok(O::L1) => "reduce_l1_norm",
        Ok(O::L2) => "reduce_l2_norm",
        Ok(O::Max) => "reduce_max",
        Ok(O::Min) => "reduce_min",
        Ok(O::Argmax) => {
            let &[axis] = axes else {
                return Err(e.unsupported("ARGMAX over more than one axis"));
            };
            let inputs = vec![("x", name(&x)), ("axis", int(axis)), ("keep_dims", boolean(true))];
            let y = e.op("reduce_argmax", inputs, rank);
            return e.out(l, y);
        }
        Err(_) => return Err(e.bad(format!("reduce mode {}", p.mode))),
    };
    let inputs = vec![("x", name(&x)), ("axes", ints(axes)), ("keep_dims", boolean(true))];
    let y = e.op(op, inputs, rank);
    e.out(l, y)
}

/// An ND reduction over `axes` (or every axis).
fn reduce_nd(
    e: &mut Emitter,
    l: &Layer,
    op: &str,
    axes: &[i64],
    keep: bool,
    all: bool,
) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let mut inputs = vec![("x", name(&x)), ("keep_dims", boolean(keep))];
    let out_rank = if all || axes.is_empty() {
        if keep { rank } else { Some(0) }
    } else {
        inputs.push(("axes", ints(axes)));
        if keep { rank } else { rank.map(|r| r.saturating_sub(axes.len())) }
    };
    let y = e.op(op, inputs, out_rank);
    e.out(l, y)
}

macro_rules! reduce_nd {
    ($($f:ident, $params:ident, $op:literal;)*) => {$(
        #[doc = concat!("The ND reduction computed by MIL `", $op, "`.")]
        pub(super) fn $f(e: &mut Emitter, l: &Layer, p: &pb::$params) -> Result<()> {
            reduce_nd(e, l, $op, &p.axes, p.keep_dims, p.reduce_all)
        }
    )*};
}

reduce_nd! {
    reduce_l1, ReduceL1LayerParams, "reduce_l1_norm";
    reduce_l2, ReduceL2LayerParams, "reduce_l2_norm";
    reduce_log_sum, ReduceLogSumLayerParams, "reduce_log_sum";
    reduce_log_sum_exp, ReduceLogSumExpLayerParams, "reduce_log_sum_exp";
    reduce_max, ReduceMaxLayerParams, "reduce_max";
    reduce_mean, ReduceMeanLayerParams, "reduce_mean";
    reduce_min, ReduceMinLayerParams, "reduce_min";
    reduce_prod, ReduceProdLayerParams, "reduce_prod";
    reduce_sum, ReduceSumLayerParams, "reduce_sum";
    reduce_sum_square, ReduceSumSquareLayerParams, "reduce_sum_square";
}
