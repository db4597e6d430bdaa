//! SiLU, sigmoid and GELU on vector registers (AVX-512, and AVX2+FMA): the formulas of
//! `activation.rs` (the same Cephes exp polynomial, the same erf rational function), written
//! once over a [`Lanes`] type, with the two steps a compiler cannot vectorise cheaply done by
//! the instruction set: each division by a reciprocal estimate plus one Newton step (relative
//! error about 2^-28 from `vrcp14ps`, 1.3e-7 from `vrcpps`: an f32 ulp at most) instead of
//! `vdivps`, which costs more than the rest of the function together, and `2^n` by
//! `vscalefps` or in the exponent bits. Four vectors are kept in flight.

#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use crate::Activation;

/// One vector register of f32 lanes and the operations the formulas need. Every method is an
/// intrinsic of the type's instruction set: callers must run where it is available.
trait Lanes: Copy {
    /// Lanes per register.
    const N: usize;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(p: *mut f32, v: Self);
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    /// `a * b + c`.
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    /// `c - a * b`.
    unsafe fn fnmadd(a: Self, b: Self, c: Self) -> Self;
    unsafe fn min(a: Self, b: Self) -> Self;
    unsafe fn max(a: Self, b: Self) -> Self;
    /// Rounded to the nearest integer (ties to even).
    unsafe fn round(a: Self) -> Self;
    /// `y * 2^n` for integral `n` in [-126, 128).
    unsafe fn scale(y: Self, n: Self) -> Self;
    /// An estimate of `1 / d`.
    unsafe fn rcp(d: Self) -> Self;
}

impl Lanes for __m512 {
    const N: usize = 16;
    // SAFETY (each method): an AVX-512F intrinsic; the trait's contract is that AVX-512F is
    // available, and pointers are valid for 16 values (the caller's).
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        // SAFETY: see above.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn fnmadd(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn min(a: Self, b: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn round(a: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    unsafe fn scale(y: Self, n: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_scalef_ps(y, n) }
    }
    #[inline(always)]
    unsafe fn rcp(d: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm512_rcp14_ps(d) }
    }
}

impl Lanes for __m256 {
    const N: usize = 8;
    // SAFETY (each method): an AVX/AVX2/FMA intrinsic; the trait's contract is that AVX2 and
    // FMA are available, and pointers are valid for 8 values (the caller's).
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        // SAFETY: see above.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn fnmadd(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn min(a: Self, b: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn round(a: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    unsafe fn scale(y: Self, n: Self) -> Self {
        // SAFETY: see above; n + 127 is a valid biased exponent for n in [-126, 128).
        unsafe {
            let biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased)))
        }
    }
    #[inline(always)]
    unsafe fn rcp(d: Self) -> Self {
        // SAFETY: see above.
        unsafe { _mm256_rcp_ps(d) }
    }
}

/// `exp(x)`, as `crate::activation::exp`.
///
/// # Safety
/// `V`'s instruction set must be available (as for every function below).
#[inline(always)]
unsafe fn exp<V: Lanes>(x: V) -> V {
    // SAFETY: the caller's contract.
    unsafe {
        let x = V::min(V::max(x, V::splat(-87.3)), V::splat(88.3));
        let n = V::round(V::mul(x, V::splat(std::f32::consts::LOG2_E)));
        let r = V::fnmadd(n, V::splat(0.693_359_4), x);
        let r = V::fnmadd(n, V::splat(-2.121_944_4e-4), r);
        let mut p = V::splat(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = V::fmadd(p, r, V::splat(c));
        }
        let y = V::add(V::fmadd(p, V::mul(r, r), r), V::splat(1.0));
        V::scale(y, n)
    }
}

/// `1 / d` by the reciprocal estimate and one Newton step.
#[inline(always)]
unsafe fn recip<V: Lanes>(d: V) -> V {
    // SAFETY: the caller's contract.
    unsafe {
        let r = V::rcp(d);
        V::mul(r, V::fnmadd(d, r, V::splat(2.0)))
    }
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
unsafe fn sigmoid<V: Lanes>(x: V) -> V {
    // SAFETY: the caller's contract.
    unsafe {
        let e = exp(V::fnmadd(x, V::splat(1.0), V::splat(0.0)));
        recip(V::add(e, V::splat(1.0)))
    }
}

/// `0.5 x (1 + erf(x / sqrt 2))` with `crate::activation::erf`'s rational function.
#[inline(always)]
unsafe fn gelu<V: Lanes>(x: V) -> V {
    // SAFETY: the caller's contract.
    unsafe {
        let z = V::mul(x, V::splat(std::f32::consts::FRAC_1_SQRT_2));
        let z = V::min(V::max(z, V::splat(-4.0)), V::splat(4.0));
        let z2 = V::mul(z, z);
        let mut p = V::splat(-2.726_142_3e-10);
        for c in [2.770_681_4e-8, -2.101_024_1e-6, -5.692_506_4e-5, -7.349_906_3e-4] {
            p = V::fmadd(z2, p, V::splat(c));
        }
        for c in [-2.954_6e-3, -1.609_603_3e-2] {
            p = V::fmadd(z2, p, V::splat(c));
        }
        let p = V::mul(p, z);
        let mut q = V::fmadd(z2, V::splat(-1.456_607_2e-5), V::splat(-2.133_740_6e-4));
        for c in [-1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
            q = V::fmadd(z2, q, V::splat(c));
        }
        let erf = V::mul(p, recip(q));
        let half_x = V::mul(x, V::splat(0.5));
        V::fmadd(half_x, erf, half_x)
    }
}

/// The activation of one register, for the activations [`handles`] takes.
#[inline(always)]
unsafe fn act<V: Lanes>(a: Activation, x: V) -> V {
    // SAFETY: the caller's contract.
    unsafe {
        match a {
            Activation::Silu => V::mul(x, sigmoid(x)),
            Activation::Sigmoid => sigmoid(x),
            _ => gelu(x),
        }
    }
}

/// Whether [`apply`] and [`apply_into`] take `act`.
pub(crate) fn handles(act: Activation) -> bool {
    matches!(act, Activation::Silu | Activation::Sigmoid | Activation::Gelu)
}

/// `y[i] = act(x[i])` for `n` values: four registers at a time, then one, then the last few
/// through a small buffer.
///
/// # Safety
/// `V`'s instruction set must be available; `x` valid for `n` reads and `y` for `n` writes
/// (they may be the same address); `a` one that [`handles`] takes.
#[inline(always)]
unsafe fn run<V: Lanes>(x: *const f32, y: *mut f32, n: usize, a: Activation) {
    let w = V::N;
    let mut i = 0;
    while i + 4 * w <= n {
        // SAFETY: i + 4w <= n, within both buffers (the caller's contract); all four loads
        // happen before any store, so `x` and `y` may be the same address.
        // No closures here: a closure would not inherit the caller's target features.
        unsafe {
            let (v0, v1) = (V::load(x.add(i)), V::load(x.add(i + w)));
            let (v2, v3) = (V::load(x.add(i + 2 * w)), V::load(x.add(i + 3 * w)));
            let (r0, r1, r2, r3) = (act(a, v0), act(a, v1), act(a, v2), act(a, v3));
            V::store(y.add(i), r0);
            V::store(y.add(i + w), r1);
            V::store(y.add(i + 2 * w), r2);
            V::store(y.add(i + 3 * w), r3);
        }
        i += 4 * w;
    }
    while i + w <= n {
        // SAFETY: i + w <= n, within both buffers (the caller's contract).
        unsafe { V::store(y.add(i), act(a, V::load(x.add(i)))) };
        i += w;
    }
    if i < n {
        let mut buf = [0f32; 16];
        // SAFETY: the n - i < w <= 16 values left in both buffers, through `buf`.
        unsafe {
            std::ptr::copy_nonoverlapping(x.add(i), buf.as_mut_ptr(), n - i);
            V::store(buf.as_mut_ptr(), act(a, V::load(buf.as_ptr())));
            std::ptr::copy_nonoverlapping(buf.as_ptr(), y.add(i), n - i);
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(x: *const f32, y: *mut f32, n: usize, a: Activation) {
    // SAFETY: AVX-512F is enabled here; the rest is the caller's contract.
    unsafe { run::<__m512>(x, y, n, a) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(x: *const f32, y: *mut f32, n: usize, a: Activation) {
    // SAFETY: AVX2 and FMA are enabled here; the rest is the caller's contract.
    unsafe { run::<__m256>(x, y, n, a) }
}

/// The instruction sets this file runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Width {
    /// AVX-512F, 16 lanes.
    Avx512,
    /// AVX2 and FMA, 8 lanes.
    Avx2,
}

/// `y[i] = act(x[i])` for `n` values on `width`.
///
/// # Safety
/// `width`'s instruction set must be available; pointers as for [`run`].
unsafe fn dispatch(width: Width, x: *const f32, y: *mut f32, n: usize, a: Activation) {
    // SAFETY: the caller's contract.
    unsafe {
        match width {
            Width::Avx512 => run_avx512(x, y, n, a),
            Width::Avx2 => run_avx2(x, y, n, a),
        }
    }
}

/// Applies `act` (one [`handles`] takes) to `xs` in place.
///
/// # Safety
/// `width`'s instruction set must be available.
pub(crate) unsafe fn apply(width: Width, xs: &mut [f32], act: Activation) {
    let (p, n) = (xs.as_mut_ptr(), xs.len());
    // SAFETY: the caller's contract; reading and writing the same n values of `xs`.
    unsafe { dispatch(width, p, p, n, act) }
}

/// `y[i] = act(x[i])` (every value of `y` written; `y` as long as `x`).
///
/// # Safety
/// `width`'s instruction set must be available.
pub(crate) unsafe fn apply_into(
    width: Width,
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    act: Activation,
) {
    let n = x.len().min(y.len());
    // SAFETY: the caller's contract; n values of each, and `y`'s are only written.
    unsafe { dispatch(width, x.as_ptr(), y.as_mut_ptr().cast(), n, act) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The register formulas on every width this machine has, against f64 evaluations (GELU's
    /// erf: the scalar approximation), over a dense sweep of [-20, 20], the clamp edges and
    /// several tail lengths.
    #[test]
    fn matches_f64_references() {
        let mut widths = Vec::new();
        if crate::simd::has_avx512() {
            widths.push(Width::Avx512);
        }
        if crate::simd::has_avx2_fma() {
            widths.push(Width::Avx2);
        }
        let mut xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 1e-4).collect();
        xs.extend([-100.0, -88.0, -87.0, 87.0, 88.5, 100.0, 0.0, -0.0, 1e-30, -1e-30]);
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let erf = |x: f64| f64::from(crate::erf(x as f32));
        let cases: [(Activation, &dyn Fn(f64) -> f64); 3] = [
            (Activation::Silu, &|x| x * sigmoid(x)),
            (Activation::Sigmoid, &sigmoid),
            (Activation::Gelu, &|x| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))),
        ];
        for width in widths {
            for (act, f) in &cases {
                for len in [xs.len(), 1, 7, 15, 16, 17, 33] {
                    let mut ys = xs[..len].to_vec();
                    // SAFETY: `width` was detected above.
                    unsafe { apply(width, &mut ys, *act) };
                    for (&x, &y) in xs[..len].iter().zip(&ys) {
                        let want = f(f64::from(x));
                        let err = (f64::from(y) - want).abs();
                        // Relative to the value, plus for GELU twice the bound `activation.rs`
                        // states for its cancellation where erf is near -1 (0.5 |x| times
                        // erf's error): both evaluations are within it of the true value.
                        let cancel =
                            if *act == Activation::Gelu { f64::from(x).abs() * 5e-7 } else { 0.0 };
                        let ok = err <= 2e-6 * want.abs() + 1e-7 + cancel;
                        assert!(ok, "{width:?} {act:?}({x}) = {y}, want {want}");
                    }
                }
            }
        }
    }
}
