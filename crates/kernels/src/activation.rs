//! Element-wise activations fused into kernel epilogues, including a fast exact-GELU erf.

#![allow(unsafe_code)]

use std::mem::MaybeUninit;

/// An activation applied in place after a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
    /// x * Φ(x) with the exact (erf) CDF.
    Gelu,
    /// x * sigmoid(x).
    Silu,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// PyTorch's hard sigmoid, `clamp(x / 6 + 1/2, 0, 1)` (Core ML's `sigmoid_hard` with
    /// alpha 1/6, beta 1/2).
    HardSigmoid,
    /// `x * clamp(x / 6 + 1/2, 0, 1)` (PyTorch's hard-swish).
    HardSwish,
    /// clamp(x, lo, hi) with bounds in thousandths (so the enum stays `Eq`).
    Clip {
        /// Lower bound times 1000.
        lo_milli: i32,
        /// Upper bound times 1000.
        hi_milli: i32,
    },
}

/// erf(x) as a rational function of x on [-4, 4] (the XLA/Eigen float approximation, a few ulp;
/// erf(±4) rounds to ±1 in f32). No `exp` and no branches, so loops over it vectorize.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const A1: f32 = -2.726_142_3e-10;
    const A3: f32 = 2.770_681_4e-8;
    const A5: f32 = -2.101_024_1e-6;
    const A7: f32 = -5.692_506_4e-5;
    const A9: f32 = -7.349_906_3e-4;
    const A11: f32 = -2.954_6e-3;
    const A13: f32 = -1.609_603_3e-2;
    const B0: f32 = -1.456_607_2e-5;
    const B2: f32 = -2.133_740_6e-4;
    const B4: f32 = -1.682_827e-3;
    const B6: f32 = -7.373_329e-3;
    const B8: f32 = -1.426_474e-2;
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * A1 + A3;
    p = x2 * p + A5;
    p = x2 * p + A7;
    p = x2 * p + A9;
    p = x2 * p + A11;
    p = x2 * p + A13;
    p *= x;
    let mut q = x2 * B0 + B2;
    q = x2 * q + B4;
    q = x2 * q + B6;
    q = x2 * q + B8;
    p / q
}

/// e^x without a libm call or a rounding intrinsic, so loops over it vectorize: x = n ln 2 + r
/// with n = round(x log2 e) by the 1.5 * 2^23 magic-number trick (whose low mantissa bits then
/// hold n), |r| <= ln 2 / 2 with ln 2 split in two parts for an exact reduction, e^r by the
/// Cephes single-precision polynomial (relative error about 1e-7), and 2^n put into the
/// exponent bits. Inputs are clamped to [-87.3, 88.3], so the result is a normal float (about
/// 1.2e-38 at the bottom, where the true value may be denormal or zero: far below any tolerance
/// here).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const MAGIC: f32 = 12_582_912.0;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    let tm = x * LOG2E + MAGIC;
    let n = tm - MAGIC;
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // tm's bits are MAGIC's (0x4B40_0000) plus n: the biased exponent is n + 127.
    let biased = tm.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127);
    y * f32::from_bits(biased << 23)
}

/// `x * Phi(x)` (exact GELU) as `0.5 x (1 + erf(x / sqrt 2))`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `clamp(x / 6 + 1/2, 0, 1)`, computed as Core ML's `sigmoid_hard` does (`alpha * x + beta`
/// with alpha the f32 nearest 1/6), with one `min` and one `max` so it vectorises.
#[inline(always)]
pub fn hard_sigmoid(x: f32) -> f32 {
    let y = x * (1.0 / 6.0) + 0.5;
    let y = if y > 0.0 { y } else { 0.0 };
    if y < 1.0 { y } else { 1.0 }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Applies `act` to every element of `xs` in place (vectorized, AVX2+FMA when present).
pub fn apply_activation(xs: &mut [f32], act: Activation) {
    if act == Activation::None {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx512() {
        if super::activation_simd::handles(act) {
            // SAFETY: AVX-512F was just detected at run time.
            unsafe {
                super::activation_simd::apply(super::activation_simd::Width::Avx512, xs, act)
            };
            return;
        }
        // SAFETY: `apply_avx512` only requires AVX-512F, just detected at run time.
        unsafe { apply_avx512(xs, act) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2_fma() {
        if super::activation_simd::handles(act) {
            // SAFETY: AVX2 and FMA were just detected at run time.
            unsafe { super::activation_simd::apply(super::activation_simd::Width::Avx2, xs, act) };
            return;
        }
        // SAFETY: `apply_avx2` only requires AVX2 and FMA, just detected at run time.
        unsafe { apply_avx2(xs, act) };
        return;
    }
    apply_inline(xs, act)
}

/// [`apply_inline`] compiled with AVX-512F (and FMA), 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn apply_avx512(xs: &mut [f32], act: Activation) {
    apply_inline(xs, act)
}

/// [`apply_inline`] compiled with AVX2+FMA (it is inlined here, so its loops use them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_avx2(xs: &mut [f32], act: Activation) {
    apply_inline(xs, act)
}

/// `y[i] = act(x[i])` into uninitialised output (`y` as long as `x`: every value written), the
/// same values [`apply_activation`] gives in place.
pub(crate) fn apply_activation_into(x: &[f32], y: &mut [MaybeUninit<f32>], act: Activation) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx512() {
        if super::activation_simd::handles(act) && x.len() == y.len() {
            // SAFETY: AVX-512F was just detected at run time.
            unsafe {
                super::activation_simd::apply_into(super::activation_simd::Width::Avx512, x, y, act)
            };
            return;
        }
        // SAFETY: `into_avx512` only requires AVX-512F, just detected at run time.
        unsafe { into_avx512(x, y, act) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2_fma() {
        if super::activation_simd::handles(act) && x.len() == y.len() {
            // SAFETY: AVX2 and FMA were just detected at run time.
            unsafe {
                super::activation_simd::apply_into(super::activation_simd::Width::Avx2, x, y, act)
            };
            return;
        }
        // SAFETY: `into_avx2` only requires AVX2 and FMA, just detected at run time.
        unsafe { into_avx2(x, y, act) };
        return;
    }
    into_inline(x, y, act)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn into_avx512(x: &[f32], y: &mut [MaybeUninit<f32>], act: Activation) {
    into_inline(x, y, act)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn into_avx2(x: &[f32], y: &mut [MaybeUninit<f32>], act: Activation) {
    into_inline(x, y, act)
}

#[inline(always)]
fn map_into(x: &[f32], y: &mut [MaybeUninit<f32>], f: impl Fn(f32) -> f32) {
    for (o, &v) in y.iter_mut().zip(x) {
        o.write(f(v));
    }
}

/// [`apply_inline`]'s formulas, reading `x` and writing `y`.
#[inline(always)]
fn into_inline(x: &[f32], y: &mut [MaybeUninit<f32>], act: Activation) {
    match act {
        Activation::None => map_into(x, y, |v| v),
        Activation::Relu => map_into(x, y, |v| v.max(0.0)),
        Activation::Relu6 => map_into(x, y, |v| v.clamp(0.0, 6.0)),
        Activation::Gelu => map_into(x, y, gelu),
        Activation::Silu => map_into(x, y, |v| v * sigmoid(v)),
        Activation::Sigmoid => map_into(x, y, sigmoid),
        Activation::HardSigmoid => map_into(x, y, hard_sigmoid),
        Activation::HardSwish => map_into(x, y, |v| v * hard_sigmoid(v)),
        Activation::Clip { lo_milli, hi_milli } => {
            let (lo, hi) = (lo_milli as f32 / 1000.0, hi_milli as f32 / 1000.0);
            map_into(x, y, |v| v.max(lo).min(hi))
        }
    }
}

#[inline(always)]
fn apply_inline(xs: &mut [f32], act: Activation) {
    match act {
        Activation::None => {}
        Activation::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::Relu6 => xs.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        // Absolute error up to about 0.5 |x| * 5e-7 (erf's bound): 1.2e-6 near x = -5.5, where
        // 1 + erf cancels. An exact tail (erfc's series) cost this loop 1.6x even when only
        // checked per chunk, so it is not used: the error is far below any model tolerance.
        Activation::Gelu => xs.iter_mut().for_each(|x| *x = gelu(*x)),
        Activation::Silu => xs.iter_mut().for_each(|x| *x *= sigmoid(*x)),
        Activation::Sigmoid => xs.iter_mut().for_each(|x| *x = sigmoid(*x)),
        Activation::HardSigmoid => xs.iter_mut().for_each(|x| *x = hard_sigmoid(*x)),
        Activation::HardSwish => xs.iter_mut().for_each(|x| *x *= hard_sigmoid(*x)),
        Activation::Clip { lo_milli, hi_milli } => {
            let (lo, hi) = (lo_milli as f32 / 1000.0, hi_milli as f32 / 1000.0);
            xs.iter_mut().for_each(|x| *x = x.max(lo).min(hi))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_libm_closely() {
        let mut worst = 0f64;
        for i in -4000..=4000 {
            let x = i as f64 / 1000.0;
            let e = (erf(x as f32) as f64 - libm_erf(x)).abs();
            worst = worst.max(e);
        }
        // The rational form is within a few f32 ulp of 1 (6e-8 each); measured 3.4e-7.
        assert!(worst < 5e-7, "worst erf error {worst}");
    }

    // Reference erf by series / continued fraction in f64 (independent of the fast formula).
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 2.5 {
            // Maclaurin series.
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc continued fraction (Lentz), good for |x| >= 2.5.
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            x.signum() * (1.0 - erfc)
        }
    }

    #[test]
    fn activations_on_known_points() {
        let mut v = vec![-1.0, 0.0, 7.0];
        apply_activation(&mut v, Activation::Relu6);
        assert_eq!(v, [0.0, 0.0, 6.0]);
        let mut v = vec![1.0f32];
        apply_activation(&mut v, Activation::Gelu);
        assert!((v[0] - 0.841_344_7).abs() < 1e-6);
        let mut v = vec![2.5f32, -9.0];
        apply_activation(&mut v, Activation::Clip { lo_milli: -1000, hi_milli: 2000 });
        assert_eq!(v, [2.0, -1.0]);
    }
}
