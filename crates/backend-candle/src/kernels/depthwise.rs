//! Direct depthwise convolution on NCHW planes: one filter per output channel (channel
//! multiplier >= 1), any kernel size, stride, dilation and padding. Each plane is copied once
//! into zero-padded stride phases; output blocks of 8/16/32 columns accumulate in registers
//! over all taps with branch-free loops. Compiled for AVX2+FMA when present.

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

/// One output plane. The input is first copied into `scratch` as zero-padded stride-phase
/// planes (phase `q` holds padded columns `q, q+sx, ...`), so every tap of a block of output
/// columns reads one contiguous run; blocks of `B` outputs stay in registers across all taps.
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
    if g.ow <= 8 {
        plane_blocked::<8>(xin, o, wk, bias, g, act, scratch)
    } else if g.ow <= 16 {
        plane_blocked::<16>(xin, o, wk, bias, g, act, scratch)
    } else {
        plane_blocked::<32>(xin, o, wk, bias, g, act, scratch)
    }
}

#[inline(always)]
fn plane_blocked<const B: usize>(
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
    let owr = g.ow.div_ceil(B) * B;
    // Padded rows needed: output rows 0..oh touch padded rows up to (oh-1)*sy + (kh-1)*dy.
    let ph = (g.oh - 1) * sy + (g.kh - 1) * dy + 1;
    // Phase plane width: column block j reaches j + ((kw-1)*dx)/sx.
    let pw = owr + ((g.kw - 1) * dx) / sx + 1;
    scratch.clear();
    scratch.resize(ph * sx * pw, 0.0);
    for py in 0..ph {
        let iy = py as isize - g.pad_top as isize;
        if iy < 0 || iy >= g.h as isize {
            continue;
        }
        let row = &xin[iy as usize * g.w..(iy as usize + 1) * g.w];
        for (ix, &v) in row.iter().enumerate() {
            let pc = ix + g.pad_left; // padded column
            let (q, j) = (pc % sx, pc / sx);
            if j < pw {
                scratch[(py * sx + q) * pw + j] = v;
            }
        }
    }
    let src: &[f32] = scratch;
    let mut tmp = [0f32; B];
    for oy in 0..g.oh {
        let orow = &mut o[oy * g.ow..(oy + 1) * g.ow];
        for x0 in (0..owr).step_by(B) {
            let mut acc = [bias; B];
            for ky in 0..g.kh {
                let py = oy * sy + ky * dy;
                for kx in 0..g.kw {
                    let wv = wk[ky * g.kw + kx];
                    let off = kx * dx;
                    let base = (py * sx + off % sx) * pw + x0 + off / sx;
                    let s = &src[base..base + B];
                    for i in 0..B {
                        acc[i] += wv * s[i];
                    }
                }
            }
            let n = B.min(g.ow - x0.min(g.ow));
            if n == B {
                orow[x0..x0 + B].copy_from_slice(&acc);
            } else {
                tmp.copy_from_slice(&acc);
                orow[x0..x0 + n].copy_from_slice(&tmp[..n]);
            }
        }
    }
    apply_activation(o, act);
}
