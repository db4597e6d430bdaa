//! The packed GEMM of the 1x1 and im2col convolutions where AVX-512 is not there: the same
//! weight panels (8 rows interleaved along k) and 48-column activation strips as the AVX-512
//! kernel, read by a 4 x 16 register-blocked micro-kernel written as plain array code that the
//! compiler keeps in registers (8 AVX2 or 16 NEON vectors of accumulators), fused
//! multiply-adds where the target has them, and bias, residual and clamp in the epilogue. It
//! allocates nothing per call (each thread's strip buffer is kept), unlike the `gemm` crate.

#![allow(unsafe_code)]

use crate::packed::{MR, NR};

/// Rows of one micro-kernel call (half a weight panel).
const PR: usize = 4;
/// Columns of one micro-kernel call (a third of an activation strip).
const PC: usize = 16;

/// How a multiply-add is done: fused where the target has the instruction (a fused op without
/// it would be a slow library call), else a multiply and an add.
trait MulAdd: Sized {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;

    /// Rows `ri..ri + PR` of a panel times columns `cj..cj + PC` of a strip ([`micro`]).
    #[inline(always)]
    fn micro(panel: &[f32], strip: &[f32], ri: usize, cj: usize) -> [[f32; PC]; PR] {
        match (ri, cj) {
            (0, 0) => micro::<Self, 0, 0>(panel, strip),
            (0, PC) => micro::<Self, 0, PC>(panel, strip),
            (0, _) => micro::<Self, 0, { 2 * PC }>(panel, strip),
            (_, 0) => micro::<Self, PR, 0>(panel, strip),
            (_, PC) => micro::<Self, PR, PC>(panel, strip),
            _ => micro::<Self, PR, { 2 * PC }>(panel, strip),
        }
    }
}

/// One fused multiply-add instruction (FMA3 on x86-64, NEON on aarch64).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
struct Fused;
/// A multiply and an add.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
struct Plain;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Plain {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// The packed tile of this machine: [`crate::packed::tile`] where AVX-512 is available, else
/// [`tile`] (the same panels and contract).
///
/// # Safety
/// As [`tile`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn best_tile(
    m: usize,
    n: usize,
    k: usize,
    packed: &[f32],
    panel0: usize,
    ps: usize,
    x: *const f32,
    ld: usize,
    dst: *mut f32,
    ldd: usize,
    bias: &[f32],
    accumulate: bool,
    clamp: Option<(f32, f32)>,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx512() {
        // SAFETY: AVX-512F was detected; the rest is the caller's contract.
        unsafe {
            crate::packed::tile(
                m, n, k, packed, panel0, ps, x, ld, dst, ldd, bias, accumulate, clamp,
            )
        };
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { tile(m, n, k, packed, panel0, ps, x, ld, dst, ldd, bias, accumulate, clamp) }
}

/// `dst[m x n] = clamp(packed_w * x + bias (+ dst if accumulate))` for one tile, as
/// [`crate::packed::tile`] (same panels, same contract) on any CPU.
///
/// # Safety
/// `packed` must hold the panels `panel0 .. panel0 + m.div_ceil(MR)`, `ps` values apart, each
/// read for `k * MR` values (`ps > k * MR` when the tile takes a slice of a deeper GEMM); `x`
/// must be valid for reads of rows `0..k`, columns `0..n` at stride `ld`; `dst` for reads and
/// writes of rows `0..m`, columns `0..n` at stride `ldd`, and no other thread may access those
/// elements during the call; `bias` holds `m` values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile(
    m: usize,
    n: usize,
    k: usize,
    packed: &[f32],
    panel0: usize,
    ps: usize,
    x: *const f32,
    ld: usize,
    dst: *mut f32,
    ldd: usize,
    bias: &[f32],
    accumulate: bool,
    clamp: Option<(f32, f32)>,
) {
    let t = Tile { m, n, k, packed, panel0, ps, x, ld, dst, ldd, bias, accumulate, clamp };
    crate::pool::with_aligned_scratch(&crate::packed::STRIP, k * NR, |strip| {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::has_avx2_fma() {
            // SAFETY: AVX2 and FMA were detected at run time; the rest is the caller's contract.
            unsafe { tile_fma(&t, strip) };
            return;
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: the caller's contract.
        unsafe {
            tile_body::<Fused>(&t, strip)
        };
        #[cfg(not(target_arch = "aarch64"))]
        // SAFETY: the caller's contract.
        unsafe {
            tile_body::<Plain>(&t, strip)
        };
    });
}

/// The arguments of [`tile`].
struct Tile<'a> {
    m: usize,
    n: usize,
    k: usize,
    packed: &'a [f32],
    panel0: usize,
    ps: usize,
    x: *const f32,
    ld: usize,
    dst: *mut f32,
    ldd: usize,
    bias: &'a [f32],
    accumulate: bool,
    clamp: Option<(f32, f32)>,
}

/// [`tile_body`] compiled with AVX2 and FMA.
///
/// # Safety
/// AVX2 and FMA must be available; otherwise [`tile`]'s contract.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_fma(t: &Tile<'_>, strip: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe { tile_body::<Fused>(t, strip) }
}

/// The tile: pack each 48-column strip once (into `strip`, `k * NR` values), then run every
/// panel over it. No closures: everything here is compiled with its caller's target features
/// (a closure would not inherit them, and its multiply-adds would become library calls).
///
/// # Safety
/// [`tile`]'s contract; `strip` holds `k * NR` values.
#[inline(always)]
unsafe fn tile_body<M: MulAdd>(t: &Tile<'_>, strip: &mut [f32]) {
    let k = t.k;
    let mut c = 0;
    while c < t.n {
        let nc = (t.n - c).min(NR);
        for (p, row) in strip.chunks_exact_mut(NR).enumerate().take(k) {
            // SAFETY: row p < k, columns c..c+nc <= n of x (the caller's contract).
            let src = unsafe { std::slice::from_raw_parts(t.x.add(p * t.ld + c), nc) };
            row[..nc].copy_from_slice(src);
            row[nc..].fill(0.0);
        }
        let mut r = 0;
        while r < t.m {
            let mr = (t.m - r).min(MR);
            let pi = t.panel0 + r / MR;
            let wp = &t.packed[pi * t.ps..pi * t.ps + k * MR];
            for half in 0..MR / PR {
                let rows = mr.saturating_sub(half * PR).min(PR);
                for side in 0..NR / PC {
                    let cols = nc.saturating_sub(side * PC).min(PC);
                    if rows == 0 || cols == 0 {
                        continue;
                    }
                    let acc = M::micro(wp, strip, half * PR, side * PC);
                    let r0 = r + half * PR;
                    // SAFETY: rows r0..r0+rows < m and columns c+side*PC.. +cols <= n of dst
                    // (the caller's contract).
                    unsafe {
                        store(
                            &acc,
                            t.dst.add(r0 * t.ldd + c + side * PC),
                            t.ldd,
                            rows,
                            cols,
                            &t.bias[r0..r0 + rows],
                            t.accumulate,
                            t.clamp,
                        )
                    };
                }
            }
            r += mr;
        }
        c += nc;
    }
}

/// Rows `RI..RI + PR` of a panel (`k x MR`) times columns `CJ..CJ + PC` of a strip (`k x NR`),
/// summed over `k` in registers.
#[inline(always)]
fn micro<M: MulAdd, const RI: usize, const CJ: usize>(
    panel: &[f32],
    strip: &[f32],
) -> [[f32; PC]; PR] {
    let mut acc = [[0f32; PC]; PR];
    for (p, (w, x)) in panel.chunks_exact(MR).zip(strip.chunks_exact(NR)).enumerate() {
        // The first of a panel's six calls streams it (from L3 for a big layer): it fetches
        // ahead as the AVX-512 kernel does.
        if RI == 0 && CJ == 0 && p % 2 == 0 {
            prefetch(panel.as_ptr().wrapping_add(p * MR + crate::packed::PREFETCH));
        }
        let x: &[f32; PC] = x[CJ..CJ + PC].try_into().unwrap_or(&[0.0; PC]);
        for (i, acc_i) in acc.iter_mut().enumerate() {
            let wi = w[RI + i];
            for (a, &xv) in acc_i.iter_mut().zip(x) {
                *a = M::mul_add(wi, xv, *a);
            }
        }
    }
    acc
}

/// Asks for the cache line holding `p` (any address: a prefetch never faults); nothing where
/// there is no stable prefetch instruction.
#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only names an address; it never reads or faults (SSE, baseline).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The epilogue: `rows x cols` of `acc` plus bias (plus what `dst` holds when `accumulate`),
/// clamped, into `dst` (stride `ld`).
///
/// # Safety
/// `dst` valid for reads and writes of rows `0..rows`, columns `0..cols` at stride `ld`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store(
    acc: &[[f32; PC]; PR],
    dst: *mut f32,
    ld: usize,
    rows: usize,
    cols: usize,
    bias: &[f32],
    accumulate: bool,
    clamp: Option<(f32, f32)>,
) {
    for ((acc_i, &b), i) in acc.iter().zip(bias).zip(0..rows) {
        // SAFETY: row i < rows, columns 0..cols (the caller's contract).
        let out = unsafe { std::slice::from_raw_parts_mut(dst.add(i * ld), cols) };
        for (o, &a) in out.iter_mut().zip(acc_i) {
            let y = a + b + if accumulate { *o } else { 0.0 };
            // Comparisons, not min/max: a NaN stays NaN, as in the AVX-512 kernel.
            *o = match clamp {
                Some((lo, _)) if y < lo => lo,
                Some((_, hi)) if y > hi => hi,
                _ => y,
            };
        }
    }
}
