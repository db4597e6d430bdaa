//! Pooling over 1 or 3 spatial dimensions (`max_pool`, `avg_pool` on `[N, C, L]` /
//! `[N, C, D, H, W]`) and `l2_pool` of any rank: a direct loop over each window. 2-D max/avg
//! pooling stays on the plan's `Pool2d` step (`compile.rs`); this file takes the other ranks
//! with the same window rules (pad types `valid` / `same` / `custom`, `ceil_mode`, and for
//! average pooling `exclude_padding_from_average`).

use candle_core::{Result as CResult, Tensor};
use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, tensor, values};

/// What a window reduces to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reduce {
    Max,
    /// Average; `exclude_pad` divides by the in-bounds count.
    Avg {
        exclude_pad: bool,
    },
    /// Square root of the sum of squares.
    L2,
}

/// How the windows pad the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pad {
    Valid,
    Same,
    /// `[begin, end]` per spatial dimension, flattened.
    Custom(Vec<usize>),
}

/// An N-D pooling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolNd {
    pub(crate) reduce: Reduce,
    pub(crate) kernel: Vec<usize>,
    pub(crate) strides: Vec<usize>,
    pub(crate) pad: Pad,
    pub(crate) ceil_mode: bool,
}

impl PoolNd {
    /// `(pad before, pad after, output size)` per spatial dimension of `sizes`.
    fn geometry(&self, sizes: &[usize]) -> CResult<Vec<(usize, usize, usize)>> {
        let r = sizes.len();
        if self.kernel.len() != r || self.strides.len() != r {
            candle_core::bail!(
                "pool: kernel {:?} / strides {:?} for {r} spatial dimensions",
                self.kernel,
                self.strides
            )
        }
        (0..r)
            .map(|d| {
                let (i, k, s) = (sizes[d], self.kernel[d], self.strides[d]);
                if k == 0 || s == 0 {
                    candle_core::bail!("pool: kernel and strides must be positive")
                }
                let (b, e) = match &self.pad {
                    Pad::Valid => (0, 0),
                    Pad::Same => {
                        let total = (i.div_ceil(s).saturating_sub(1) * s + k).saturating_sub(i);
                        (total / 2, total - total / 2)
                    }
                    Pad::Custom(p) => match (p.get(2 * d), p.get(2 * d + 1)) {
                        (Some(&b), Some(&e)) => (b, e),
                        _ => candle_core::bail!("pool: custom pad {p:?} for {r} dimensions"),
                    },
                };
                let padded = i + b + e;
                if padded < k {
                    candle_core::bail!("pool: window {k} larger than padded size {padded}")
                }
                let mut o = if self.ceil_mode {
                    (padded - k).div_ceil(s) + 1
                } else {
                    (padded - k) / s + 1
                };
                // Ceil mode never starts a window in the end padding (PyTorch's rule).
                if self.ceil_mode && o > 1 && (o - 1) * s >= i + b {
                    o -= 1;
                }
                Ok((b, e, o))
            })
            .collect()
    }

    /// Runs on `[N, C, spatial...]` (or `[C, spatial...]`).
    pub(crate) fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let r = self.kernel.len();
        let dims = x.dims();
        if dims.len() < r + 1 {
            candle_core::bail!("pool: a {r}-D pooling of a rank-{} input", dims.len())
        }
        let lead = dims.len() - r;
        let sizes = &dims[lead..];
        let geo = self.geometry(sizes)?;
        let out_sizes: Vec<usize> = geo.iter().map(|g| g.2).collect();
        let plane: usize = sizes.iter().product();
        let out_plane: usize = out_sizes.iter().product();
        let v = values(x)?;
        let mut out = Vec::with_capacity(v.len() / plane.max(1) * out_plane);
        let window: usize = self.kernel.iter().product();
        let mut o_idx = vec![0usize; r];
        let mut k_idx = vec![0usize; r];
        for p in v.chunks_exact(plane.max(1)) {
            for on in 0..out_plane {
                unravel(on, &out_sizes, &mut o_idx);
                let (mut acc, mut max, mut count, mut in_pad) = (0f32, f32::NEG_INFINITY, 0, 0);
                for kn in 0..window {
                    unravel(kn, &self.kernel, &mut k_idx);
                    let (mut flat, mut inside, mut past_end) = (0usize, true, false);
                    for d in 0..r {
                        let at =
                            (o_idx[d] * self.strides[d] + k_idx[d]) as isize - geo[d].0 as isize;
                        if at >= (sizes[d] + geo[d].1) as isize {
                            past_end = true;
                        }
                        if at < 0 || at >= sizes[d] as isize {
                            inside = false;
                        } else {
                            flat = flat * sizes[d] + at as usize;
                        }
                    }
                    if past_end {
                        continue; // a ceil-mode window hanging past the padding
                    }
                    in_pad += 1;
                    if !inside {
                        continue;
                    }
                    let x = p[flat];
                    acc += if self.reduce == Reduce::L2 { x * x } else { x };
                    max = max.max(x);
                    count += 1;
                }
                out.push(match self.reduce {
                    Reduce::Max => max,
                    Reduce::Avg { exclude_pad: true } => acc / count.max(1) as f32,
                    Reduce::Avg { exclude_pad: false } => acc / in_pad.max(1) as f32,
                    Reduce::L2 => acc.sqrt(),
                });
            }
        }
        tensor(out, &[&dims[..lead], &out_sizes[..]].concat())
    }
}

/// Row-major multi-index of `n` in `shape`.
fn unravel(mut n: usize, shape: &[usize], idx: &mut [usize]) {
    for d in (0..shape.len()).rev() {
        idx[d] = n % shape[d];
        n /= shape[d];
    }
}

/// `max_pool` / `avg_pool` / `l2_pool`: 2-D max and average pooling on the plan's own step,
/// every other case here.
pub(super) fn pool(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let kernel = b.usizes(i, op, "kernel_sizes")?.ok_or_else(|| b.bad(i, op, "no kernel"))?;
    if kernel.len() == 2 && op.op_type != "l2_pool" {
        return super::core_op(b, i, op);
    }
    let reduce = match op.op_type.as_str() {
        "max_pool" => Reduce::Max,
        "avg_pool" => Reduce::Avg { exclude_pad: b.flag(i, op, "exclude_padding_from_average")? },
        _ => Reduce::L2,
    };
    let strides = b.usizes(i, op, "strides")?.unwrap_or_else(|| vec![1; kernel.len()]);
    let pad = match b.string(i, op, "pad_type")?.as_deref() {
        None | Some("valid") => Pad::Valid,
        Some("same") => Pad::Same,
        Some("custom") => Pad::Custom(b.usizes(i, op, "pad")?.unwrap_or_default()),
        Some(other) => return Err(b.unsupported(i, op, format!("pad_type `{other}`"))),
    };
    let ceil_mode = b.flag(i, op, "ceil_mode")?;
    let p = PoolNd { reduce, kernel, strides, pad, ceil_mode };
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| Ok(vec![p.forward(arg(a, 0)?)?]));
    Ok(())
}

#[cfg(test)]
#[path = "op_pool_nd_tests.rs"]
mod tests;
