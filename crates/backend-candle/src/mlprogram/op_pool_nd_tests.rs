//! N-D pooling against the plan's 2-D pooling (2-D windows) and against 2-D pools composed
//! along depth (3-D windows, valid padding).

use candle_core::{Device, Tensor};
use proptest::prelude::*;

use super::{Pad, PoolNd, Reduce};
use crate::mlprogram::ops::{Pool2d, PoolKind, PoolPad};

fn input(dims: &[usize], seed: u64) -> Tensor {
    let mut s = seed;
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn two_d_windows_match_the_plans_pool(
        h in 2usize..9, w in 2usize..9, kh in 1usize..4, kw in 1usize..4,
        sh in 1usize..3, sw in 1usize..3, pad in 0u8..3, ceil in any::<bool>(),
        kind in 0u8..3, seed in any::<u64>(),
    ) {
        prop_assume!(kh <= h && kw <= w);
        // Where ceil mode would start a window in the end padding the plan's 2-D pool keeps
        // it (an all-padding window); the N-D pool drops it, as PyTorch does. Compare the rest.
        let (pt, pb, pl, pr) = if pad == 2 { (1, 0, 0, 1) } else { (0, 0, 0, 0) };
        let trimmed = |i: usize, k: usize, s: usize, b: usize, e: usize| {
            ceil && (i + b + e - k).div_ceil(s) * s >= i + b
        };
        prop_assume!(!(ceil && pad == 1));
        prop_assume!(!trimmed(h, kh, sh, pt, pb) && !trimmed(w, kw, sw, pl, pr));
        let x = input(&[1, 2, h, w], seed);
        let (pool_pad, pad_nd) = match pad {
            0 => (PoolPad::Valid, Pad::Valid),
            1 => (PoolPad::Same, Pad::Same),
            _ => (PoolPad::Explicit([1, 0, 0, 1]), Pad::Custom(vec![1, 0, 0, 1])),
        };
        let (k2, knd) = match kind {
            0 => (PoolKind::Max, Reduce::Max),
            1 => (PoolKind::Avg { exclude_pad: true }, Reduce::Avg { exclude_pad: true }),
            _ => (PoolKind::Avg { exclude_pad: false }, Reduce::Avg { exclude_pad: false }),
        };
        let want = Pool2d { kind: k2, kernel: (kh, kw), stride: (sh, sw), pad: pool_pad, ceil_mode: ceil }
            .forward(&x).unwrap();
        let got = PoolNd { reduce: knd, kernel: vec![kh, kw], strides: vec![sh, sw], pad: pad_nd, ceil_mode: ceil }
            .forward(&x).unwrap();
        prop_assert_eq!(got.dims(), want.dims());
        for (g, w) in flat(&got).iter().zip(flat(&want)) {
            prop_assert!(*g == w || (g - w).abs() <= 1e-6, "{} vs {}", g, w);
        }
    }

    #[test]
    fn three_d_max_is_the_max_over_depth_of_two_d_pools(
        d in 1usize..5, h in 2usize..6, w in 2usize..6, kd in 1usize..3, k in 1usize..3,
        sd in 1usize..3, seed in any::<u64>(),
    ) {
        prop_assume!(kd <= d && k <= h && k <= w);
        let x = input(&[1, 2, d, h, w], seed);
        let got = PoolNd { reduce: Reduce::Max, kernel: vec![kd, k, k], strides: vec![sd, 1, 1], pad: Pad::Valid, ceil_mode: false }
            .forward(&x).unwrap();
        let p2 = Pool2d { kind: PoolKind::Max, kernel: (k, k), stride: (1, 1), pad: PoolPad::Valid, ceil_mode: false };
        let od = (d - kd) / sd + 1;
        let mut want = Vec::new();
        for c in 0..2 {
            let mut planes = Vec::new();
            for z in 0..od {
                let mut m: Option<Vec<f32>> = None;
                for dz in 0..kd {
                    let slice = x.get(0).unwrap().get(c).unwrap().get(z * sd + dz).unwrap().unsqueeze(0).unwrap().unsqueeze(0).unwrap();
                    let p = flat(&p2.forward(&slice).unwrap());
                    m = Some(match m { None => p, Some(m) => m.iter().zip(&p).map(|(a, b)| a.max(*b)).collect() });
                }
                planes.push(m.unwrap());
            }
            want.extend(planes.into_iter().flatten());
        }
        prop_assert_eq!(got.dims(), &[1, 2, od, h - k + 1, w - k + 1][..]);
        prop_assert_eq!(flat(&got), want);
    }
}

#[test]
fn l2_pool_is_the_root_of_the_sum_of_squares() {
    let x = Tensor::from_vec(vec![3f32, 4.0, 0.0, 12.0], (1, 1, 4), &Device::Cpu).unwrap();
    let p = PoolNd {
        reduce: Reduce::L2,
        kernel: vec![2],
        strides: vec![2],
        pad: Pad::Valid,
        ceil_mode: false,
    };
    assert_eq!(flat(&p.forward(&x).unwrap()), [5.0, 12.0]);
}
