//! SiLU, sigmoid and GELU on AVX2+FMA registers, as `activation_avx512.rs` does on AVX-512:
//! the formulas of `activation.rs` with each division by `vrcpps` plus one Newton step
//! (relative error about 1.3e-7, an f32 ulp) instead of `vdivps`, and `2^n` put into the
//! exponent bits; eight lanes, four vectors in flight.

#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use crate::Activation;

/// `exp(x)`, as `crate::activation::exp`.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    // SAFETY: register-only AVX2/FMA arithmetic; the caller guarantees AVX2 and FMA.
    unsafe {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3)), _mm256_set1_ps(88.3));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let r2 = _mm256_mul_ps(r, r);
        let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
        // 2^n (n in [-126, 128) after the clamp) built in the exponent bits.
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(y, _mm256_castsi256_ps(e))
    }
}

/// `1 / d` by `vrcpps` and one Newton step.
#[inline(always)]
unsafe fn recip8(d: __m256) -> __m256 {
    // SAFETY: register-only AVX2/FMA arithmetic; the caller guarantees AVX2 and FMA.
    unsafe {
        let r = _mm256_rcp_ps(d);
        _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0)))
    }
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
unsafe fn sigmoid8(x: __m256) -> __m256 {
    // SAFETY: register-only AVX2/FMA arithmetic; the caller guarantees AVX2 and FMA.
    unsafe {
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        recip8(_mm256_add_ps(e, _mm256_set1_ps(1.0)))
    }
}

/// `0.5 x (1 + erf(x / sqrt 2))` with `crate::activation::erf`'s rational function.
#[inline(always)]
unsafe fn gelu8(x: __m256) -> __m256 {
    // SAFETY: register-only AVX2/FMA arithmetic; the caller guarantees AVX2 and FMA.
    unsafe {
        let z = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let z = _mm256_min_ps(_mm256_max_ps(z, _mm256_set1_ps(-4.0)), _mm256_set1_ps(4.0));
        let z2 = _mm256_mul_ps(z, z);
        let mut p = _mm256_set1_ps(-2.726_142_3e-10);
        for c in [2.770_681_4e-8, -2.101_024_1e-6, -5.692_506_4e-5, -7.349_906_3e-4] {
            p = _mm256_fmadd_ps(z2, p, _mm256_set1_ps(c));
        }
        for c in [-2.954_6e-3, -1.609_603_3e-2] {
            p = _mm256_fmadd_ps(z2, p, _mm256_set1_ps(c));
        }
        p = _mm256_mul_ps(p, z);
        let mut q =
            _mm256_fmadd_ps(z2, _mm256_set1_ps(-1.456_607_2e-5), _mm256_set1_ps(-2.133_740_6e-4));
        for c in [-1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
            q = _mm256_fmadd_ps(z2, q, _mm256_set1_ps(c));
        }
        let erf = _mm256_mul_ps(p, recip8(q));
        let half_x = _mm256_mul_ps(x, _mm256_set1_ps(0.5));
        _mm256_fmadd_ps(half_x, erf, half_x)
    }
}

/// The activation of 8 values, for the activations this file handles.
#[inline(always)]
unsafe fn act8(act: Activation, x: __m256) -> __m256 {
    // SAFETY: register-only AVX2/FMA arithmetic; the caller guarantees AVX2 and FMA.
    unsafe {
        match act {
            Activation::Silu => _mm256_mul_ps(x, sigmoid8(x)),
            Activation::Sigmoid => sigmoid8(x),
            _ => gelu8(x),
        }
    }
}

/// Whether [`apply`] and [`apply_into`] take `act`.
pub(crate) fn handles(act: Activation) -> bool {
    matches!(act, Activation::Silu | Activation::Sigmoid | Activation::Gelu)
}

/// `y[i] = act(x[i])` for `n` values, masked at the tail.
///
/// # Safety
/// AVX2 and FMA must be available; `x` valid for `n` reads and `y` for `n` writes (they may be the
/// same address); `act` one that [`handles`] takes.
#[target_feature(enable = "avx2,fma")]
unsafe fn run(x: *const f32, y: *mut f32, n: usize, act: Activation) {
    let mut i = 0;
    // Four vectors at a time: their dependency chains interleave.
    while i + 32 <= n {
        // SAFETY: i + 32 <= n, within both buffers (the caller's contract); all four loads
        // happen before any store, so `x` and `y` may be the same address.
        unsafe {
            let v = [0, 8, 16, 24].map(|o| _mm256_loadu_ps(x.add(i + o)));
            let r = v.map(|v| act8(act, v));
            for (o, r) in [0, 8, 16, 24].into_iter().zip(r) {
                _mm256_storeu_ps(y.add(i + o), r);
            }
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, within both buffers (the caller's contract).
        unsafe { _mm256_storeu_ps(y.add(i), act8(act, _mm256_loadu_ps(x.add(i)))) };
        i += 8;
    }
    if i < n {
        // The last n - i < 8 values through a small buffer.
        let mut buf = [0f32; 8];
        // SAFETY: reads and writes stay within the n - i values left in both buffers.
        unsafe {
            std::ptr::copy_nonoverlapping(x.add(i), buf.as_mut_ptr(), n - i);
            let r = act8(act, _mm256_loadu_ps(buf.as_ptr()));
            _mm256_storeu_ps(buf.as_mut_ptr(), r);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), y.add(i), n - i);
        }
    }
}

/// Applies `act` (one [`handles`] takes) to `xs` in place.
///
/// # Safety
/// AVX2 and FMA must be available.
pub(crate) unsafe fn apply(xs: &mut [f32], act: Activation) {
    let (p, n) = (xs.as_mut_ptr(), xs.len());
    // SAFETY: AVX2 and FMA per the caller; reading and writing the same n values of `xs`.
    unsafe { run(p, p, n, act) }
}

/// `y[i] = act(x[i])` (every value of `y` written; `y` as long as `x`).
///
/// # Safety
/// AVX2 and FMA must be available.
pub(crate) unsafe fn apply_into(x: &[f32], y: &mut [MaybeUninit<f32>], act: Activation) {
    let n = x.len().min(y.len());
    // SAFETY: AVX2 and FMA per the caller; n values of each, and `y`'s are only written.
    unsafe { run(x.as_ptr(), y.as_mut_ptr().cast(), n, act) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The register formulas against f64 evaluations (GELU's erf: the scalar approximation),
    /// over a dense sweep of [-20, 20], the clamp edges and several tail lengths (masked loads
    /// and stores).
    #[test]
    fn matches_f64_references() {
        if !crate::simd::has_avx2_fma() {
            return;
        }
        let mut xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 1e-4).collect();
        xs.extend([-100.0, -88.0, -87.0, 87.0, 88.5, 100.0, 0.0, -0.0, 1e-30, -1e-30]);
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        // GELU against the same erf approximation evaluated by the scalar code (itself checked
        // against a series in `activation.rs`), the rest in f64.
        let erf = |x: f64| f64::from(crate::erf(x as f32));
        let cases: [(Activation, &dyn Fn(f64) -> f64); 3] = [
            (Activation::Silu, &|x| x * sigmoid(x)),
            (Activation::Sigmoid, &sigmoid),
            (Activation::Gelu, &|x| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))),
        ];
        for (act, f) in cases {
            for len in [xs.len(), 1, 7, 15, 16, 17, 33] {
                let mut ys = xs[..len].to_vec();
                // SAFETY: AVX2 and FMA were detected above.
                unsafe { apply(&mut ys, act) };
                for (&x, &y) in xs[..len].iter().zip(&ys) {
                    let want = f(f64::from(x));
                    let err = (f64::from(y) - want).abs();
                    // Relative to the value, plus for GELU twice the bound `activation.rs`
                    // states for its cancellation where erf is near -1 (0.5 |x| times erf's
                    // error): both evaluations are within it of the true value.
                    let cancel =
                        if act == Activation::Gelu { f64::from(x).abs() * 5e-7 } else { 0.0 };
                    let ok = err <= 2e-6 * want.abs() + 1e-7 + cancel;
                    assert!(ok, "{act:?}({x}) = {y}, want {want}");
                }
            }
        }
    }
}
