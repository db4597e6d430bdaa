//! Direct depthwise convolution on an NCHW plane, without padded copies: square 3x3 / 5x5 / 7x7
//! kernels, stride 1 or 2, dilation 1. Blocks of `R` output rows x `V` vectors of output columns
//! stay in registers; each input row is loaded once per block (masked loads supply the zero
//! padding at the plane's edges, stride 2 de-interleaves in registers) and feeds every output row
//! of the block that it touches. Bias and a clamp activation (ReLU, ReLU6, Clip) are applied in
//! registers before a masked store. AVX-512 and AVX2+FMA paths, and a portable scalar one.

#![allow(unsafe_code)]

use super::Activation;
use super::depthwise::DwGeometry;

/// Which depthwise kernel a call uses (chosen automatically; forced only by tests and A/B
/// benchmarks through [`crate::Conv2d::forward_depthwise_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DwIsa {
    /// The older kernel that copies each plane into zero-padded stride phases first (any
    /// geometry; AVX-512 / AVX2 / NEON / portable chosen at run time).
    Padded,
    /// AVX-512F, 16 lanes.
    Avx512,
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// Plain scalar Rust.
    Portable,
    /// AVX-512F with 16 channels in the lanes (transposed in and out of a padded buffer; any
    /// geometry, one channel per filter).
    Lanes,
}

impl DwIsa {
    /// True when this machine can run the path.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            DwIsa::Avx512 => std::is_x86_feature_detected!("avx512f"),
            // As the kernel itself decides (`INFER_NO_AVX512` switches it off too).
            DwIsa::Lanes => crate::dw_lanes::available(),
            #[cfg(target_arch = "x86_64")]
            DwIsa::Avx2 => super::simd::has_avx2_fma(),
            #[cfg(not(target_arch = "x86_64"))]
            DwIsa::Avx512 | DwIsa::Avx2 => false,
            DwIsa::Portable | DwIsa::Padded => true,
        }
    }
}

/// True when the direct kernel handles this geometry.
pub(crate) fn supports(g: &DwGeometry) -> bool {
    g.kh == g.kw
        && matches!(g.kh, 3 | 5 | 7)
        && g.stride.0 == g.stride.1
        && matches!(g.stride.0, 1 | 2)
        && g.dilation == (1, 1)
        && g.oh > 0
        && g.ow > 0
}

/// The clamp bounds of an activation that can be applied in registers.
pub(crate) fn clamp_of(act: Activation) -> Option<(f32, f32)> {
    match act {
        Activation::Relu => Some((0.0, f32::INFINITY)),
        Activation::Relu6 => Some((0.0, 6.0)),
        Activation::Clip { lo_milli, hi_milli } => {
            Some((lo_milli as f32 / 1000.0, hi_milli as f32 / 1000.0))
        }
        _ => None,
    }
}

/// One output plane `o` (`oh * ow`) from one input plane `xin` (`h * w`) and its `k * k` filter.
/// `clamp` is applied to every output when given. The caller checks [`supports`] and that `isa`
/// is available; returns false (having written nothing) when the slices are too short.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plane(
    isa: DwIsa,
    xin: &[f32],
    o: &mut [f32],
    wk: &[f32],
    bias: f32,
    g: &DwGeometry,
    clamp: Option<(f32, f32)>,
) -> bool {
    if xin.len() < g.h * g.w || o.len() < g.oh * g.ow || wk.len() < g.kh * g.kw || !supports(g) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    macro_rules! go {
        ($f:ident, $r:literal, $v:literal) => {
            match (g.kh, g.stride.0) {
                (3, 1) => $f::<3, 1, $r, $v>(xin, o, wk, bias, g, clamp),
                (3, _) => $f::<3, 2, $r, $v>(xin, o, wk, bias, g, clamp),
                (5, 1) => $f::<5, 1, $r, $v>(xin, o, wk, bias, g, clamp),
                (5, _) => $f::<5, 2, $r, $v>(xin, o, wk, bias, g, clamp),
                (7, 1) => $f::<7, 1, $r, $v>(xin, o, wk, bias, g, clamp),
                _ => $f::<7, 2, $r, $v>(xin, o, wk, bias, g, clamp),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        DwIsa::Avx512 if isa.available() => {
            // SAFETY: AVX-512F was detected; the slice lengths were checked above, and the
            // kernel only reads input columns inside [0, w) of rows inside [0, h) (masked loads)
            // and writes output columns inside [0, ow) of rows inside [0, oh) (masked stores).
            unsafe { if g.ow > 16 { go!(plane_avx512, 4, 2) } else { go!(plane_avx512, 8, 1) } }
        }
        #[cfg(target_arch = "x86_64")]
        DwIsa::Avx2 if isa.available() => {
            // SAFETY: AVX2 and FMA were detected; bounds as for the AVX-512 path.
            unsafe { if g.ow > 8 { go!(plane_avx2, 4, 2) } else { go!(plane_avx2, 8, 1) } }
        }
        DwIsa::Portable => plane_portable(xin, o, wk, bias, g, clamp),
        _ => return false,
    }
    true
}

/// Bit `i` set when input column `c + i` lies inside `[0, w)`, for `lanes` lanes.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn lane_mask(c: isize, w: usize, lanes: isize) -> u32 {
    let lo = (-c).clamp(0, lanes);
    let hi = (w as isize - c).clamp(0, lanes);
    if hi <= lo { 0 } else { ((1u32 << hi) - 1) & !((1u32 << lo) - 1) }
}

/// The scalar path: every output as a sum over the taps inside the plane.
fn plane_portable(
    xin: &[f32],
    o: &mut [f32],
    wk: &[f32],
    bias: f32,
    g: &DwGeometry,
    clamp: Option<(f32, f32)>,
) {
    let (k, s) = (g.kh, g.stride.0);
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let mut acc = bias;
            for ky in 0..k {
                let iy = (oy * s + ky) as isize - g.pad_top as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let row = &xin[iy as usize * g.w..(iy as usize + 1) * g.w];
                for kx in 0..k {
                    let ix = (ox * s + kx) as isize - g.pad_left as isize;
                    if ix >= 0 && ix < g.w as isize {
                        acc += wk[ky * k + kx] * row[ix as usize];
                    }
                }
            }
            if let Some((lo, hi)) = clamp {
                acc = acc.max(lo).min(hi);
            }
            o[oy * g.ow + ox] = acc;
        }
    }
}

/// The AVX-512 path: `R` output rows x `V` 16-lane vectors of output columns per block.
///
/// # Safety
/// AVX-512F must be available; `xin` holds `h * w`, `o` `oh * ow`, `wk` `K * K` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512<const K: usize, const S: usize, const R: usize, const V: usize>(
    xin: &[f32],
    o: &mut [f32],
    wk: &[f32],
    bias: f32,
    g: &DwGeometry,
    clamp: Option<(f32, f32)>,
) {
    use std::arch::x86_64::*;
    let (h, w, oh, ow) = (g.h as isize, g.w, g.oh, g.ow);
    let (pt, pl) = (g.pad_top as isize, g.pad_left as isize);
    let xp = xin.as_ptr();
    let op = o.as_mut_ptr();
    let wp = wk.as_ptr();
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let mut x0 = 0;
    while x0 < ow {
        // Column start and lane masks of every (vector, kx) load, fixed for the column block.
        let mut col = [[0isize; K]; V];
        let mut m0 = [[0u16; K]; V];
        let mut m1 = [[0u16; K]; V];
        let mut sm = [0u16; V];
        for v in 0..V {
            let ox = x0 + 16 * v;
            sm[v] = lane_mask(ox as isize, ow, 16) as u16;
            for kx in 0..K {
                let c = (ox * S) as isize + kx as isize - pl;
                col[v][kx] = c;
                m0[v][kx] = lane_mask(c, w, 16) as u16;
                m1[v][kx] = lane_mask(c + 16, w, 16) as u16;
            }
        }
        let mut oy0 = 0;
        while oy0 < oh {
            let mut acc = [[_mm512_set1_ps(bias); V]; R];
            for j in 0..(R - 1) * S + K {
                let iy = (oy0 * S + j) as isize - pt;
                if iy < 0 || iy >= h {
                    continue;
                }
                let rowp = xp.wrapping_offset(iy * w as isize);
                for kx in 0..K {
                    for v in 0..V {
                        let p = rowp.wrapping_offset(col[v][kx]);
                        // SAFETY: the masks enable only lanes whose column lies in [0, w) of
                        // row iy in [0, h), which are inside `xin`; masked-off lanes are not
                        // read.
                        let xv = unsafe {
                            if S == 1 {
                                _mm512_maskz_loadu_ps(m0[v][kx], p)
                            } else {
                                let a = _mm512_maskz_loadu_ps(m0[v][kx], p);
                                let b = _mm512_maskz_loadu_ps(m1[v][kx], p.wrapping_add(16));
                                _mm512_permutex2var_ps(a, even, b)
                            }
                        };
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            let ky = j as isize - (r * S) as isize;
                            if ky >= 0 && (ky as usize) < K {
                                // SAFETY: ky * K + kx < K * K <= wk.len().
                                let wv = unsafe { *wp.add(ky as usize * K + kx) };
                                acc_r[v] = _mm512_fmadd_ps(xv, _mm512_set1_ps(wv), acc_r[v]);
                            }
                        }
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate().take(oh - oy0) {
                for v in 0..V {
                    let mut y = acc_r[v];
                    if clamp.is_some() {
                        // max/min with the bound first: a NaN sum stays NaN.
                        y = _mm512_min_ps(vhi, _mm512_max_ps(vlo, y));
                    }
                    // SAFETY: lanes of `sm[v]` are output columns < ow of row oy0 + r < oh.
                    unsafe {
                        _mm512_mask_storeu_ps(
                            op.wrapping_add((oy0 + r) * ow + x0 + 16 * v),
                            sm[v],
                            y,
                        )
                    };
                }
            }
            oy0 += R;
        }
        x0 += 16 * V;
    }
}

/// An AVX2 lane mask: lane `i` all ones when bit `i` of `m` is set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn mask8(m: u32) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let v = _mm256_and_si256(_mm256_set1_epi32(m as i32), bits);
    _mm256_cmpeq_epi32(v, bits)
}

/// The AVX2+FMA path: `R` output rows x `V` 8-lane vectors of output columns per block.
///
/// # Safety
/// AVX2 and FMA must be available; otherwise as [`plane_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2<const K: usize, const S: usize, const R: usize, const V: usize>(
    xin: &[f32],
    o: &mut [f32],
    wk: &[f32],
    bias: f32,
    g: &DwGeometry,
    clamp: Option<(f32, f32)>,
) {
    use std::arch::x86_64::*;
    let (h, w, oh, ow) = (g.h as isize, g.w, g.oh, g.ow);
    let (pt, pl) = (g.pad_top as isize, g.pad_left as isize);
    let xp = xin.as_ptr();
    let op = o.as_mut_ptr();
    let wp = wk.as_ptr();
    let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let (vlo, vhi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let zero = _mm256_setzero_si256();
    let mut x0 = 0;
    while x0 < ow {
        let mut col = [[0isize; K]; V];
        let mut m0 = [[zero; K]; V];
        let mut m1 = [[zero; K]; V];
        let mut sm = [zero; V];
        for v in 0..V {
            let ox = x0 + 8 * v;
            sm[v] = mask8(lane_mask(ox as isize, ow, 8));
            for kx in 0..K {
                let c = (ox * S) as isize + kx as isize - pl;
                col[v][kx] = c;
                m0[v][kx] = mask8(lane_mask(c, w, 8));
                m1[v][kx] = mask8(lane_mask(c + 8, w, 8));
            }
        }
        let mut oy0 = 0;
        while oy0 < oh {
            let mut acc = [[_mm256_set1_ps(bias); V]; R];
            for j in 0..(R - 1) * S + K {
                let iy = (oy0 * S + j) as isize - pt;
                if iy < 0 || iy >= h {
                    continue;
                }
                let rowp = xp.wrapping_offset(iy * w as isize);
                for kx in 0..K {
                    for v in 0..V {
                        let p = rowp.wrapping_offset(col[v][kx]);
                        // SAFETY: only lanes with columns in [0, w) of a row in [0, h) are
                        // enabled; `vmaskmovps` does not touch masked-off lanes.
                        let xv = unsafe {
                            if S == 1 {
                                _mm256_maskload_ps(p, m0[v][kx])
                            } else {
                                let a = _mm256_maskload_ps(p, m0[v][kx]);
                                let b = _mm256_maskload_ps(p.wrapping_add(8), m1[v][kx]);
                                // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6]
                                let t = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
                                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                                    _mm256_castps_pd(t),
                                ))
                            }
                        };
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            let ky = j as isize - (r * S) as isize;
                            if ky >= 0 && (ky as usize) < K {
                                // SAFETY: ky * K + kx < K * K <= wk.len().
                                let wv = unsafe { *wp.add(ky as usize * K + kx) };
                                acc_r[v] = _mm256_fmadd_ps(xv, _mm256_set1_ps(wv), acc_r[v]);
                            }
                        }
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate().take(oh - oy0) {
                for v in 0..V {
                    let mut y = acc_r[v];
                    if clamp.is_some() {
                        y = _mm256_min_ps(vhi, _mm256_max_ps(vlo, y));
                    }
                    // SAFETY: enabled lanes are output columns < ow of row oy0 + r < oh.
                    unsafe {
                        _mm256_maskstore_ps(op.wrapping_add((oy0 + r) * ow + x0 + 8 * v), sm[v], y)
                    };
                }
            }
            oy0 += R;
        }
        x0 += 8 * V;
    }
}
