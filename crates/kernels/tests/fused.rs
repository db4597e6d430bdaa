//! The banded inverted-residual kernel against a naive f64 evaluation of the same block
//! (expand 1x1, depthwise with TF "same" padding, project 1x1, optional residual), over random
//! shapes, strides, kernel sizes, activations, band heights and thread counts.

mod common;

use std::sync::Arc;

use common::{check, pool, values};
use kernels::{Activation, Conv2d, InvertedResidual, Padding};
use proptest::prelude::*;

fn act64(a: Activation, v: f64) -> f64 {
    match a {
        Activation::Relu6 => v.clamp(0.0, 6.0),
        Activation::Silu => v / (1.0 + (-v).exp()),
        _ => v,
    }
}

/// The block's weights and biases: expand, depthwise, project.
type Params<'a> = [&'a [f32]; 6];

/// The block in f64: `x` is `ci x h x w`; weights as given to the convolutions.
#[allow(clippy::too_many_arguments)]
fn naive(
    x: &[f32],
    (ci, ce, co): (usize, usize, usize),
    (h, w, k, s): (usize, usize, usize, usize),
    [we, be, wd, bd, wp, bp]: Params<'_>,
    ea: Activation,
    residual: bool,
    project: bool,
) -> Vec<f32> {
    let mut e = vec![0f64; ce * h * w];
    for c in 0..ce {
        for p in 0..h * w {
            let mut acc = f64::from(be[c]);
            for i in 0..ci {
                acc += f64::from(we[c * ci + i]) * f64::from(x[i * h * w + p]);
            }
            e[c * h * w + p] = act64(ea, acc);
        }
    }
    let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
    let pad = |i: usize, o: usize| ((o - 1) * s + k).saturating_sub(i) / 2;
    let (pt, pl) = (pad(h, oh), pad(w, ow));
    let mut d = vec![0f64; ce * oh * ow];
    for c in 0..ce {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = f64::from(bd[c]);
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky) as isize - pt as isize;
                        let ix = (ox * s + kx) as isize - pl as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = e[c * h * w + iy as usize * w + ix as usize];
                        acc += f64::from(wd[(c * k + ky) * k + kx]) * v;
                    }
                }
                d[(c * oh + oy) * ow + ox] = act64(Activation::Relu6, acc);
            }
        }
    }
    if !project {
        return d.iter().map(|&v| v as f32).collect();
    }
    let mut y = vec![0f32; co * oh * ow];
    for c in 0..co {
        for p in 0..oh * ow {
            let mut acc = f64::from(bp[c]);
            for i in 0..ce {
                acc += f64::from(wp[c * ce + i]) * d[i * oh * ow + p];
            }
            if residual {
                acc += f64::from(x[c * h * w + p]);
            }
            y[c * oh * ow + p] = acc as f32;
        }
    }
    y
}

fn conv(
    w: Vec<f32>,
    b: Vec<f32>,
    dims: [usize; 4],
    s: usize,
    g: usize,
    a: Activation,
) -> Arc<Conv2d> {
    let c = Conv2d::new(w, dims, Some(b), (s, s), (1, 1), g, Padding::Same, a);
    Arc::new(c.expect("valid conv"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn banded_block_matches_naive(
        ci in 1usize..20, mult in 1usize..5, co_pick in 1usize..20, k in prop::sample::select(vec![3usize, 5, 7]),
        s in 1usize..3, h in 1usize..19, w in 1usize..19, n in 1usize..3, rows in 1usize..7,
        threads in 1usize..3, silu: bool, want_residual: bool, no_project: bool, seed: u64,
    ) {
        let ce = ci * mult;
        let project = !no_project;
        let residual = want_residual && s == 1 && project;
        let co = if residual { ci } else if project { co_pick } else { ce };
        let ea = if silu { Activation::Silu } else { Activation::Relu6 };
        let (we, be) = (values(ce * ci, seed), values(ce, seed ^ 1));
        let (wd, bd) = (values(ce * k * k, seed ^ 2), values(ce, seed ^ 3));
        let (wp, bp) = (values(co * ce, seed ^ 4), values(co, seed ^ 5));
        let block = InvertedResidual::new(
            conv(we.clone(), be.clone(), [ce, ci, 1, 1], 1, 1, ea),
            conv(wd.clone(), bd.clone(), [ce, 1, k, k], s, ce, Activation::Relu6),
            project.then(|| conv(wp.clone(), bp.clone(), [co, ce, 1, 1], 1, 1, Activation::None)),
            residual,
        );
        // Blocks run here whenever the packed GEMM is available (x86-64 with AVX2, aarch64).
        let Some(block) = block else { return Ok(()) };
        let x = values(n * ci * h * w, seed ^ 6);
        let (c, oh, ow) = block.output_shape(h, w).expect("shape");
        prop_assert_eq!((c, oh, ow), (co, h.div_ceil(s), w.div_ceil(s)));
        let mut got = vec![f32::NAN; n * co * oh * ow];
        pool(threads).install(|| block.forward_banded(&x, n, h, w, &mut got, rows)).expect("run");
        for b in 0..n {
            let xb = &x[b * ci * h * w..(b + 1) * ci * h * w];
            let want = naive(xb, (ci, ce, co), (h, w, k, s), [&we, &be, &wd, &bd, &wp, &bp], ea, residual, project);
            let gb = &got[b * co * oh * ow..(b + 1) * co * oh * ow];
            check(gb, &want, &format!("image {b} of {ci}->{ce}->{co} k{k} s{s} {h}x{w} rows {rows}"))?;
        }
    }
}

#[test]
fn blocks_the_kernel_does_not_run_are_refused() {
    let c = |dims: [usize; 4], s: usize, g: usize| {
        conv(vec![0.1; dims.iter().product()], vec![0.0; dims[0]], dims, s, g, Activation::None)
    };
    // (expansion, depthwise (dims, stride, groups), projection, residual, what is wrong).
    type Dw = ([usize; 4], usize, usize);
    type Case = ([usize; 4], Dw, Option<[usize; 4]>, bool, &'static str);
    let cases: [Case; 5] = [
        ([8, 4, 3, 3], ([8, 1, 3, 3], 1, 8), Some([4, 8, 1, 1]), false, "a 3x3 expansion"),
        ([8, 4, 1, 1], ([8, 8, 3, 3], 1, 1), Some([4, 8, 1, 1]), false, "a dense middle"),
        ([8, 4, 1, 1], ([6, 1, 3, 3], 1, 6), Some([4, 6, 1, 1]), false, "channels that differ"),
        ([8, 4, 1, 1], ([8, 1, 3, 3], 2, 8), Some([4, 8, 1, 1]), true, "a strided residual"),
        ([8, 4, 1, 1], ([8, 1, 3, 3], 1, 8), None, true, "a residual with no projection"),
    ];
    for (e, (d, s, g), p, residual, what) in cases {
        let block = InvertedResidual::new(c(e, 1, 1), c(d, s, g), p.map(|p| c(p, 1, 1)), residual);
        assert!(block.is_none(), "{what} was taken");
    }
    let ok = InvertedResidual::new(
        c([8, 4, 1, 1], 1, 1),
        c([8, 1, 3, 3], 1, 8),
        Some(c([4, 8, 1, 1], 1, 1)),
        true,
    );
    // Wrong buffer sizes are an error, not a panic (where this machine runs the kernel).
    if let Some(b) = ok {
        assert!(b.forward_into(&[0.0; 3], 1, 2, 2, &mut [0.0; 16]).is_err());
    }
}
