//! Row kernels of the transformer ops: softmax and layer normalisation, each one pass per row
//! over contiguous f32 data (read once into the output, then finished while the row is in
//! cache), compiled for AVX-512 / AVX2+FMA at run time and spread over the kernels' pool.

#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use crate::activation::exp;
use crate::pool::{SharedMut, for_each_task};

/// Which instruction set a row kernel runs with (tests force each one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// The best this machine has (AVX-512 unless `INFER_NO_AVX512` is set, then AVX2+FMA).
    Auto,
    /// AVX-512F (16 lanes).
    Avx512,
    /// AVX2 + FMA (8 lanes).
    Avx2,
    /// Plain Rust as the baseline target compiles it.
    Portable,
}

impl Isa {
    /// True when this machine can run the path.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::simd::has_avx2_fma(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2 => false,
            Isa::Auto | Isa::Portable => true,
        }
    }

    /// The path that runs for this request here (an unavailable one falls back).
    pub(crate) fn resolve(self) -> Isa {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Auto if super::simd::has_avx512() => Isa::Avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Auto if super::simd::has_avx2_fma() => Isa::Avx2,
            Isa::Auto => Isa::Portable,
            other if other.available() => other,
            _ => Isa::Portable,
        }
    }
}

/// Lanes of the partial sums (a multiple of every vector width, so the loops vectorize).
const L: usize = 16;

#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; L];
    let mut chunks = x.chunks_exact(L);
    for c in &mut chunks {
        for i in 0..L {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    let mut best = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for v in m {
        best = best.max(v);
    }
    best
}

#[inline(always)]
fn row_sum(x: &[f32]) -> f32 {
    let mut s = [0f32; L];
    let mut chunks = x.chunks_exact(L);
    for c in &mut chunks {
        for i in 0..L {
            s[i] += c[i];
        }
    }
    chunks.remainder().iter().sum::<f32>() + s.iter().sum::<f32>()
}

/// `y = softmax(x)` over one contiguous row.
#[inline(always)]
fn softmax_row(x: &[f32], y: &mut [f32]) {
    let max = row_max(x);
    for (o, &v) in y.iter_mut().zip(x) {
        *o = exp(v - max);
    }
    let inv = 1.0 / row_sum(y);
    y.iter_mut().for_each(|v| *v *= inv);
}

/// Softmax of each contiguous `len`-value row of `x` into the same rows of `y` (as long as
/// `x`), each row read from `x` twice (its max, then the exponentials, summed as they are
/// written) and finished in `y` while it is in cache.
#[inline(always)]
fn softmax_rows_into(x: &[f32], y: &mut [MaybeUninit<f32>], len: usize) {
    for (xr, yr) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)) {
        let max = row_max(xr);
        let mut s = [0f32; L];
        let mut xc = xr.chunks_exact(L);
        let mut yc = yr.chunks_exact_mut(L);
        for (a, o) in (&mut xc).zip(&mut yc) {
            for i in 0..L {
                let e = exp(a[i] - max);
                o[i].write(e);
                s[i] += e;
            }
        }
        let mut sum = 0f32;
        for (a, o) in xc.remainder().iter().zip(yc.into_remainder()) {
            let e = exp(a - max);
            o.write(e);
            sum += e;
        }
        let inv = 1.0 / (sum + s.iter().sum::<f32>());
        // SAFETY: `xr` and `yr` are both `len` long, so the two loops above wrote every value
        // of `yr`.
        let yr = unsafe { &mut *(yr as *mut [MaybeUninit<f32>] as *mut [f32]) };
        yr.iter_mut().for_each(|v| *v *= inv);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn softmax_into_avx512(x: &[f32], y: &mut [MaybeUninit<f32>], len: usize) {
    for (xr, yr) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)) {
        // SAFETY: AVX-512F (this function's contract); `yr` holds `xr.len()` values, each
        // written before it is read.
        unsafe { softmax_row_avx512(xr, yr.as_mut_ptr().cast()) };
    }
}

/// `exp(x)` on 16 lanes: [`exp`]'s range reduction and polynomial (same constants), with
/// fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let s = _mm512_set1_ps;
    // Clamped as `f32::clamp` does, a NaN kept (min / max return their second operand then).
    let x = _mm512_max_ps(s(-87.3), _mm512_min_ps(s(88.3), x));
    let tm = _mm512_fmadd_ps(x, s(std::f32::consts::LOG2_E), s(12_582_912.0));
    let n = _mm512_sub_ps(tm, s(12_582_912.0));
    let r = _mm512_fnmadd_ps(n, s(-2.121_944_4e-4), _mm512_fnmadd_ps(n, s(0.693_359_4), x));
    let mut p = s(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm512_fmadd_ps(p, r, s(c));
    }
    let y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), s(1.0));
    let biased = _mm512_add_epi32(
        _mm512_sub_epi32(_mm512_castps_si512(tm), _mm512_set1_epi32(0x4B40_0000)),
        _mm512_set1_epi32(127),
    );
    _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(biased)))
}

/// `y = softmax(x)` over one contiguous row in 16-lane vectors (the last one masked): the
/// maximum, then the exponentials written and summed, then the scaling, each pass over the row
/// while it is in L1. Short rows (attention over 16 or 64 tokens) spend no time in scalar
/// reductions or tails.
///
/// # Safety
/// AVX-512F; `y` valid for `x.len()` writes and reads after them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(x: &[f32], y: *mut f32) {
    use std::arch::x86_64::*;
    let n = x.len();
    let full = n / 16 * 16;
    let tail = crate::dw_direct::lane_mask(0, n - full, 16) as u16;
    let xp = x.as_ptr();
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut m = ninf;
    // SAFETY: vectors at i < full lie inside the row; the masked tail touches only lanes
    // full..n.
    unsafe {
        for i in (0..full).step_by(16) {
            // `c > m ? c : m`: a NaN input is skipped, as in `row_max`.
            m = _mm512_max_ps(_mm512_loadu_ps(xp.add(i)), m);
        }
        if tail != 0 {
            m = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tail, xp.add(full)), m);
        }
    }
    let max = _mm512_set1_ps(_mm512_reduce_max_ps(m));
    let mut sum = _mm512_setzero_ps();
    // SAFETY: as above, for `y` too.
    unsafe {
        for i in (0..full).step_by(16) {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(xp.add(i)), max));
            _mm512_storeu_ps(y.add(i), e);
            sum = _mm512_add_ps(sum, e);
        }
        if tail != 0 {
            let v = _mm512_maskz_loadu_ps(tail, xp.add(full));
            let e = exp16(_mm512_sub_ps(v, max));
            _mm512_mask_storeu_ps(y.add(full), tail, e);
            sum = _mm512_mask_add_ps(sum, tail, sum, e);
        }
    }
    let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
    // SAFETY: as above; every value of `y` was written by the loop before.
    unsafe {
        for i in (0..full).step_by(16) {
            _mm512_storeu_ps(y.add(i), _mm512_mul_ps(_mm512_loadu_ps(y.add(i)), inv));
        }
        if tail != 0 {
            let v = _mm512_maskz_loadu_ps(tail, y.add(full));
            _mm512_mask_storeu_ps(y.add(full), tail, _mm512_mul_ps(v, inv));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_into_avx2(x: &[f32], y: &mut [MaybeUninit<f32>], len: usize) {
    softmax_rows_into(x, y, len)
}

/// Softmax of each contiguous `len`-value row of `x` (`x.len()` a multiple of `len`) into a new
/// vector, rows split over the pool: the output is written once (no zero-fill first) and each
/// row read from memory once. `None` when `len` is zero or does not divide the length.
pub fn softmax_rows_to_vec(x: &[f32], len: usize) -> Option<Vec<f32>> {
    softmax_rows_to_vec_with(Isa::Auto, x, len)
}

/// [`softmax_rows_to_vec`] on a chosen instruction set.
pub fn softmax_rows_to_vec_with(isa: Isa, x: &[f32], len: usize) -> Option<Vec<f32>> {
    if len == 0 || !x.len().is_multiple_of(len) {
        return None;
    }
    let isa = isa.resolve();
    Some(crate::elementwise::build_units(x.len(), len, &|start, chunk| {
        // Whole rows: `build_units` hands out chunks of whole `len`-value units.
        let xs = &x[start..start + chunk.len()];
        match isa {
            // SAFETY: `resolve` returned Avx512 only where AVX-512F was detected.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { softmax_into_avx512(xs, chunk, len) },
            // SAFETY: `resolve` returned Avx2 only where AVX2 and FMA were detected.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { softmax_into_avx2(xs, chunk, len) },
            _ => softmax_rows_into(xs, chunk, len),
        }
    }))
}

/// Softmax over the middle axis of a `len x inner` block (rows of `inner` contiguous values):
/// every column at once, so the loops run along `inner`.
#[inline(always)]
fn softmax_cols(x: &[f32], y: &mut [f32], len: usize, inner: usize, scratch: &mut [f32]) {
    let (max, sum) = scratch.split_at_mut(inner);
    max.copy_from_slice(&x[..inner]);
    for r in 1..len {
        for (m, &v) in max.iter_mut().zip(&x[r * inner..(r + 1) * inner]) {
            *m = if v > *m { v } else { *m };
        }
    }
    sum.fill(0.0);
    for r in 0..len {
        let (xr, yr) = (&x[r * inner..(r + 1) * inner], &mut y[r * inner..(r + 1) * inner]);
        for (((o, &v), &m), s) in yr.iter_mut().zip(xr).zip(&*max).zip(sum.iter_mut()) {
            let e = exp(v - m);
            *o = e;
            *s += e;
        }
    }
    sum.iter_mut().for_each(|s| *s = 1.0 / *s);
    for r in 0..len {
        for (o, &s) in y[r * inner..(r + 1) * inner].iter_mut().zip(&*sum) {
            *o *= s;
        }
    }
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta` over one contiguous row (two passes over
/// the row for the mean and the variance, one to write).
#[inline(always)]
fn layer_norm_row(x: &[f32], y: &mut [f32], gamma: Option<&[f32]>, beta: Option<&[f32]>, eps: f32) {
    let n = x.len() as f32;
    let mean = row_sum(x) / n;
    let mut s = [0f32; L];
    let mut chunks = x.chunks_exact(L);
    for c in &mut chunks {
        for i in 0..L {
            let d = c[i] - mean;
            s[i] += d * d;
        }
    }
    let var = (chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()
        + s.iter().sum::<f32>())
        / n;
    let inv = 1.0 / (var + eps).sqrt();
    match (gamma, beta) {
        (Some(g), Some(b)) => {
            for (((o, &v), &g), &b) in y.iter_mut().zip(x).zip(g).zip(b) {
                *o = (v - mean) * inv * g + b;
            }
        }
        (Some(g), None) => {
            for ((o, &v), &g) in y.iter_mut().zip(x).zip(g) {
                *o = (v - mean) * inv * g;
            }
        }
        (None, Some(b)) => {
            for ((o, &v), &b) in y.iter_mut().zip(x).zip(b) {
                *o = (v - mean) * inv + b;
            }
        }
        (None, None) => {
            for (o, &v) in y.iter_mut().zip(x) {
                *o = (v - mean) * inv;
            }
        }
    }
}

/// One task's worth of rows, the body every ISA compiles.
#[derive(Clone, Copy)]
enum Job<'a> {
    Softmax { len: usize, inner: usize },
    LayerNorm { len: usize, gamma: Option<&'a [f32]>, beta: Option<&'a [f32]>, eps: f32 },
}

#[inline(always)]
fn run_inline(job: Job<'_>, x: &[f32], y: &mut [f32]) {
    match job {
        Job::Softmax { len, inner: 1 } => {
            for (xr, yr) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)) {
                softmax_row(xr, yr);
            }
        }
        Job::Softmax { len, inner } => {
            let mut scratch = vec![0f32; 2 * inner];
            let block = len * inner;
            for (xb, yb) in x.chunks_exact(block).zip(y.chunks_exact_mut(block)) {
                softmax_cols(xb, yb, len, inner, &mut scratch);
            }
        }
        Job::LayerNorm { len, gamma, beta, eps } => {
            for (xr, yr) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)) {
                layer_norm_row(xr, yr, gamma, beta, eps);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512(job: Job<'_>, x: &[f32], y: &mut [f32]) {
    if let Job::Softmax { len, inner: 1 } = job {
        for (xr, yr) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)) {
            // SAFETY: AVX-512F (this function's contract); `yr` holds `xr.len()` values.
            unsafe { softmax_row_avx512(xr, yr.as_mut_ptr()) };
        }
        return;
    }
    run_inline(job, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(job: Job<'_>, x: &[f32], y: &mut [f32]) {
    run_inline(job, x, y)
}

fn run_isa(isa: Isa, job: Job<'_>, x: &[f32], y: &mut [f32]) {
    match isa {
        // SAFETY: `resolve` only returns Avx512 / Avx2 when the CPU has those features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { run_avx512(job, x, y) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_avx2(job, x, y) },
        _ => run_inline(job, x, y),
    }
}

/// Splits `outer` blocks of `block` values into tasks of about 16 K values each and runs them
/// on the pool.
fn parallel(isa: Isa, job: Job<'_>, x: &[f32], y: &mut [f32], outer: usize, block: usize) {
    let isa = isa.resolve();
    let per_task = (16 * 1024 / block.max(1)).clamp(1, outer.max(1));
    let tasks = outer.div_ceil(per_task);
    let out = SharedMut::new(y);
    for_each_task(tasks, &|t| {
        let (b0, b1) = (t * per_task, ((t + 1) * per_task).min(outer));
        // SAFETY: tasks cover disjoint block ranges b0..b1 of `y`, which stays exclusively
        // borrowed (through `out`) until `for_each_task` returns.
        let yt = unsafe { out.slice(b0 * block, (b1 - b0) * block) };
        run_isa(isa, job, &x[b0 * block..b1 * block], yt);
    });
}

/// Softmax of `x` (`outer x len x inner`, row-major) along the middle axis into `y`
/// (max-subtracted, `kernels::exp`). Returns false (nothing written) when a length does not
/// match.
pub fn softmax(x: &[f32], y: &mut [f32], outer: usize, len: usize, inner: usize) -> bool {
    softmax_with(Isa::Auto, x, y, outer, len, inner)
}

/// [`softmax`] on a chosen instruction set (an unavailable one falls back to portable code).
pub fn softmax_with(
    isa: Isa,
    x: &[f32],
    y: &mut [f32],
    outer: usize,
    len: usize,
    inner: usize,
) -> bool {
    let n = outer * len * inner;
    if x.len() != n || y.len() != n {
        return false;
    }
    if n == 0 {
        return true;
    }
    parallel(isa, Job::Softmax { len, inner }, x, y, outer, len * inner);
    true
}

/// Layer norm of `x` (`rows x len`, row-major) over each row into `y`, then scaled by `gamma`
/// and shifted by `beta` (each `len` values) when given. Returns false when a length does not
/// match.
pub fn layer_norm(
    x: &[f32],
    y: &mut [f32],
    len: usize,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> bool {
    layer_norm_with(Isa::Auto, x, y, len, gamma, beta, eps)
}

/// [`layer_norm`] on a chosen instruction set.
pub fn layer_norm_with(
    isa: Isa,
    x: &[f32],
    y: &mut [f32],
    len: usize,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> bool {
    if x.len() != y.len() || len == 0 || !x.len().is_multiple_of(len) {
        return false;
    }
    if [gamma, beta].iter().flatten().any(|p| p.len() != len) {
        return false;
    }
    if x.is_empty() {
        return true;
    }
    parallel(isa, Job::LayerNorm { len, gamma, beta, eps }, x, y, x.len() / len, len);
    true
}
