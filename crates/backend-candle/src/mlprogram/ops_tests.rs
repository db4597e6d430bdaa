//! Property tests of the executor's tensor functions against naive references on random data.

use candle_core::{Device, Tensor};
use proptest::prelude::*;

use super::*;

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec(), &Device::Cpu).expect("tensor")
}

fn vals(x: &Tensor) -> Vec<f32> {
    x.flatten_all().and_then(|x| x.to_vec1::<f32>()).expect("values")
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    // xorshift: deterministic values in [-2, 2).
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> std::result::Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        prop_assert!((x - y).abs() <= tol * (1.0 + y.abs()), "at {}: {} vs {}", i, x, y);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matmul_with_transposes(m in 1usize..6, k in 1usize..6, n in 1usize..6, batch in 1usize..3,
                              tx: bool, ty: bool, seed: u64) {
        let a = data(batch * m * k, seed);
        let b = data(batch * k * n, seed ^ 1);
        // Reference on the untransposed layout.
        let mut want = vec![0f32; batch * m * n];
        for bi in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    want[bi * m * n + i * n + j] = (0..k)
                        .map(|p| a[bi * m * k + i * k + p] * b[bi * k * n + p * n + j])
                        .sum();
                }
            }
        }
        let at = t(&a, &[batch, m, k]);
        let bt = t(&b, &[batch, k, n]);
        let ax = if tx { at.transpose(1, 2).and_then(|x| x.contiguous()).expect("t") } else { at };
        let bx = if ty { bt.transpose(1, 2).and_then(|x| x.contiguous()).expect("t") } else { bt };
        let got = matmul(&ax, &bx, tx, ty).expect("matmul");
        prop_assert_eq!(got.dims(), &[batch, m, n]);
        close(&vals(&got), &want, 1e-5)?;
    }

    #[test]
    fn softmax_matches_naive(rows in 1usize..5, cols in 1usize..9, seed: u64, last: bool) {
        let x = data(rows * cols, seed);
        let (ax, got) = if last {
            (1, softmax(&t(&x, &[rows, cols]), -1).expect("softmax"))
        } else {
            (0, softmax(&t(&x, &[rows, cols]), 0).expect("softmax"))
        };
        let mut want = vec![0f32; rows * cols];
        let (outer, inner, len) = if ax == 1 { (rows, 1, cols) } else { (1, cols, rows) };
        for o in 0..outer {
            for i in 0..inner {
                let idx = |j: usize| o * len * inner + j * inner + i;
                let mx = (0..len).map(|j| x[idx(j)]).fold(f32::MIN, f32::max);
                let s: f32 = (0..len).map(|j| (x[idx(j)] - mx).exp()).sum();
                (0..len).for_each(|j| want[idx(j)] = (x[idx(j)] - mx).exp() / s);
            }
        }
        close(&vals(&got), &want, 1e-5)?;
    }

    #[test]
    fn reduce_mean_matches_naive(c in 1usize..5, h in 1usize..5, w in 1usize..5, keep: bool, seed: u64) {
        let x = data(c * h * w, seed);
        let got = reduce_mean(&t(&x, &[1, c, h, w]), Some(&[-2, -1]), keep).expect("mean");
        let want: Vec<f32> = (0..c)
            .map(|ci| x[ci * h * w..(ci + 1) * h * w].iter().sum::<f32>() / (h * w) as f32)
            .collect();
        let shape: &[usize] = if keep { &[1, c, 1, 1] } else { &[1, c] };
        prop_assert_eq!(got.dims(), shape);
        close(&vals(&got), &want, 1e-5)?;
    }

    #[test]
    fn layer_norm_matches_naive(rows in 1usize..4, cols in 2usize..9, seed: u64) {
        let x = data(rows * cols, seed);
        let g = data(cols, seed ^ 2);
        let b = data(cols, seed ^ 3);
        let eps = 1e-5f32;
        let got = layer_norm(&t(&x, &[rows, cols]), &[-1], Some(&t(&g, &[cols])),
                             Some(&t(&b, &[cols])), eps).expect("ln");
        let mut want = Vec::new();
        for r in x.chunks(cols) {
            let m = r.iter().sum::<f32>() / cols as f32;
            let v = r.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / cols as f32;
            want.extend(r.iter().enumerate().map(|(j, x)| (x - m) / (v + eps).sqrt() * g[j] + b[j]));
        }
        close(&vals(&got), &want, 1e-4)?;
    }

    #[test]
    fn pools_match_naive(c in 1usize..3, h in 2usize..9, w in 2usize..9, k in 1usize..4,
                         s in 1usize..3, p in 0usize..2, max: bool, exclude: bool, seed: u64) {
        prop_assume!(k <= h + 2 * p && k <= w + 2 * p && p < k);
        let x = data(c * h * w, seed);
        let kind = if max { PoolKind::Max } else { PoolKind::Avg { exclude_pad: exclude } };
        let pool = Pool2d { kind, kernel: (k, k), stride: (s, s),
                            pad: PoolPad::Explicit([p; 4]), ceil_mode: false };
        let got = pool.forward(&t(&x, &[1, c, h, w])).expect("pool");
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        prop_assert_eq!(got.dims(), &[1, c, oh, ow]);
        let mut want = Vec::new();
        for ci in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut win = Vec::new();
                    let mut total = 0;
                    for ky in 0..k {
                        for kx in 0..k {
                            total += 1;
                            let (iy, ix) = ((oy * s + ky) as i64 - p as i64, (ox * s + kx) as i64 - p as i64);
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                win.push(x[ci * h * w + iy as usize * w + ix as usize]);
                            }
                        }
                    }
                    want.push(if max {
                        win.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                    } else if exclude {
                        win.iter().sum::<f32>() / win.len() as f32
                    } else {
                        win.iter().sum::<f32>() / total as f32
                    });
                }
            }
        }
        close(&vals(&got), &want, 1e-5)?;
    }

    #[test]
    fn slice_by_index_matches_python_slicing(len in 1usize..10, b in -12i64..12, e in -12i64..12,
                                             st in prop::sample::select(vec![-3i64, -2, -1, 1, 2, 3]),
                                             bm: bool, em: bool) {
        let x: Vec<f32> = (0..len).map(|i| i as f32).collect();
        let spec = SliceSpec { begin: vec![0, b], end: vec![1, e], stride: vec![1, st],
                               begin_mask: vec![false, bm], end_mask: vec![false, em],
                               squeeze_mask: vec![] };
        let got = slice_by_index(&t(&x, &[1, len]), &spec).expect("slice");
        // Python's slice.indices for the reference.
        let n = len as i64;
        let fix = |v: i64, lo: i64, hi: i64| { let v = if v < 0 { v + n } else { v }; v.clamp(lo, hi) };
        let (lo, hi) = if st > 0 { (0, n) } else { (-1, n - 1) };
        let start = if bm { if st > 0 { 0 } else { n - 1 } } else { fix(b, lo, hi) };
        let stop = if em { if st > 0 { n } else { -1 } } else { fix(e, lo, hi) };
        let mut want = Vec::new();
        let mut i = start;
        while (st > 0 && i < stop) || (st < 0 && i > stop) { want.push(i as f32); i += st; }
        prop_assert_eq!(got.dims(), &[1, want.len()]);
        close(&vals(&got), &want, 0.0)?;
    }

    #[test]
    fn split_then_concat_is_identity(a in 1usize..4, b in 1usize..9, parts in 1usize..4, seed: u64) {
        prop_assume!(parts <= b);
        let x = data(a * b, seed);
        let xt = t(&x, &[a, b]);
        let pieces = split(&xt, -1, None, parts).expect("split");
        prop_assert_eq!(pieces.len(), parts);
        prop_assert_eq!(pieces.iter().map(|p| p.dims()[1]).sum::<usize>(), b);
        let back = Tensor::cat(&pieces, 1).expect("cat");
        close(&vals(&back), &x, 0.0)?;
        // Explicit sizes: the first column, then the rest.
        if b > 1 {
            let two = split(&xt, 1, Some(&[1, b - 1]), 2).expect("split sizes");
            prop_assert_eq!(two[0].dims(), &[a, 1]);
            let col: Vec<f32> = (0..a).map(|r| x[r * b]).collect();
            close(&vals(&two[0]), &col, 0.0)?;
        }
    }
}

#[test]
fn pad_modes() {
    let x = t(&[1.0, 2.0, 3.0], &[1, 3]);
    let c = pad(&x, &[1, 2], PadMode::Constant(9.0)).expect("const");
    assert_eq!(vals(&c), [9.0, 1.0, 2.0, 3.0, 9.0, 9.0]);
    let r = pad(&x, &[2, 1], PadMode::Reflect).expect("reflect");
    assert_eq!(vals(&r), [3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
    let e = pad(&x, &[1, 1], PadMode::Replicate).expect("replicate");
    assert_eq!(vals(&e), [1.0, 1.0, 2.0, 3.0, 3.0]);
}

#[test]
fn exact_gelu_uses_the_kernel_erf() {
    let x = t(&[-2.0, -0.5, 0.0, 0.5, 3.0], &[5]);
    let y = vals(&activation(&x, Activation::Gelu).expect("gelu"));
    for (xi, yi) in [-2.0f32, -0.5, 0.0, 0.5, 3.0].iter().zip(y) {
        let want = 0.5 * xi * (1.0 + libm_erf(xi / std::f32::consts::SQRT_2));
        assert!((yi - want).abs() < 1e-6, "{xi}: {yi} vs {want}");
    }
}

/// erf by its Maclaurin series (|x| < 3 here), as an independent reference.
fn libm_erf(x: f32) -> f32 {
    let x = f64::from(x);
    let (mut term, mut sum) = (x, x);
    for n in 1..60 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    (sum * 2.0 / std::f64::consts::PI.sqrt()) as f32
}

/// Ceil mode with padding on a 5x5 input, 2x2 windows, stride 2, pad 1: ceil gives 4 windows a
/// side, but the fourth would start in the end padding and see no input (max over nothing is
/// -inf), so PyTorch's rule (which Core ML follows) drops it: 3x3, each the max of its rows and
/// columns of `5 r + c` worked out by hand.
#[test]
fn ceil_mode_never_starts_a_window_in_the_end_padding() {
    let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
    let pool = Pool2d {
        kind: PoolKind::Max,
        kernel: (2, 2),
        stride: (2, 2),
        pad: PoolPad::Explicit([1; 4]),
        ceil_mode: true,
    };
    let got = pool.forward(&t(&x, &[1, 1, 5, 5])).expect("pool");
    assert_eq!(got.dims(), &[1, 1, 3, 3]);
    let want = [0.0, 2.0, 4.0, 10.0, 12.0, 14.0, 20.0, 22.0, 24.0];
    assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
}
