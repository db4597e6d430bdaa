//! Direct depthwise convolution on NCHW planes: one filter per channel, any kernel size,
//! stride, dilation and padding; inner loops are branch-free axpys over valid output spans.

use rayon::prelude::*;

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

/// Runs the depthwise convolution over `planes` channel planes (batch folded in: plane `p`
/// uses filter `p % channels`). `x` holds `planes * h * w`, `out` `planes * oh * ow`.
pub(crate) fn depthwise(
    x: &[f32],
    out: &mut [f32],
    weight: &[f32],
    bias: &[f32],
    channels: usize,
    g: DwGeometry,
    act: Activation,
) {
    let in_plane = g.h * g.w;
    let out_plane = g.oh * g.ow;
    let taps = g.kh * g.kw;
    out.par_chunks_mut(out_plane).enumerate().for_each(|(p, o)| {
        let c = p % channels;
        let xin = &x[p * in_plane..(p + 1) * in_plane];
        let wk = &weight[c * taps..(c + 1) * taps];
        o.fill(bias[c]);
        let (sy, sx) = g.stride;
        let (dy, dx) = g.dilation;
        for oy in 0..g.oh {
            let orow = &mut o[oy * g.ow..(oy + 1) * g.ow];
            for ky in 0..g.kh {
                let iy = (oy * sy + ky * dy) as isize - g.pad_top as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let irow = &xin[iy as usize * g.w..(iy as usize + 1) * g.w];
                for kx in 0..g.kw {
                    let wv = wk[ky * g.kw + kx];
                    let k_off = kx * dx;
                    let (lo, hi) = valid_span(k_off, g.pad_left, sx, g.w, g.ow);
                    if lo >= hi {
                        continue;
                    }
                    let start = lo * sx + k_off - g.pad_left;
                    if sx == 1 {
                        let src = &irow[start..start + (hi - lo)];
                        for (d, s) in orow[lo..hi].iter_mut().zip(src) {
                            *d += wv * s;
                        }
                    } else {
                        for (i, d) in orow[lo..hi].iter_mut().enumerate() {
                            *d += wv * irow[start + i * sx];
                        }
                    }
                }
            }
        }
        apply_activation(o, act);
    });
}
