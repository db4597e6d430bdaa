//! Property tests of products with few rows (m = 1..4, the batch-1 classifier's `linear`)
//! against a naive f64 reference: the packed-constant and the strided matmul, odd `n` (not a
//! multiple of the 48-column strip) and odd `k`, with and without bias, A row-major or
//! transposed, on every GEMM path this machine has and on 1-3 threads.

use kernels::{GemmIsa, PackedB, Strided, matmul_packed, matmul_strided_with};
use proptest::prelude::*;

mod common;
use common::{check, pool, values};

/// `(row, col)` strides of a `rows x cols` matrix stored row-major, or transposed when `t`.
fn layout(rows: usize, cols: usize, t: bool) -> (usize, usize) {
    if t { (1, rows) } else { (cols, 1) }
}

/// `a (batches x m x k) * b (batches x k x n) + bias` in f64, rounded once.
#[allow(clippy::too_many_arguments)]
fn naive(
    batches: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: Strided<'_>,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    (0..batches * m * n)
        .map(|i| {
            let (bi, r, c) = (i / (m * n), i / n % m, i % n);
            let s: f64 = (0..k)
                .map(|p| {
                    a.data[bi * a.batch + r * a.row + p * a.col] as f64
                        * b.data[bi * b.batch + p * b.row + c * b.col] as f64
                })
                .sum();
            (s + bias.map_or(0.0, |v| v[c] as f64)) as f32
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn packed_small_m_matches_naive(
        m in 1usize..=4,
        half_n in 0usize..=160,
        half_k in 0usize..=150,
        ta in any::<bool>(),
        tb in any::<bool>(),
        with_bias in any::<bool>(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        // Odd sizes: never a whole number of strips, and an odd tail of k.
        let (n, k) = (2 * half_n + 1, 2 * half_k + 1);
        let (ar, ac) = layout(m, k, ta);
        let (br, bc) = layout(k, n, tb);
        let a = values(m * k, seed);
        let b = values(k * n, seed ^ 7);
        let bias = with_bias.then(|| values(n, seed ^ 9));
        let sa = Strided { data: &a, batch: 0, row: ar, col: ac };
        let sb = Strided { data: &b, batch: 0, row: br, col: bc };
        let want = naive(1, m, n, k, sa, sb, bias.as_deref());
        for isa in [GemmIsa::Auto, GemmIsa::Packed, GemmIsa::Crate] {
            let pb = PackedB::new_with(isa, sb, k, n).expect("covers");
            let mut c = vec![f32::NAN; m * n];
            prop_assert!(pool(threads).install(|| matmul_packed(m, sa, &pb, bias.as_deref(), &mut c)));
            check(&c, &want, &format!("packed {isa:?} m {m} n {n} k {k}"))?;
        }
    }

    #[test]
    fn strided_small_m_matches_naive(
        batches in 1usize..=3,
        m in 1usize..=4,
        half_n in 0usize..=120,
        half_k in 0usize..=60,
        ta in any::<bool>(),
        shared_b in any::<bool>(),
        with_bias in any::<bool>(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let (n, k) = (2 * half_n + 1, 2 * half_k + 1);
        let (ar, ac) = layout(m, k, ta);
        let a = values(batches * m * k, seed);
        let b = values(if shared_b { k * n } else { batches * k * n }, seed ^ 3);
        let bias = with_bias.then(|| values(n, seed ^ 5));
        let sa = Strided { data: &a, batch: m * k, row: ar, col: ac };
        let sb = Strided { data: &b, batch: if shared_b { 0 } else { k * n }, row: n, col: 1 };
        let want = naive(batches, m, n, k, sa, sb, bias.as_deref());
        for isa in [GemmIsa::Auto, GemmIsa::Packed, GemmIsa::Crate] {
            let mut c = vec![f32::NAN; batches * m * n];
            let ok = pool(threads).install(|| {
                matmul_strided_with(isa, batches, m, n, k, sa, sb, bias.as_deref(), &mut c)
            });
            prop_assert!(ok);
            check(&c, &want, &format!("strided {isa:?} b {batches} m {m} n {n} k {k}"))?;
        }
    }
}
