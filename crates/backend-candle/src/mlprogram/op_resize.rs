//! Image resizing over the last two axes: nearest-neighbour and bilinear upsample/resize with
//! every sampling mode coremltools defines, and `crop`.

use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, tensor, values};

/// Where bilinear output pixels sample the input (coremltools' `sampling_mode` names;
/// `upsample_bilinear`'s `align_corners` maps to STRICT_ALIGN_CORNERS / UNALIGN_CORNERS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grid {
    StrictAlign,
    Align,
    Default,
    Offset,
    Unalign,
}

/// Input coordinate of output pixel `i` of `n_out` over an axis of `n_in`.
pub(super) fn grid_point(g: Grid, i: usize, n_in: usize, n_out: usize) -> f32 {
    let (xi, xo, i) = (n_in as f32, n_out as f32, i as f32);
    let p = match g {
        Grid::Align if n_out == 1 => (xi - 1.0) / 2.0,
        Grid::StrictAlign | Grid::Align => {
            if n_out == 1 {
                0.0
            } else {
                i * (xi - 1.0) / (xo - 1.0)
            }
        }
        Grid::Default => {
            if n_out == 1 {
                0.0
            } else {
                i * (xi - xi / xo) / (xo - 1.0)
            }
        }
        Grid::Offset => {
            let delta = (xi - 1.0).max(1.0) / xo;
            0.5 * delta + i * delta
        }
        Grid::Unalign => {
            let s = xi / xo;
            i * s + 0.5 * s - 0.5
        }
    };
    p.clamp(0.0, xi - 1.0)
}

/// `(lo, hi, weight of hi)` per output pixel.
fn taps(g: Grid, n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    (0..n_out)
        .map(|i| {
            let p = grid_point(g, i, n_in, n_out);
            let lo = p.floor() as usize;
            let hi = (lo + 1).min(n_in - 1);
            (lo, hi, p - lo as f32)
        })
        .collect()
}

/// Bilinear resize of the last two axes of `x` (rank 3 or more) to `oh` x `ow`.
pub(super) fn bilinear(
    x: &candle_core::Tensor,
    g: Grid,
    oh: usize,
    ow: usize,
) -> candle_core::Result<candle_core::Tensor> {
    let dims = x.dims();
    if dims.len() < 3 {
        candle_core::bail!("bilinear resize: input rank {} < 3", dims.len())
    }
    let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        candle_core::bail!("bilinear resize: empty size {h}x{w} -> {oh}x{ow}")
    }
    let (ty, tx) = (taps(g, h, oh), taps(g, w, ow));
    let v = values(x)?;
    let mut out = Vec::with_capacity(v.len() / (h * w) * oh * ow);
    for plane in v.chunks_exact(h * w) {
        for &(y0, y1, fy) in &ty {
            for &(x0, x1, fx) in &tx {
                let a = plane[y0 * w + x0] * (1.0 - fx) + plane[y0 * w + x1] * fx;
                let b = plane[y1 * w + x0] * (1.0 - fx) + plane[y1 * w + x1] * fx;
                out.push(a * (1.0 - fy) + b * fy);
            }
        }
    }
    let mut shape = dims.to_vec();
    let r = shape.len();
    shape[r - 2] = oh;
    shape[r - 1] = ow;
    tensor(out, &shape)
}

/// Nearest-neighbour resize of the last two axes of `x` (rank 3 or more) to `oh` x `ow`.
pub(super) fn nearest(
    x: &candle_core::Tensor,
    oh: usize,
    ow: usize,
) -> candle_core::Result<candle_core::Tensor> {
    let dims = x.dims();
    if dims.len() < 3 {
        candle_core::bail!("nearest resize: input rank {} < 3", dims.len())
    }
    let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let src = |i: usize, n_in: usize, n_out: usize| ((i * n_in) / n_out.max(1)).min(n_in - 1);
    let v = values(x)?;
    let mut out = Vec::with_capacity(v.len() / (h * w).max(1) * oh * ow);
    for plane in v.chunks_exact((h * w).max(1)) {
        for y in 0..oh {
            let sy = src(y, h, oh);
            for xx in 0..ow {
                out.push(plane[sy * w + src(xx, w, ow)]);
            }
        }
    }
    let mut shape = dims.to_vec();
    let r = shape.len();
    shape[r - 2] = oh;
    shape[r - 1] = ow;
    tensor(out, &shape)
}

fn scales(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<(f32, f32)> {
    Ok((
        b.scalar(i, op, "scale_factor_height")?.unwrap_or(1.0),
        b.scalar(i, op, "scale_factor_width")?.unwrap_or(1.0),
    ))
}

fn scaled(n: usize, s: f32) -> usize {
    (n as f32 * s).floor() as usize
}

/// `upsample_bilinear`: output `floor(H * scale)`; `align_corners` picks the grid.
pub(super) fn upsample_bilinear(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let (sh, sw) = scales(b, i, op)?;
    let align = b.param(i, op, "align_corners")?.and_then(|v| v.scalar_bool()).unwrap_or(true);
    let g = if align { Grid::StrictAlign } else { Grid::Unalign };
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let r = x.rank().max(2);
        let (h, w) = (x.dims()[r - 2], x.dims()[r - 1]);
        Ok(vec![bilinear(x, g, scaled(h, sh), scaled(w, sw))?])
    });
    Ok(())
}

/// `resize_bilinear` to a target size with a `sampling_mode`.
pub(super) fn resize_bilinear(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let oh = b.int_or(i, op, "target_size_height", 1)?;
    let ow = b.int_or(i, op, "target_size_width", 1)?;
    let g = grid(b, i, op)?;
    let (oh, ow) = (size(b, i, op, oh)?, size(b, i, op, ow)?);
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| Ok(vec![bilinear(arg(a, 0)?, g, oh, ow)?]));
    Ok(())
}

/// The op's `sampling_mode` (DEFAULT when absent).
pub(super) fn grid(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<Grid> {
    Ok(match b.string(i, op, "sampling_mode")?.as_deref() {
        None | Some("DEFAULT") => Grid::Default,
        Some("STRICT_ALIGN_CORNERS") => Grid::StrictAlign,
        Some("ALIGN_CORNERS") => Grid::Align,
        Some("OFFSET_CORNERS") => Grid::Offset,
        Some("UNALIGN_CORNERS") => Grid::Unalign,
        Some(other) => return Err(b.unsupported(i, op, format!("sampling_mode `{other}`"))),
    })
}

fn size(b: &mut Builder<'_>, i: usize, op: &Operation, v: i64) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| b.bad(i, op, format!("target size {v}")))
}

/// `upsample_nearest_neighbor` by scale factors.
pub(super) fn upsample_nearest(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let (sh, sw) = scales(b, i, op)?;
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let r = x.rank().max(2);
        let (h, w) = (x.dims()[r - 2], x.dims()[r - 1]);
        Ok(vec![nearest(x, scaled(h, sh), scaled(w, sw))?])
    });
    Ok(())
}

/// `resize_nearest_neighbor` to a target size.
pub(super) fn resize_nearest(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let oh = b.int_or(i, op, "target_size_height", 1)?;
    let ow = b.int_or(i, op, "target_size_width", 1)?;
    let (oh, ow) = (size(b, i, op, oh)?, size(b, i, op, ow)?);
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| Ok(vec![nearest(arg(a, 0)?, oh, ow)?]));
    Ok(())
}

/// `crop`: drops `crop_height = [top, bottom]` and `crop_width = [left, right]` pixels.
pub(super) fn crop(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let ch = b.usizes(i, op, "crop_height")?.unwrap_or(vec![0, 0]);
    let cw = b.usizes(i, op, "crop_width")?.unwrap_or(vec![0, 0]);
    let (&[t, bo], &[l, r]) = (ch.as_slice(), cw.as_slice()) else {
        return Err(b.bad(i, op, "crop_height/crop_width must have two values each"));
    };
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = arg(a, 0)?;
        let rank = x.rank();
        if rank < 2 {
            candle_core::bail!("crop: rank {rank} < 2")
        }
        let (h, w) = (x.dims()[rank - 2], x.dims()[rank - 1]);
        if t + bo >= h || l + r >= w {
            candle_core::bail!("crop: {t}+{bo} x {l}+{r} leaves nothing of {h}x{w}")
        }
        let y = x.narrow(rank - 2, t, h - t - bo)?.narrow(rank - 1, l, w - l - r)?;
        Ok(vec![y.contiguous()?])
    });
    Ok(())
}
