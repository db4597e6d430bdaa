//! Direct depthwise convolution on NCHW planes: one filter per output channel (channel
//! multiplier >= 1), any kernel size, stride, dilation and padding. Inner loops are branch-free
//! FMAs over contiguous output spans; strided convolutions first split each input row into its
//! stride phases so their taps read contiguously too. Compiled for AVX2+FMA when present.

use rayon::prelude::*;

use super::simd::dispatch;
use super::{Activation, apply_activation};

/// Geometry of one depthwise convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DwGeometry {
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub dilation: (usize, usize),
    pub pad_top: usize,
    pub pad_left: usize,
}

/// Output x range `[lo, hi)` for which `ox*s + k*d - pad` is a valid input column.
#[inline]
fn valid_span(k_off: usize, pad: usize, s: usize, in_len: usize, out_len: usize) -> (usize, usize) {
    // ix = ox*s + k_off - pad must satisfy 0 <= ix < in_len.
    let lo = if pad > k_off { (pad - k_off).div_ceil(s) } else { 0 };
    let hi = if in_len + pad > k_off { (in_len + pad - k_off - 1) / s + 1 } else { 0 };
    (lo.min(out_len), hi.min(out_len).max(lo.min(out_len)))
}

/// Runs the depthwise convolution. `x` holds `n * in_channels` planes of `h * w`, `out`
/// `n * channels` planes of `oh * ow`, where `channels = in_channels * mult`; output channel
/// `c` reads input channel `c / mult` with filter `c`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise(
    x: &[f32],
    out: &mut [f32],
    weight: &[f32],
    bias: &[f32],
    channels: usize,
    mult: usize,
    g: DwGeometry,
    act: Activation,
) {
    let in_plane = g.h * g.w;
    let out_plane = g.oh * g.ow;
    let in_channels = channels / mult.max(1);
    out.par_chunks_mut(out_plane).enumerate().for_each_init(Vec::new, |scratch, (p, o)| {
        let (b, c) = (p / channels, p % channels);
        let ip = b * in_channels + c / mult.max(1);
        let xin = &x[ip * in_plane..(ip + 1) * in_plane];
        let wk = &weight[c * g.kh * g.kw..(c + 1) * g.kh * g.kw];
        dispatch(|| plane(xin, o, wk, bias[c], g, act, scratch));
    });
}

/// One output plane; `scratch` holds the stride-phase split of the input when `sx > 1`.
#[inline(always)]
fn plane(
    xin: &[f32],
    o: &mut [f32],
    wk: &[f32],
    bias: f32,
    g: DwGeometry,
    act: Activation,
    scratch: &mut Vec<f32>,
) {
    let (sy, sx) = g.stride;
    let (dy, dx) = g.dilation;
    // Phase-split columns: phase q holds input columns q, q+sx, q+2sx, ... (width pw).
    let pw = g.w.div_ceil(sx);
    let src: &[f32] = if sx == 1 {
        xin
    } else {
        scratch.clear();
        scratch.resize(g.h * sx * pw, 0.0);
        for y in 0..g.h {
            let row = &xin[y * g.w..(y + 1) * g.w];
            for q in 0..sx {
                let dst = &mut scratch[(y * sx + q) * pw..(y * sx + q + 1) * pw];
                for (d, s) in dst.iter_mut().zip(row.iter().skip(q).step_by(sx)) {
                    *d = *s;
                }
            }
        }
        scratch
    };
    let row_len = if sx == 1 { g.w } else { pw };
    o.fill(bias);
    for oy in 0..g.oh {
        let orow = &mut o[oy * g.ow..(oy + 1) * g.ow];
        for ky in 0..g.kh {
            let iy = (oy * sy + ky * dy) as isize - g.pad_top as isize;
            if iy < 0 || iy >= g.h as isize {
                continue;
            }
            let iy = iy as usize;
            for kx in 0..g.kw {
                let wv = wk[ky * g.kw + kx];
                let k_off = kx * dx;
                let (lo, hi) = valid_span(k_off, g.pad_left, sx, g.w, g.ow);
                if lo >= hi {
                    continue;
                }
                let shift = k_off as isize - g.pad_left as isize;
                let q = shift.rem_euclid(sx as isize) as usize;
                let j0 = (lo as isize + shift.div_euclid(sx as isize)) as usize;
                let base = if sx == 1 { iy * g.w } else { (iy * sx + q) * pw };
                let srow = &src[base..base + row_len];
                let s = &srow[j0..j0 + (hi - lo)];
                for (d, v) in orow[lo..hi].iter_mut().zip(s) {
                    *d += v * wv;
                }
            }
        }
    }
    apply_activation(o, act);
}
