//! Property tests: every conv kernel path (depthwise with channel multiplier, pointwise GEMM
//! with fused epilogue and residual accumulation, grouped im2col + GEMM) and the activations,
//! against naive references over random shapes, strides, paddings, groups and thread counts.

use kernels::{Activation, Conv2d, DwIsa, Padding, apply_activation, erf, exp, matmul};
use proptest::prelude::*;

mod common;
use common::{check, pool, values};

/// Naive NCHW convolution in f64 with explicit padding `[t, b, l, r]`.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[f32],
    (n, ci, h, w): (usize, usize, usize, usize),
    wt: &[f32],
    [co, cig, kh, kw]: [usize; 4],
    bias: &[f32],
    stride: (usize, usize),
    dil: (usize, usize),
    groups: usize,
    [pt, pb, pl, pr]: [usize; 4],
) -> (Vec<f32>, usize, usize) {
    let oh = (h + pt + pb - ((kh - 1) * dil.0 + 1)) / stride.0 + 1;
    let ow = (w + pl + pr - ((kw - 1) * dil.1 + 1)) / stride.1 + 1;
    let cog = co / groups;
    let mut out = vec![0f32; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            let g = o / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias[o] as f64;
                    for c in 0..cig {
                        let ic = g * cig + c;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride.0 + ky * dil.0) as isize - pt as isize;
                                let ix = (ox * stride.1 + kx * dil.1) as isize - pl as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * ci + ic) * h + iy as usize) * w + ix as usize];
                                let wv = wt[((o * cig + c) * kh + ky) * kw + kx];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((b * co + o) * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
    }
    let _ = ci;
    (out, oh, ow)
}

fn naive_act(v: f32, act: Activation) -> f32 {
    let v = v as f64;
    let r = match act {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::Relu6 => v.clamp(0.0, 6.0),
        Activation::Gelu => 0.5 * v * (1.0 + erf_f64(v / std::f64::consts::SQRT_2)),
        Activation::Silu => v / (1.0 + (-v).exp()),
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Activation::HardSigmoid => (v / 6.0 + 0.5).clamp(0.0, 1.0),
        Activation::HardSwish => v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
        Activation::Clip { lo_milli, hi_milli } => {
            v.max(lo_milli as f64 / 1000.0).min(hi_milli as f64 / 1000.0)
        }
    };
    r as f32
}

/// erf by its Maclaurin series (|x| < 3) or the continued fraction of erfc, in f64.
fn erf_f64(x: f64) -> f64 {
    if x.abs() < 3.0 {
        let (mut sum, mut term, mut n) = (0.0, x, 0.0);
        while term.abs() > 1e-17 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let a = x.abs();
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (a + f);
        }
        x.signum() * (1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f))
    }
}

fn acts() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::None),
        Just(Activation::Relu),
        Just(Activation::Relu6),
        Just(Activation::Gelu),
        Just(Activation::Silu),
        Just(Activation::Sigmoid),
        Just(Activation::HardSigmoid),
        Just(Activation::HardSwish),
    ]
}

/// Kind of convolution to generate.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Depthwise { mult: usize },
    Pointwise,
    General { groups: usize },
}

fn kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1usize..=3).prop_map(|mult| Kind::Depthwise { mult }),
        Just(Kind::Pointwise),
        (1usize..=3).prop_map(|groups| Kind::General { groups }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn conv_matches_naive(
        kind in kinds(),
        n in 1usize..=2,
        c in 1usize..=9,
        h in 1usize..=19,
        w in 1usize..=23,
        k in prop_oneof![Just(1usize), Just(3), Just(5), Just(7)],
        stride in 1usize..=3,
        dil in 1usize..=2,
        pads in proptest::array::uniform4(0usize..=3),
        same in any::<bool>(),
        act in acts(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let (ci, co, groups, kh, kw, stride, dil) = match kind {
            Kind::Depthwise { mult } => (c, c * mult, c, k, k, (stride, stride), (dil, dil)),
            Kind::Pointwise => (c, c + 2 * (seed as usize % 5), 1, 1, 1, (1, 1), (1, 1)),
            Kind::General { groups } => {
                (c * groups, (1 + seed as usize % 4) * groups, groups, k, k.min(5), (stride, 1), (1, dil))
            }
        };
        let cig = ci / groups;
        let padding = match kind {
            Kind::Pointwise => Padding::Valid,
            _ if same => Padding::Same,
            _ => Padding::Explicit(pads),
        };
        let wt = values(co * cig * kh * kw, seed);
        let bias = values(co, seed ^ 1);
        let x = values(n * ci * h * w, seed ^ 2);
        let conv = Conv2d::new(wt.clone(), [co, cig, kh, kw], Some(bias.clone()), stride, dil, groups, padding, act)
            .expect("valid conv");
        let Ok((oh, ow)) = conv.output_hw(h, w) else { return Ok(()) };
        let [pt, _, pl, _] = match padding {
            Padding::Explicit(p) => p,
            Padding::Valid => [0; 4],
            Padding::Same => {
                let same = |i: usize, k: usize, s: usize, d: usize| {
                    let o = i.div_ceil(s);
                    let t = ((o - 1) * s + (k - 1) * d + 1).saturating_sub(i);
                    (t / 2, t - t / 2)
                };
                let (t, b) = same(h, kh, stride.0, dil.0);
                let (l, r) = same(w, kw, stride.1, dil.1);
                [t, b, l, r]
            }
        };
        // Bottom/right padding as far as the output needs it.
        let pb = ((oh - 1) * stride.0 + (kh - 1) * dil.0 + 1).saturating_sub(h + pt);
        let pr = ((ow - 1) * stride.1 + (kw - 1) * dil.1 + 1).saturating_sub(w + pl);
        let (mut want, wh, ww) = naive_conv(&x, (n, ci, h, w), &wt, [co, cig, kh, kw], &bias, stride, dil, groups, [pt, pb, pl, pr]);
        prop_assert_eq!((wh, ww), (oh, ow));
        let residual = values(want.len(), seed ^ 3);
        let mut want_res: Vec<f32> = want.iter().zip(&residual).map(|(a, r)| naive_act(a + r, act)).collect();
        want.iter_mut().for_each(|v| *v = naive_act(*v, act));
        let p = pool(threads);
        let got = p.install(|| conv.forward(&x, n, h, w)).expect("forward");
        check(&got, &want, &format!("{kind:?} forward"))?;
        let mut acc = residual.clone();
        p.install(|| conv.forward_add(&x, n, h, w, &mut acc)).expect("forward_add");
        check(&acc, &want_res, &format!("{kind:?} forward_add"))?;
        want_res.clear();
    }

    /// The implicit GEMM's gathers (masked loads at horizontal stride 1, load pairs and a permute
    /// at stride 2, gathers beyond) and its tiling: wide planes whose 48-column strips span
    /// several output rows, both strides free, dilation, padding, groups, the residual epilogue;
    /// and the same convolution through im2col (`INFER_CONV=im2col` runs pick that up too).
    #[test]
    fn implicit_gemm_matches_naive(
        groups in 1usize..=2,
        cig in 1usize..=5,
        cog in 1usize..=20,
        h in 1usize..=13,
        w in 1usize..=75,
        kh in 1usize..=4,
        kw in 1usize..=4,
        stride in (1usize..=3, 1usize..=3),
        dil in (1usize..=2, 1usize..=2),
        pads in proptest::array::uniform4(0usize..=3),
        act in acts(),
        threads in 1usize..=2,
        seed in any::<u64>(),
    ) {
        let (ci, co) = (cig * groups, cog * groups);
        let wt = values(co * cig * kh * kw, seed);
        let bias = values(co, seed ^ 1);
        let x = values(ci * h * w, seed ^ 2);
        let conv = Conv2d::new(wt.clone(), [co, cig, kh, kw], Some(bias.clone()), stride, dil, groups, Padding::Explicit(pads), act)
            .expect("valid conv");
        let Ok((oh, ow)) = conv.output_hw(h, w) else { return Ok(()) };
        let [pt, _, pl, _] = pads;
        let pb = ((oh - 1) * stride.0 + (kh - 1) * dil.0 + 1).saturating_sub(h + pt);
        let pr = ((ow - 1) * stride.1 + (kw - 1) * dil.1 + 1).saturating_sub(w + pl);
        let (plain, _, _) = naive_conv(&x, (1, ci, h, w), &wt, [co, cig, kh, kw], &bias, stride, dil, groups, [pt, pb, pl, pr]);
        let want: Vec<f32> = plain.iter().map(|v| naive_act(*v, act)).collect();
        let residual = values(want.len(), seed ^ 3);
        let want_res: Vec<f32> = plain.iter().zip(&residual).map(|(a, r)| naive_act(a + r, act)).collect();
        let p = pool(threads);
        let got = p.install(|| conv.forward(&x, 1, h, w)).expect("forward");
        check(&got, &want, "implicit forward")?;
        let mut acc = residual;
        p.install(|| conv.forward_add(&x, 1, h, w, &mut acc)).expect("forward_add");
        check(&acc, &want_res, "implicit forward_add")?;
    }

    /// Strided 1x1 convolutions without padding (downsampling shortcuts), which run as the 1x1
    /// GEMM on the subsampled input: any stride per axis, odd and even sizes, the residual
    /// epilogue, one and two threads.
    #[test]
    fn strided_pointwise_matches_naive(
        ci in 1usize..=40,
        co in 1usize..=30,
        h in 1usize..=20,
        w in 1usize..=60,
        stride in (1usize..=3, 1usize..=3),
        act in acts(),
        threads in 1usize..=2,
        seed in any::<u64>(),
    ) {
        let wt = values(co * ci, seed);
        let bias = values(co, seed ^ 1);
        let x = values(ci * h * w, seed ^ 2);
        let conv = Conv2d::new(wt.clone(), [co, ci, 1, 1], Some(bias.clone()), stride, (1, 1), 1, Padding::Explicit([0; 4]), act)
            .expect("valid conv");
        let (plain, _, _) = naive_conv(&x, (1, ci, h, w), &wt, [co, ci, 1, 1], &bias, stride, (1, 1), 1, [0; 4]);
        let want: Vec<f32> = plain.iter().map(|v| naive_act(*v, act)).collect();
        let residual = values(want.len(), seed ^ 3);
        let want_res: Vec<f32> = plain.iter().zip(&residual).map(|(a, r)| naive_act(a + r, act)).collect();
        let p = pool(threads);
        let got = p.install(|| conv.forward(&x, 1, h, w)).expect("forward");
        check(&got, &want, "strided 1x1 forward")?;
        let mut acc = residual;
        p.install(|| conv.forward_add(&x, 1, h, w, &mut acc)).expect("forward_add");
        check(&acc, &want_res, "strided 1x1 forward_add")?;
    }

    /// The implicit GEMM at depths past one 128-tap block (later blocks accumulate into the
    /// output, the bias with the first, the clamp with the last) on the padded-copy gathers
    /// (stride 1 and 2 in both directions) and the masked ones (mixed strides), with padding
    /// on any side, plane tails narrower than a strip, the residual epilogue and both thread
    /// counts.
    #[test]
    fn implicit_gemm_deep_matches_naive(
        cig in 15usize..=40,
        cog in 1usize..=20,
        h in 1usize..=12,
        w in 1usize..=60,
        k in 2usize..=3,
        stride in (1usize..=2, 1usize..=2),
        pads in proptest::array::uniform4(0usize..=2),
        act in acts(),
        threads in 1usize..=2,
        seed in any::<u64>(),
    ) {
        let wt = values(cog * cig * k * k, seed);
        let bias = values(cog, seed ^ 1);
        let x = values(cig * h * w, seed ^ 2);
        let conv = Conv2d::new(wt.clone(), [cog, cig, k, k], Some(bias.clone()), stride, (1, 1), 1, Padding::Explicit(pads), act)
            .expect("valid conv");
        let Ok((oh, ow)) = conv.output_hw(h, w) else { return Ok(()) };
        let [pt, _, pl, _] = pads;
        let pb = ((oh - 1) * stride.0 + k).saturating_sub(h + pt);
        let pr = ((ow - 1) * stride.1 + k).saturating_sub(w + pl);
        let (plain, _, _) = naive_conv(&x, (1, cig, h, w), &wt, [cog, cig, k, k], &bias, stride, (1, 1), 1, [pt, pb, pl, pr]);
        let want: Vec<f32> = plain.iter().map(|v| naive_act(*v, act)).collect();
        let residual = values(want.len(), seed ^ 3);
        let want_res: Vec<f32> = plain.iter().zip(&residual).map(|(a, r)| naive_act(a + r, act)).collect();
        let p = pool(threads);
        let got = p.install(|| conv.forward(&x, 1, h, w)).expect("forward");
        check(&got, &want, "deep implicit forward")?;
        let mut acc = residual;
        p.install(|| conv.forward_add(&x, 1, h, w, &mut acc)).expect("forward_add");
        check(&acc, &want_res, "deep implicit forward_add")?;
    }

    #[test]
    fn pointwise_large_matches_naive(
        ci in 1usize..=64,
        co in 1usize..=80,
        hw in 1usize..=700,
        act in acts(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let wt = values(co * ci, seed);
        let bias = values(co, seed ^ 1);
        let x = values(ci * hw, seed ^ 2);
        let conv = Conv2d::new(wt.clone(), [co, ci, 1, 1], Some(bias.clone()), (1, 1), (1, 1), 1, Padding::Valid, act)
            .expect("valid conv");
        let (want, _, _) = naive_conv(&x, (1, ci, 1, hw), &wt, [co, ci, 1, 1], &bias, (1, 1), (1, 1), 1, [0; 4]);
        let want: Vec<f32> = want.iter().map(|v| naive_act(*v, act)).collect();
        let got = pool(threads).install(|| conv.forward(&x, 1, 1, hw)).expect("forward");
        check(&got, &want, "pointwise")?;
    }

    /// Every depthwise kernel (direct AVX-512 / AVX2+FMA / portable and the padded one), each
    /// forced, on the shapes the direct kernel handles: 3x3/5x5/7x7, stride 1 and 2, planes wide
    /// and tall enough for several column vectors and row blocks, clamp and other activations.
    #[test]
    fn depthwise_paths_match_naive(
        c in 1usize..=4,
        mult in 1usize..=2,
        h in 1usize..=37,
        w in 1usize..=41,
        k in prop_oneof![Just(3usize), Just(5), Just(7)],
        stride in 1usize..=2,
        pads in proptest::array::uniform4(0usize..=3),
        same in any::<bool>(),
        act in prop_oneof![Just(Activation::None), Just(Activation::Relu), Just(Activation::Relu6),
            Just(Activation::Clip { lo_milli: -500, hi_milli: 250 }), Just(Activation::Gelu)],
        threads in 1usize..=2,
        seed in any::<u64>(),
    ) {
        let co = c * mult;
        let padding = if same { Padding::Same } else { Padding::Explicit(pads) };
        let wt = values(co * k * k, seed);
        let bias = values(co, seed ^ 1);
        let x = values(c * h * w, seed ^ 2);
        let conv = Conv2d::new(wt.clone(), [co, 1, k, k], Some(bias.clone()), (stride, stride), (1, 1), c, padding, act)
            .expect("valid conv");
        let Ok((oh, ow)) = conv.output_hw(h, w) else { return Ok(()) };
        let [pt, _, pl, _] = match padding {
            Padding::Explicit(p) => p,
            _ => {
                let same = |i: usize| {
                    let t = ((i.div_ceil(stride) - 1) * stride + k).saturating_sub(i);
                    (t / 2, t - t / 2)
                };
                let ((t, b), (l, r)) = (same(h), same(w));
                [t, b, l, r]
            }
        };
        let pb = ((oh - 1) * stride + k).saturating_sub(h + pt);
        let pr = ((ow - 1) * stride + k).saturating_sub(w + pl);
        let (want, _, _) = naive_conv(&x, (1, c, h, w), &wt, [co, 1, k, k], &bias, (stride, stride), (1, 1), c, [pt, pb, pl, pr]);
        let want: Vec<f32> = want.iter().map(|v| naive_act(*v, act)).collect();
        let p = pool(threads);
        for path in [DwIsa::Avx512, DwIsa::Avx2, DwIsa::Portable, DwIsa::Padded] {
            if !path.available() {
                continue;
            }
            let got = p.install(|| conv.forward_depthwise_with(path, &x, 1, h, w)).expect("forward");
            check(&got, &want, &format!("depthwise {path:?}"))?;
        }
    }

    /// The channels-in-lanes depthwise kernel, forced, on any geometry it takes: channel counts
    /// over several 16-channel groups with a partial last one, non-square kernels, strides 1-3
    /// per axis, dilation, explicit and same padding (inputs with rows and columns no output
    /// reads included), batches of two, clamp and other activations.
    #[test]
    fn depthwise_lanes_matches_naive(
        c in 1usize..=40,
        h in 1usize..=19,
        w in 1usize..=37,
        (kh, kw) in (1usize..=5, 1usize..=5),
        (sy, sx) in (1usize..=3, 1usize..=3),
        dil in 1usize..=2,
        pads in proptest::array::uniform4(0usize..=3),
        same in any::<bool>(),
        act in prop_oneof![Just(Activation::None), Just(Activation::Relu6), Just(Activation::Silu)],
        n in 1usize..=2,
        threads in 1usize..=2,
        seed in any::<u64>(),
    ) {
        if !DwIsa::Lanes.available() {
            return Ok(());
        }
        let padding = if same { Padding::Same } else { Padding::Explicit(pads) };
        let wt = values(c * kh * kw, seed);
        let bias = values(c, seed ^ 1);
        let x = values(n * c * h * w, seed ^ 2);
        let conv = Conv2d::new(wt.clone(), [c, 1, kh, kw], Some(bias.clone()), (sy, sx), (dil, dil), c, padding, act)
            .expect("valid conv");
        let Ok((oh, ow)) = conv.output_hw(h, w) else { return Ok(()) };
        let (ekh, ekw) = ((kh - 1) * dil + 1, (kw - 1) * dil + 1);
        let [pt, _, pl, _] = match padding {
            Padding::Explicit(p) => p,
            _ => {
                let same = |i: usize, s: usize, e: usize| {
                    let t = ((i.div_ceil(s) - 1) * s + e).saturating_sub(i);
                    (t / 2, t - t / 2)
                };
                let ((t, b), (l, r)) = (same(h, sy, ekh), same(w, sx, ekw));
                [t, b, l, r]
            }
        };
        let pb = ((oh - 1) * sy + ekh).saturating_sub(h + pt);
        let pr = ((ow - 1) * sx + ekw).saturating_sub(w + pl);
        let (want, _, _) = naive_conv(&x, (n, c, h, w), &wt, [c, 1, kh, kw], &bias, (sy, sx), (dil, dil), c, [pt, pb, pl, pr]);
        let want: Vec<f32> = want.iter().map(|v| naive_act(*v, act)).collect();
        let got = pool(threads).install(|| conv.forward_depthwise_with(DwIsa::Lanes, &x, n, h, w)).expect("forward");
        check(&got, &want, "depthwise lanes")?;
    }

    #[test]
    fn matmul_matches_naive(m in 1usize..=40, n in 1usize..=40, k in 0usize..=40, threads in 1usize..=3, seed in any::<u64>()) {
        let a = values(m * k, seed);
        let b = values(k * n, seed ^ 5);
        let mut c = vec![f32::NAN; m * n];
        prop_assert!(pool(threads).install(|| matmul(m, n, k, &a, &b, &mut c)));
        let want: Vec<f32> = (0..m * n)
            .map(|i| (0..k).map(|p| a[i / n * k + p] as f64 * b[p * n + i % n] as f64).sum::<f64>() as f32)
            .collect();
        check(&c, &want, "matmul")?;
    }

    #[test]
    fn activations_match_naive(v in proptest::collection::vec(-12f32..12f32, 0..300), act in acts()) {
        let mut got = v.clone();
        apply_activation(&mut got, act);
        for (g, x) in got.iter().zip(&v) {
            let want = naive_act(*x, act);
            // GELU inherits erf's absolute error (< 5e-7, `erf_is_close_everywhere`) times
            // 0.5 |x|: where 1 + erf cancels (x near -5.5) that is above 1e-6 of a tiny value.
            let erf_part = if act == Activation::Gelu { 0.5 * x.abs() * 5e-7 } else { 0.0 };
            let tol = 1e-6 * want.abs().max(1.0) + erf_part;
            prop_assert!((g - want).abs() <= tol, "{:?}({}) = {} want {}", act, x, g, want);
        }
    }

    #[test]
    fn exp_is_close_everywhere(x in -87f32..88f32) {
        let want = f64::from(x).exp();
        prop_assert!((f64::from(exp(x)) - want).abs() <= 3e-7 * want, "exp({}) = {} want {}", x, exp(x), want);
    }

    #[test]
    fn erf_is_close_everywhere(x in -10f32..10f32) {
        prop_assert!((erf(x) as f64 - erf_f64(x as f64)).abs() < 5e-7);
    }
}

/// After a run (which packs the GEMM weights and drops the row-major copy on AVX-512), changing
/// the weights through `weight_and_bias_mut` sees the original values and takes effect.
#[test]
fn weights_change_after_packing() {
    let (ci, co, hw) = (5, 11, 37);
    let wt = values(co * ci, 7);
    let x = values(ci * hw, 8);
    let mut conv = Conv2d::new(
        wt.clone(),
        [co, ci, 1, 1],
        None,
        (1, 1),
        (1, 1),
        1,
        Padding::Valid,
        Activation::None,
    )
    .expect("valid conv");
    let first = conv.forward(&x, 1, 1, hw).expect("forward");
    let (w, b) = conv.weight_and_bias_mut();
    assert_eq!(w, &wt[..], "row-major weights restored from the packed copy");
    w.iter_mut().for_each(|v| *v *= 2.0);
    b.iter_mut().for_each(|v| *v = 1.0);
    let second = conv.forward(&x, 1, 1, hw).expect("forward");
    for (a, s) in first.iter().zip(&second) {
        assert!((2.0 * a + 1.0 - s).abs() <= 1e-5 * s.abs().max(1.0), "{a} -> {s}");
    }
}

/// Planes a few columns past whole 48-column strips (7x7 = 48 + 1, 14x14 = 4 x 48 + 4), where
/// the GEMMs' last tile takes the leftover columns with it, and planes a thread walks in several
/// cache-sized chunks (30x30 and 1x250 at depth 360, the last chunk taking a narrow remainder),
/// on one to three threads: the 1x1
/// GEMM and the implicit 3x3 one (deep enough for several tap blocks) against the naive
/// reference.
#[test]
fn strip_tails_match_naive() {
    for (h, w) in
        [(7, 7), (14, 14), (1, 49), (1, 97), (1, 100), (2, 50), (3, 33), (30, 30), (1, 250)]
    {
        for (k, ci) in [(1, 20), (3, 40)] {
            let co = 24;
            let wt = values(co * ci * k * k, 7);
            let bias = values(co, 8);
            let x = values(ci * h * w, 9);
            let pad = k / 2;
            let conv = Conv2d::new(
                wt.clone(),
                [co, ci, k, k],
                Some(bias.clone()),
                (1, 1),
                (1, 1),
                1,
                Padding::Explicit([pad; 4]),
                Activation::Relu6,
            )
            .expect("valid conv");
            let (plain, _, _) = naive_conv(
                &x,
                (1, ci, h, w),
                &wt,
                [co, ci, k, k],
                &bias,
                (1, 1),
                (1, 1),
                1,
                [pad; 4],
            );
            let want: Vec<f32> = plain.iter().map(|v| naive_act(*v, Activation::Relu6)).collect();
            for threads in 1..=3 {
                let got = pool(threads).install(|| conv.forward(&x, 1, h, w)).expect("forward");
                check(&got, &want, &format!("{k}x{k} at {h}x{w}, {threads} threads"))
                    .expect("matches");
            }
        }
    }
}

/// 1x1 convolutions deep and narrow enough (512-1152 input channels, few outputs, small
/// planes) that two or three threads split the depth and add their partial sums: with and
/// without a residual, with a clamp and a non-clamp activation; the residual folded into the
/// GEMM rounds exactly as the convolution followed by the add.
#[test]
fn depth_split_pointwise_matches_naive() {
    for (ci, co, hw) in [(512, 24, 49), (1152, 40, 49), (640, 8, 30), (600, 16, 97)] {
        for act in [Activation::Relu6, Activation::Silu, Activation::None] {
            let wt = values(co * ci, 11);
            let bias = values(co, 12);
            let x = values(ci * hw, 13);
            let conv = Conv2d::new(
                wt.clone(),
                [co, ci, 1, 1],
                Some(bias.clone()),
                (1, 1),
                (1, 1),
                1,
                Padding::Valid,
                act,
            )
            .expect("valid conv");
            let (plain, _, _) = naive_conv(
                &x,
                (1, ci, 1, hw),
                &wt,
                [co, ci, 1, 1],
                &bias,
                (1, 1),
                (1, 1),
                1,
                [0; 4],
            );
            let want: Vec<f32> = plain.iter().map(|v| naive_act(*v, act)).collect();
            let residual = values(want.len(), 14);
            let want_res: Vec<f32> =
                plain.iter().zip(&residual).map(|(a, r)| naive_act(a + r, act)).collect();
            for threads in 1..=3 {
                let p = pool(threads);
                let got = p.install(|| conv.forward(&x, 1, 1, hw)).expect("forward");
                check(&got, &want, &format!("{ci}->{co} x {hw} {act:?}, {threads} threads"))
                    .expect("matches");
                let mut acc = residual.clone();
                p.install(|| conv.forward_add(&x, 1, 1, hw, &mut acc)).expect("forward_add");
                check(
                    &acc,
                    &want_res,
                    &format!("{ci}->{co} x {hw} {act:?} + residual, {threads} threads"),
                )
                .expect("matches");
                if act == Activation::None {
                    // The folded add rounds as the convolution followed by the add does.
                    let added: Vec<f32> = got.iter().zip(&residual).map(|(a, r)| a + r).collect();
                    assert_eq!(acc, added, "{ci}->{co} x {hw}, {threads} threads: folded add");
                }
            }
        }
    }
}
