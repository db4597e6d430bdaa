//! Reductions over axes (sum, mean, prod, min, max, L1/L2 norms, log-sum(-exp), sum of
//! squares) and the arg reductions.

use candle_core::{Result as CResult, Tensor};
use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, around, tensor, values};
use crate::mlprogram::ops::axis;

/// How a reduction folds the values along its axes.
#[derive(Clone, Copy, Debug)]
enum Fold {
    Sum,
    Mean,
    Prod,
    Min,
    Max,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

fn fold(k: Fold, v: &[f32]) -> f32 {
    match k {
        Fold::Sum => v.iter().sum(),
        Fold::Mean => v.iter().sum::<f32>() / v.len().max(1) as f32,
        Fold::Prod => v.iter().product(),
        Fold::Min => v.iter().copied().fold(f32::INFINITY, f32::min),
        Fold::Max => v.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        Fold::L1 => v.iter().map(|x| x.abs()).sum(),
        Fold::L2 => v.iter().map(|x| x * x).sum::<f32>().sqrt(),
        Fold::LogSum => v.iter().sum::<f32>().ln(),
        Fold::LogSumExp => {
            let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if m.is_infinite() {
                return m;
            }
            m + v.iter().map(|x| (x - m).exp()).sum::<f32>().ln()
        }
        Fold::SumSquare => v.iter().map(|x| x * x).sum(),
    }
}

/// Reduces `x` over `axes` (all when `None`): the reduced axes are moved last, each output
/// element folds one contiguous run.
fn reduce(x: &Tensor, axes: Option<&[i64]>, keep: bool, k: Fold) -> CResult<Tensor> {
    let dims = x.dims().to_vec();
    let rank = dims.len();
    let mut red: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&a| axis(a, rank)).collect::<CResult<_>>()?,
        None => (0..rank).collect(),
    };
    red.sort_unstable();
    red.dedup();
    let kept: Vec<usize> = (0..rank).filter(|d| !red.contains(d)).collect();
    let perm: Vec<usize> = kept.iter().chain(&red).copied().collect();
    let v = values(&x.permute(perm)?)?;
    let run: usize = red.iter().map(|&d| dims[d]).product();
    let out: Vec<f32> = if run == 0 {
        vec![fold(k, &[]); v.len()]
    } else {
        v.chunks(run).map(|c| fold(k, c)).collect()
    };
    let shape: Vec<usize> = if keep {
        (0..rank).map(|d| if red.contains(&d) { 1 } else { dims[d] }).collect()
    } else {
        kept.iter().map(|&d| dims[d]).collect()
    };
    tensor(out, &shape)
}

/// `reduce_*` over `axes` with `keep_dims`.
pub(super) fn reduction(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let k = match op.op_type.as_str() {
        "reduce_sum" => Fold::Sum,
        "reduce_mean" => Fold::Mean,
        "reduce_prod" => Fold::Prod,
        "reduce_min" => Fold::Min,
        "reduce_max" => Fold::Max,
        "reduce_l1_norm" => Fold::L1,
        "reduce_l2_norm" => Fold::L2,
        "reduce_log_sum" => Fold::LogSum,
        "reduce_log_sum_exp" => Fold::LogSumExp,
        "reduce_sum_square" => Fold::SumSquare,
        other => return Err(b.unsupported(i, op, format!("reduction `{other}`"))),
    };
    let axes = b.ints(i, op, "axes")?;
    let keep = b.flag(i, op, "keep_dims")?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| Ok(vec![reduce(arg(a, 0)?, axes.as_deref(), keep, k)?]));
    Ok(())
}

/// `reduce_argmax` / `reduce_argmin` along one axis (first index on ties, as numpy).
pub(super) fn arg_reduction(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let max = op.op_type == "reduce_argmax";
    let ax = b.int_or(i, op, "axis", -1)?;
    let keep = b.flag(i, op, "keep_dims")?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let dims = x.dims().to_vec();
        let d = axis(ax, dims.len())?;
        let (outer, len, inner) = around(&dims, d);
        let v = values(x)?;
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for n in 0..inner {
                let mut best = 0;
                for l in 1..len {
                    let (c, bv) = (v[(o * len + l) * inner + n], v[(o * len + best) * inner + n]);
                    if (max && c > bv) || (!max && c < bv) {
                        best = l;
                    }
                }
                out.push(best as f32);
            }
        }
        let mut shape = dims.clone();
        if keep {
            shape[d] = 1;
        } else {
            shape.remove(d);
        }
        Ok(vec![tensor(out, &shape)?])
    });
    Ok(())
}
