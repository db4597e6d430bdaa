//! Element-wise activations fused into kernel epilogues, including a fast exact-GELU erf.

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
    /// clamp(x, lo, hi) with bounds in thousandths (so the enum stays `Eq`).
    Clip {
        /// Lower bound times 1000.
        lo_milli: i32,
        /// Upper bound times 1000.
        hi_milli: i32,
    },
}

/// erf(x) with absolute error below 2e-7 (Abramowitz & Stegun 7.1.26 is 1.5e-7), written
/// branch-light so loops over it vectorize.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // A&S 7.1.26 coefficients.
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let s = x.signum();
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    s * (1.0 - poly * (-a * a).exp())
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Applies `act` to every element of `xs` in place.
pub fn apply_activation(xs: &mut [f32], act: Activation) {
    match act {
        Activation::None => {}
        Activation::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::Relu6 => xs.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0)),
        Activation::Gelu => xs
            .iter_mut()
            .for_each(|x| *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2))),
        Activation::Silu => xs.iter_mut().for_each(|x| *x *= sigmoid(*x)),
        Activation::Sigmoid => xs.iter_mut().for_each(|x| *x = sigmoid(*x)),
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
        assert!(worst < 3e-7, "worst erf error {worst}");
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
