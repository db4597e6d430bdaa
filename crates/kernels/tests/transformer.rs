//! Property tests of the transformer kernels against naive f64 references: the strided batched
//! matmul (transposed operands read through strides, a shared right-hand side, per-column bias)
//! and the packed-constant one, softmax along any axis and layer norm, each on every GEMM / ISA
//! path this machine has and on 1-3 threads.

use kernels::{
    GemmIsa, Isa, PackedB, Strided, layer_norm_with, matmul_packed, matmul_strided_with,
    softmax_rows_to_vec_with, softmax_with,
};
use proptest::prelude::*;

mod common;
use common::{check, pool, values};

const ISAS: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

/// `(batch, row, col)` strides of a `batches x rows x cols` matrix stored row-major, or stored
/// transposed (`cols x rows` per batch) when `t`; batch stride 0 when `shared`.
fn layout(rows: usize, cols: usize, t: bool, shared: bool) -> (usize, usize, usize) {
    let b = if shared { 0 } else { rows * cols };
    if t { (b, 1, rows) } else { (b, cols, 1) }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Products at most 16 columns wide with A's rows contiguous (attention's `scores x v`):
    /// A read in place, not packed; deep k, row blocks that are not a multiple of 8, bias.
    #[test]
    fn matmul_narrow_matches_naive(
        batches in 1usize..=3,
        m in 5usize..=60,
        n in 1usize..=16,
        k in 0usize..=300,
        shared_b in any::<bool>(),
        with_bias in any::<bool>(),
        threads in 1usize..=2,
        seed in any::<u64>(),
    ) {
        let (bb, br, bc) = layout(k, n, false, shared_b);
        let a = values(batches * m * k, seed);
        let b = values(if shared_b { k * n } else { batches * k * n }, seed ^ 3);
        let bias = with_bias.then(|| values(n, seed ^ 5));
        let want: Vec<f32> = (0..batches * m * n)
            .map(|i| {
                let (bi, r, c) = (i / (m * n), i / n % m, i % n);
                let s: f64 = (0..k)
                    .map(|p| a[(bi * m + r) * k + p] as f64 * b[bi * bb + p * br + c * bc] as f64)
                    .sum();
                (s + bias.as_ref().map_or(0.0, |v| v[c] as f64)) as f32
            })
            .collect();
        let sa = Strided { data: &a, batch: m * k, row: k, col: 1 };
        let sb = Strided { data: &b, batch: bb, row: br, col: bc };
        let mut c = vec![f32::NAN; batches * m * n];
        let ok = pool(threads).install(|| {
            matmul_strided_with(GemmIsa::Packed, batches, m, n, k, sa, sb, bias.as_deref(), &mut c)
        });
        prop_assert!(ok);
        check(&c, &want, "narrow matmul")?;
    }

    #[test]
    fn matmul_strided_matches_naive(
        batches in 1usize..=3,
        m in 1usize..=60,
        n in 1usize..=110,
        k in 0usize..=40,
        ta in any::<bool>(),
        tb in any::<bool>(),
        shared_b in any::<bool>(),
        with_bias in any::<bool>(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let (ab, ar, ac) = layout(m, k, ta, false);
        let (bb, br, bc) = layout(k, n, tb, shared_b);
        let a = values(batches * m * k, seed);
        let b = values(if shared_b { k * n } else { batches * k * n }, seed ^ 3);
        let bias = with_bias.then(|| values(n, seed ^ 5));
        let want: Vec<f32> = (0..batches * m * n)
            .map(|i| {
                let (bi, r, c) = (i / (m * n), i / n % m, i % n);
                let s: f64 = (0..k)
                    .map(|p| a[bi * ab + r * ar + p * ac] as f64 * b[bi * bb + p * br + c * bc] as f64)
                    .sum();
                (s + bias.as_ref().map_or(0.0, |v| v[c] as f64)) as f32
            })
            .collect();
        let sa = Strided { data: &a, batch: ab, row: ar, col: ac };
        let sb = Strided { data: &b, batch: bb, row: br, col: bc };
        for isa in [GemmIsa::Packed, GemmIsa::Crate] {
            let mut c = vec![f32::NAN; batches * m * n];
            let ok = pool(threads).install(|| {
                matmul_strided_with(isa, batches, m, n, k, sa, sb, bias.as_deref(), &mut c)
            });
            prop_assert!(ok);
            check(&c, &want, &format!("matmul {isa:?}"))?;
        }
        // An operand too short for its strides is refused, not read out of bounds.
        let short = Strided { data: &a[..a.len().saturating_sub(1)], ..sa };
        let mut c = vec![0f32; batches * m * n];
        if k > 0 {
            prop_assert!(!matmul_strided_with(GemmIsa::Packed, batches, m, n, k, short, sb, None, &mut c));
        }
    }

    #[test]
    fn matmul_packed_matches_naive(
        m in 1usize..=100,
        n in 1usize..=120,
        k in 1usize..=50,
        tb in any::<bool>(),
        with_bias in any::<bool>(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let (_, br, bc) = layout(k, n, tb, false);
        let a = values(m * k, seed);
        let b = values(k * n, seed ^ 7);
        let bias = with_bias.then(|| values(n, seed ^ 9));
        let want: Vec<f32> = (0..m * n)
            .map(|i| {
                let (r, c) = (i / n, i % n);
                let s: f64 = (0..k).map(|p| a[r * k + p] as f64 * b[p * br + c * bc] as f64).sum();
                (s + bias.as_ref().map_or(0.0, |v| v[c] as f64)) as f32
            })
            .collect();
        let sb = Strided { data: &b, batch: 0, row: br, col: bc };
        for isa in [GemmIsa::Packed, GemmIsa::Crate] {
            let pb = PackedB::new_with(isa, sb, k, n).expect("covers");
            let mut c = vec![f32::NAN; m * n];
            let sa = Strided { data: &a, batch: 0, row: k, col: 1 };
            prop_assert!(pool(threads).install(|| matmul_packed(m, sa, &pb, bias.as_deref(), &mut c)));
            check(&c, &want, &format!("packed {isa:?}"))?;
        }
    }

    #[test]
    fn softmax_matches_naive(
        outer in 1usize..=5,
        len in 1usize..=70,
        inner in prop_oneof![Just(1usize), 1usize..=20],
        scale in prop_oneof![Just(1f32), Just(30f32)],
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let x: Vec<f32> = values(outer * len * inner, seed).iter().map(|v| v * scale).collect();
        let mut want = vec![0f32; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * len + j) * inner + i;
                let max = (0..len).map(|j| x[at(j)] as f64).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..len).map(|j| (x[at(j)] as f64 - max).exp()).sum();
                for j in 0..len {
                    want[at(j)] = ((x[at(j)] as f64 - max).exp() / sum) as f32;
                }
            }
        }
        for isa in ISAS.into_iter().filter(|i| i.available()) {
            let mut y = vec![f32::NAN; x.len()];
            prop_assert!(pool(threads).install(|| softmax_with(isa, &x, &mut y, outer, len, inner)));
            check(&y, &want, &format!("softmax {isa:?}"))?;
            if inner == 1 {
                let y = pool(threads).install(|| softmax_rows_to_vec_with(isa, &x, len));
                check(&y.unwrap_or_default(), &want, &format!("softmax rows {isa:?}"))?;
            }
        }
    }

    #[test]
    fn layer_norm_matches_naive(
        rows in 1usize..=9,
        len in 1usize..=300,
        affine in 0usize..4,
        offset in -50f32..50f32,
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let x: Vec<f32> = values(rows * len, seed).iter().map(|v| v + offset).collect();
        let gamma = (affine & 1 == 1).then(|| values(len, seed ^ 11));
        let beta = (affine & 2 == 2).then(|| values(len, seed ^ 13));
        let eps = 1e-5f64;
        let mut want = vec![0f32; x.len()];
        for r in 0..rows {
            let row = &x[r * len..(r + 1) * len];
            // The mean as an f32 holds it: a kernel computing in f32 cannot subtract a finer
            // one, and with a large offset and a tiny spread (two close values near -9.6, say)
            // that rounding alone moves the normalised output by 1e-4.
            let mean = (row.iter().map(|&v| v as f64).sum::<f64>() / len as f64) as f32 as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            for j in 0..len {
                let g = gamma.as_ref().map_or(1.0, |g| g[j] as f64);
                let b = beta.as_ref().map_or(0.0, |b| b[j] as f64);
                want[r * len + j] = ((row[j] as f64 - mean) / (var + eps).sqrt() * g + b) as f32;
            }
        }
        for isa in ISAS.into_iter().filter(|i| i.available()) {
            let mut y = vec![f32::NAN; x.len()];
            let ok = pool(threads).install(|| {
                layer_norm_with(isa, &x, &mut y, len, gamma.as_deref(), beta.as_deref(), eps as f32)
            });
            prop_assert!(ok);
            check(&y, &want, &format!("layer_norm {isa:?}"))?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The general permute against index arithmetic: ranks 1-6, size-1 axes, any order (so
    /// merged axes, contiguous and strided innermost runs), 1-2 threads; a non-permutation
    /// and a wrong length are refused.
    #[test]
    fn permute_moves_every_value(dims in proptest::collection::vec(1usize..6, 1..=6),
                                 shuffle in any::<u64>(), threads in 1usize..=2, seed: u64) {
        let rank = dims.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        let mut z = shuffle;
        for i in (1..rank).rev() {
            perm.swap(i, (z % (i as u64 + 1)) as usize);
            z /= i as u64 + 1;
        }
        let n: usize = dims.iter().product();
        let src = values(n, seed);
        let mut got = vec![f32::NAN; n];
        pool(threads).install(|| kernels::permute_into(&src, &dims, &perm, &mut got)).expect("permute");
        let od: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
        let mut want = vec![0f32; n];
        for (o, w) in want.iter_mut().enumerate() {
            // Output index -> input index.
            let (mut rem, mut idx) = (o, vec![0usize; rank]);
            for i in (0..rank).rev() {
                idx[perm[i]] = rem % od[i];
                rem /= od[i];
            }
            let at = idx.iter().zip(&dims).fold(0, |acc, (&i, &d)| acc * d + i);
            *w = src[at];
        }
        prop_assert_eq!(got, want);
        let mut short = vec![0f32; n.saturating_sub(1)];
        prop_assert!(kernels::permute_into(&src, &dims, &perm, &mut short).is_err());
        let mut bad = perm.clone();
        bad[0] = rank;
        prop_assert!(kernels::permute_into(&src, &dims, &bad, &mut vec![0f32; n]).is_err());
    }

    /// The batched transpose moves every value exactly (tile edges, single rows and columns,
    /// 1-3 threads); wrong lengths are refused.
    #[test]
    fn transpose_moves_every_value(b in 1usize..4, r in 1usize..80, c in 1usize..80,
                                   inner in prop_oneof![Just(1usize), 1usize..6],
                                   threads in 1usize..4, seed: u64) {
        let n = b * r * c * inner;
        let src = values(n, seed);
        let mut got = vec![f32::NAN; n];
        pool(threads).install(|| kernels::transpose_batched(&src, [b, r, c, inner], &mut got))
            .expect("transpose");
        let mut want = vec![0f32; n];
        for m in 0..b {
            for i in 0..r {
                for j in 0..c {
                    for e in 0..inner {
                        want[((m * c + j) * r + i) * inner + e] = src[((m * r + i) * c + j) * inner + e];
                    }
                }
            }
        }
        prop_assert_eq!(got, want);
        let mut short = vec![0f32; n - 1];
        prop_assert!(kernels::transpose_batched(&src, [b, r, c, inner], &mut short).is_err());
    }
}
