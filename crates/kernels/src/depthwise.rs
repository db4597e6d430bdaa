//! Depthwise convolution on NCHW planes: one filter per output channel (channel multiplier of
//! one or more), any kernel size, stride, dilation and padding, planes split over the pool.
//! Square 3x3/5x5/7x7 kernels with stride 1 or 2 run the direct kernel of `dw_direct` (no
//! copies); every other geometry, and aarch64, the padded kernel here: each plane is copied once
//! into zero-padded stride phases and output blocks of 8/16/32 columns accumulate in registers
//! over all taps with branch-free loops.

#![allow(unsafe_code)]

use std::cell::RefCell;

use super::dw_direct::{self, DwIsa};
use super::{Activation, apply_activation};

/// The kernel used when none is forced: the direct one on x86-64 (AVX-512 unless
/// `INFER_NO_AVX512` is set, else AVX2+FMA, else portable) when it handles the geometry; the
/// padded one otherwise and on aarch64 (its NEON path).
fn auto_path(g: &DwGeometry) -> DwIsa {
    if !dw_direct::supports(g) || cfg!(target_arch = "aarch64") {
        return DwIsa::Padded;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::has_avx512() {
            return DwIsa::Avx512;
        }
        if super::simd::has_avx2_fma() {
            return DwIsa::Avx2;
        }
    }
    DwIsa::Portable
}

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
/// `c` reads input channel `c / mult` with filter `c`. `path` forces a kernel (`None`: the
/// automatic choice); a forced direct path must be available and support the geometry, else
/// this returns an error before writing anything.
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
    path: Option<DwIsa>,
) -> Result<(), String> {
    let path = path.unwrap_or_else(|| auto_path(&g));
    if path != DwIsa::Padded && !(path.available() && dw_direct::supports(&g)) {
        return Err(format!("depthwise: the {path:?} kernel cannot run this geometry here"));
    }
    let in_plane = g.h * g.w;
    let out_plane = g.oh * g.ow;
    let in_channels = channels / mult.max(1);
    let planes = out.len() / out_plane.max(1);
    if planes == 0 {
        return Ok(());
    }
    // One task per thread, each a contiguous run of whole planes: channels the GEMM before,
    // split by rows, mostly wrote on the same thread (measured faster than four tasks per
    // thread on Lite0 at 2 threads: 0.30 -> 0.27 ms of 3x3 depthwise per run).
    let tasks = crate::pool::threads().min(planes);
    let per = planes.div_ceil(tasks);
    let tasks = planes.div_ceil(per);
    let dst = OutPtr(out.as_mut_ptr());
    crate::pool::for_each_task(tasks, &|t| {
        let d = dst;
        let run = |scratch: &mut Scratch| {
            for p in t * per..((t + 1) * per).min(planes) {
                // SAFETY: plane p < planes lies inside `out` (planes * out_plane <= out.len()),
                // and each plane index belongs to exactly one task, so no two tasks write the
                // same elements while `out` is exclusively borrowed for this call.
                let o =
                    unsafe { std::slice::from_raw_parts_mut(d.0.add(p * out_plane), out_plane) };
                let (b, c) = (p / channels, p % channels);
                let ip = b * in_channels + c / mult.max(1);
                let xin = &x[ip * in_plane..(ip + 1) * in_plane];
                let wk = &weight[c * g.kh * g.kw..(c + 1) * g.kh * g.kw];
                one_plane(path, xin, o, wk, bias[c], g, act, scratch);
            }
        };
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => run(&mut s),
            Err(_) => run(&mut Scratch::default()),
        });
    });
    Ok(())
}

/// One output plane `o` of input plane `xin` on `path`, activation included.
#[allow(clippy::too_many_arguments)]
fn one_plane(
    path: DwIsa,
    xin: &[f32],
    o: &mut [f32],
    wk: &[f32],
    bias: f32,
    g: DwGeometry,
    act: Activation,
    scratch: &mut Scratch,
) {
    let clamp = dw_direct::clamp_of(act);
    if path == DwIsa::Padded || !dw_direct::plane(path, xin, o, wk, bias, &g, clamp) {
        plane(xin, o, wk, bias, g, act, scratch);
    } else if clamp.is_none() {
        apply_activation(o, act);
    }
}

/// [`depthwise`] (one filter per channel) on the calling thread alone, for `channels` input
/// planes of `g.h x g.w` that lie `stride` values apart in `x` (a band of rows inside taller
/// planes), into `out` (`channels` planes of `g.oh x g.ow`, contiguous).
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise_serial(
    x: &[f32],
    stride: usize,
    out: &mut [f32],
    weight: &[f32],
    bias: &[f32],
    channels: usize,
    g: DwGeometry,
    act: Activation,
) -> Result<(), String> {
    let (in_plane, out_plane, taps) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    let fits = stride >= in_plane
        && (channels == 0 || x.len() >= (channels - 1) * stride + in_plane)
        && out.len() >= channels * out_plane
        && weight.len() >= channels * taps
        && bias.len() >= channels;
    if !fits {
        return Err("depthwise: band buffers do not match the geometry".into());
    }
    let path = auto_path(&g);
    let mut run = |scratch: &mut Scratch| {
        for (c, o) in out.chunks_exact_mut(out_plane.max(1)).take(channels).enumerate() {
            let xin = &x[c * stride..c * stride + in_plane];
            one_plane(path, xin, o, &weight[c * taps..(c + 1) * taps], bias[c], g, act, scratch);
        }
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => run(&mut s),
        Err(_) => run(&mut Scratch::default()),
    });
    Ok(())
}

/// Per-thread buffers of the depthwise kernel: the padded stride-phase planes and the tap
/// offsets.
#[derive(Default)]
pub(crate) struct Scratch {
    padded: Vec<f32>,
    taps: Vec<usize>,
}

thread_local! {
    /// Each thread's padded-plane scratch, kept between calls (no allocation in steady state).
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { padded: Vec::new(), taps: Vec::new() })
    };
}

/// A raw output pointer shared by tasks that write disjoint planes.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only dereferenced for pairwise-disjoint planes of one live `&mut [f32]` that
// outlives the parallel loop (see `depthwise`).
unsafe impl Send for OutPtr {}
// SAFETY: as above; shared references only copy the address.
unsafe impl Sync for OutPtr {}

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
    scratch: &mut Scratch,
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
    scratch: &mut Scratch,
) {
    let (sy, sx) = g.stride;
    let (dy, dx) = g.dilation;
    let owr = g.ow.div_ceil(B) * B;
    // Padded rows needed: output rows 0..oh touch padded rows up to (oh-1)*sy + (kh-1)*dy.
    let ph = (g.oh - 1) * sy + (g.kh - 1) * dy + 1;
    // Phase plane width: column block j reaches j + ((kw-1)*dx)/sx.
    let pw = owr + ((g.kw - 1) * dx) / sx + 1;
    let Scratch { padded: scratch, taps } = scratch;
    scratch.clear();
    scratch.resize(ph * sx * pw, 0.0);
    for py in 0..ph {
        let iy = py as isize - g.pad_top as isize;
        if iy < 0 || iy >= g.h as isize {
            continue;
        }
        let row = &xin[iy as usize * g.w..(iy as usize + 1) * g.w];
        if sx == 1 {
            let n = g.w.min(pw.saturating_sub(g.pad_left));
            let at = py * pw + g.pad_left;
            scratch[at..at + n].copy_from_slice(&row[..n]);
            continue;
        }
        for q in 0..sx {
            let dst = &mut scratch[(py * sx + q) * pw..(py * sx + q + 1) * pw];
            // Padded column j*sx + q holds input column j*sx + q - pad_left.
            for (j, d) in dst.iter_mut().enumerate() {
                let pc = j * sx + q;
                if pc >= g.pad_left && pc - g.pad_left < g.w {
                    *d = row[pc - g.pad_left];
                }
            }
        }
    }
    let src: &[f32] = scratch;
    // Offset of every tap relative to its output block's origin, computed once per plane.
    taps.clear();
    taps.extend((0..g.kh * g.kw).map(|t| {
        let (ky, off) = (t / g.kw, (t % g.kw) * dx);
        (ky * dy * sx + off % sx) * pw + off / sx
    }));
    let taps: &[usize] = taps;
    let row_step = sy * sx * pw;
    let max_tap = taps.iter().copied().max().unwrap_or(0);
    // Every block reads src[origin + t .. origin + t + B] with origin <= (oh-1)*row_step + owr - B.
    let in_bounds = (g.oh - 1) * row_step + owr + max_tap <= src.len()
        && wk.len() >= taps.len()
        && o.len() >= g.oh * g.ow;
    #[cfg(target_arch = "x86_64")]
    if in_bounds && B >= 16 && super::simd::has_avx512() {
        // SAFETY: AVX-512F was detected at run time; bounds as for the AVX2 path below.
        unsafe { rows_avx512::<B>(src, o, wk, taps, bias, g.oh, g.ow, owr, row_step) };
        apply_activation(o, act);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if in_bounds && super::simd::has_avx2_fma() {
        // SAFETY: AVX2/FMA were detected at run time; `in_bounds` establishes that every load
        // (src up to (oh-1)*row_step + owr + max_tap) and store (o up to oh*ow) is in range.
        unsafe { rows_avx2::<B>(src, o, wk, taps, bias, g.oh, g.ow, owr, row_step) };
        apply_activation(o, act);
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if in_bounds {
        // SAFETY: NEON is part of the aarch64 baseline; `in_bounds` establishes that every
        // load and store is in range, as for the AVX2 path.
        unsafe { rows_neon::<B>(src, o, wk, taps, bias, g.oh, g.ow, owr, row_step) };
        apply_activation(o, act);
        return;
    }
    let _ = in_bounds;
    let mut tmp = [0f32; B];
    for oy in 0..g.oh {
        let orow = &mut o[oy * g.ow..(oy + 1) * g.ow];
        for x0 in (0..owr).step_by(B) {
            let origin = oy * row_step + x0;
            let mut acc = [bias; B];
            for (&wv, &t) in wk.iter().zip(taps) {
                let s = &src[origin + t..origin + t + B];
                for i in 0..B {
                    acc[i] += wv * s[i];
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

/// The blocked tap loop with AVX2 FMAs: `B / 8` accumulators of 8 lanes per output block.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `src` must hold `(oh-1)*row_step + owr + max(taps)`
/// values, `wk` at least `taps.len()`, `o` at least `oh * ow`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_avx2<const B: usize>(
    src: &[f32],
    o: &mut [f32],
    wk: &[f32],
    taps: &[usize],
    bias: f32,
    oh: usize,
    ow: usize,
    owr: usize,
    row_step: usize,
) {
    use std::arch::x86_64::*;
    let mut tmp = [0f32; B];
    let sp = src.as_ptr();
    for oy in 0..oh {
        for x0 in (0..owr).step_by(B) {
            let origin = oy * row_step + x0;
            let mut acc = [_mm256_set1_ps(bias); 4];
            for (&wv, &t) in wk.iter().zip(taps) {
                let w8 = _mm256_set1_ps(wv);
                // SAFETY: origin + t + B <= src.len() by the caller's contract.
                let p = unsafe { sp.add(origin + t) };
                for (v, a) in acc.iter_mut().enumerate().take(B / 8) {
                    // SAFETY: 8 * v + 8 <= B, so the 8 lanes lie inside the block.
                    *a = _mm256_fmadd_ps(unsafe { _mm256_loadu_ps(p.add(8 * v)) }, w8, *a);
                }
            }
            let n = B.min(ow - x0.min(ow));
            for (v, a) in acc.iter().enumerate().take(B / 8) {
                // SAFETY: tmp holds B floats and 8 * v + 8 <= B.
                unsafe { _mm256_storeu_ps(tmp.as_mut_ptr().add(8 * v), *a) };
            }
            let at = oy * ow + x0;
            o[at..at + n].copy_from_slice(&tmp[..n]);
        }
    }
}

/// The blocked tap loop with AVX-512 FMAs: `B / 16` accumulators of 16 lanes (B >= 16).
///
/// # Safety
/// The CPU must support AVX-512F; otherwise as [`rows_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_avx512<const B: usize>(
    src: &[f32],
    o: &mut [f32],
    wk: &[f32],
    taps: &[usize],
    bias: f32,
    oh: usize,
    ow: usize,
    owr: usize,
    row_step: usize,
) {
    use std::arch::x86_64::*;
    let mut tmp = [0f32; B];
    let sp = src.as_ptr();
    for oy in 0..oh {
        for x0 in (0..owr).step_by(B) {
            let origin = oy * row_step + x0;
            let mut acc = [_mm512_set1_ps(bias); 2];
            for (&wv, &t) in wk.iter().zip(taps) {
                let w16 = _mm512_set1_ps(wv);
                // SAFETY: origin + t + B <= src.len() by the caller's contract.
                let p = unsafe { sp.add(origin + t) };
                for (v, a) in acc.iter_mut().enumerate().take(B / 16) {
                    // SAFETY: 16 * v + 16 <= B, so the 16 lanes lie inside the block.
                    *a = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(p.add(16 * v)) }, w16, *a);
                }
            }
            let n = B.min(ow - x0.min(ow));
            for (v, a) in acc.iter().enumerate().take(B / 16) {
                // SAFETY: tmp holds B floats and 16 * v + 16 <= B.
                unsafe { _mm512_storeu_ps(tmp.as_mut_ptr().add(16 * v), *a) };
            }
            let at = oy * ow + x0;
            o[at..at + n].copy_from_slice(&tmp[..n]);
        }
    }
}

/// The blocked tap loop with NEON FMAs (not run on this project's Linux machines).
///
/// # Safety
/// As [`rows_avx2`], minus the CPU requirement (NEON is baseline on aarch64).
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_neon<const B: usize>(
    src: &[f32],
    o: &mut [f32],
    wk: &[f32],
    taps: &[usize],
    bias: f32,
    oh: usize,
    ow: usize,
    owr: usize,
    row_step: usize,
) {
    use std::arch::aarch64::*;
    let mut tmp = [0f32; B];
    let sp = src.as_ptr();
    for oy in 0..oh {
        for x0 in (0..owr).step_by(B) {
            let origin = oy * row_step + x0;
            // SAFETY: NEON is baseline on aarch64.
            let mut acc = [unsafe { vdupq_n_f32(bias) }; 8];
            for (&wv, &t) in wk.iter().zip(taps) {
                // SAFETY: origin + t + B <= src.len() by the caller's contract.
                let p = unsafe { sp.add(origin + t) };
                for (v, a) in acc.iter_mut().enumerate().take(B / 4) {
                    // SAFETY: 4 * v + 4 <= B, so the 4 lanes lie inside the block.
                    *a = unsafe { vfmaq_n_f32(*a, vld1q_f32(p.add(4 * v)), wv) };
                }
            }
            let n = B.min(ow - x0.min(ow));
            for (v, a) in acc.iter().enumerate().take(B / 4) {
                // SAFETY: tmp holds B floats and 4 * v + 4 <= B.
                unsafe { vst1q_f32(tmp.as_mut_ptr().add(4 * v), *a) };
            }
            let at = oy * ow + x0;
            o[at..at + n].copy_from_slice(&tmp[..n]);
        }
    }
}
