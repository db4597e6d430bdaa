//! Property test: the 2-D max-pool kernel against a naive window loop over random plane sizes,
//! windows, strides, paddings (including windows that hang past the input) and thread counts.

use kernels::{PoolGeometry, max_pool2d};
use proptest::prelude::*;

#[allow(dead_code)]
mod common;
use common::pool;

/// The largest in-bounds value of each window, by direct iteration (`-inf` for none).
fn naive(x: &[f32], planes: usize, g: PoolGeometry) -> Vec<f32> {
    let mut out = Vec::new();
    for p in 0..planes {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let iy = (oy * g.stride.0 + ky) as isize - g.pad_top as isize;
                        let ix = (ox * g.stride.1 + kx) as isize - g.pad_left as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                            m = m.max(x[(p * g.h + iy as usize) * g.w + ix as usize]);
                        }
                    }
                }
                out.push(m);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn max_pool_matches_naive(
        planes in 1usize..=5,
        h in 1usize..=23,
        w in 1usize..=37,
        kh in 1usize..=4,
        kw in 1usize..=4,
        sh in 1usize..=3,
        sw in 1usize..=3,
        pads in proptest::array::uniform4(0usize..=3),
        threads in 1usize..=3,
        x in proptest::collection::vec(-100f32..100f32, 5 * 23 * 37),
    ) {
        let [pt, pb, pl, pr] = pads;
        prop_assume!(h + pt + pb >= kh && w + pl + pr >= kw);
        let (oh, ow) = ((h + pt + pb - kh) / sh + 1, (w + pl + pr - kw) / sw + 1);
        let g = PoolGeometry { h, w, oh, ow, kh, kw, stride: (sh, sw), pad_top: pt, pad_left: pl };
        let x = &x[..planes * h * w];
        let want = naive(x, planes, g);
        let mut got = vec![f32::NAN; planes * oh * ow];
        pool(threads).install(|| max_pool2d(x, planes, g, &mut got)).expect("max_pool2d");
        // A maximum is one of the inputs: exact equality.
        prop_assert_eq!(got, want);
    }

    /// The 3-wide stride-2 window (ResNet's stem pool) on planes wide enough for the
    /// vectorised horizontal pass (16 outputs at a time) and its scalar tail.
    #[test]
    fn max_pool_3x3_stride_2_wide_matches_naive(
        planes in 1usize..=3,
        h in 3usize..=9,
        w in 3usize..=150,
        pads in proptest::array::uniform4(0usize..=1),
        x in proptest::collection::vec(-100f32..100f32, 3 * 9 * 150),
    ) {
        let [pt, pb, pl, pr] = pads;
        let (oh, ow) = ((h + pt + pb - 3) / 2 + 1, (w + pl + pr - 3) / 2 + 1);
        let g = PoolGeometry { h, w, oh, ow, kh: 3, kw: 3, stride: (2, 2), pad_top: pt, pad_left: pl };
        let x = &x[..planes * h * w];
        let want = naive(x, planes, g);
        let mut got = vec![f32::NAN; planes * oh * ow];
        pool(1).install(|| max_pool2d(x, planes, g, &mut got)).expect("max_pool2d");
        prop_assert_eq!(got, want);
    }
}

#[test]
fn mismatched_lengths_are_an_error() {
    let g = PoolGeometry {
        h: 4,
        w: 4,
        oh: 2,
        ow: 2,
        kh: 2,
        kw: 2,
        stride: (2, 2),
        pad_top: 0,
        pad_left: 0,
    };
    let mut out = vec![0f32; 4];
    assert!(max_pool2d(&[0.0; 15], 1, g, &mut out).is_err());
    assert!(max_pool2d(&[0.0; 16], 1, g, &mut out[..3]).is_err());
}
