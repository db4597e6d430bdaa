//! Products with few rows (`m <= SMALL_M`, a classifier's batch-1 `linear`) on B already packed
//! into 48-column strips: each strip is streamed once, `k` rows of three 16-lane vectors, into
//! `m x 3` broadcast-FMA accumulators, with the bias added in the epilogue. Tasks on the
//! kernels' pool take ranges of strips (a matrix-vector product is bound by reading B, so the
//! second thread brings the second core's bandwidth). AVX-512 only: B is only strip-packed when
//! the packed kernel runs (see `matmul.rs`).

#![allow(unsafe_code)]
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_variables))]

use crate::matmul::Strided;
use crate::packed::NR;
use crate::pool::{SharedMut, for_each_task};

/// The most rows of A this path takes; more go to the register-blocked GEMM.
pub(crate) const SMALL_M: usize = 4;

/// Multiply-adds below which the product runs as one task (the pool's wake-up would cost
/// more than it saves).
const MIN_PARALLEL_MACS: usize = 32 * 1024;

/// `c[bi] (m x n, contiguous) = a[bi] (m x k) * strips(bi) (+ bias)` for `batches` products,
/// `m <= SMALL_M`, with `strips(bi)` the `n.div_ceil(NR)` packed `k x NR` strips of batch
/// `bi`'s B.
///
/// The caller checked that `a` covers `batches x m x k`, every `strips(bi)` holds
/// `n.div_ceil(NR) * k * NR` values, `c` is `batches * m * n` long, `bias` (when given) `n`
/// long, and that AVX-512F is available.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<'b>(
    batches: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    strips: &(dyn Fn(usize) -> &'b [f32] + Sync),
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    let total = n.div_ceil(NR);
    let threads = crate::pool::threads();
    // About four tasks per thread over all batches, each a range of whole strips.
    let per_batch = if threads > 1 && batches * m * n * k >= MIN_PARALLEL_MACS {
        (4 * threads).div_ceil(batches).clamp(1, total)
    } else {
        1
    };
    let span = total.div_ceil(per_batch);
    let per_batch = total.div_ceil(span);
    let out = SharedMut::new(c);
    for_each_task(batches * per_batch, &|t| {
        let (bi, part) = (t / per_batch, t % per_batch);
        let (s0, s1) = (part * span, ((part + 1) * span).min(total));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F (caller's contract); task (bi, part) writes columns
        // s0 * NR..min(s1 * NR, n) of the m rows of batch bi: no other task writes them, and
        // `c` stays borrowed through `out` until `for_each_task` returns. `a` covers row
        // r < m, column p < k of batch bi, and `strips(bi)` holds strips s0..s1 (caller).
        unsafe {
            let dst = out.ptr().add(bi * m * n);
            let base = bi * a.batch;
            match m {
                1 => strips_avx512::<1, 2>(k, n, a, base, strips(bi), s0, s1, bias, dst),
                2 => strips_avx512::<2, 2>(k, n, a, base, strips(bi), s0, s1, bias, dst),
                3 => strips_avx512::<3, 1>(k, n, a, base, strips(bi), s0, s1, bias, dst),
                _ => strips_avx512::<4, 1>(k, n, a, base, strips(bi), s0, s1, bias, dst),
            }
        }
    });
}

/// Strips `s0..s1` of one product: `dst[r][c] = sum_p a[r][p] * strip[p][c] (+ bias[c])` for
/// the `R` rows and the strips' columns below `n`. `S` independent accumulator sets take
/// alternate values of `p`, so a short row count still keeps enough FMAs in flight.
///
/// # Safety
/// AVX-512F; `a` from `base` covers `R x k` at its row / column strides; `bp` holds strips
/// `0..s1` of `k * NR` values; `dst` is valid for writes of `R` rows of `n` (row stride `n`)
/// at the strips' columns below `n`; `bias` (when given) is `n` long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn strips_avx512<const R: usize, const S: usize>(
    k: usize,
    n: usize,
    a: Strided<'_>,
    base: usize,
    bp: &[f32],
    s0: usize,
    s1: usize,
    bias: Option<&[f32]>,
    dst: *mut f32,
) {
    use std::arch::x86_64::*;
    let ap = a.data.as_ptr().wrapping_add(base);
    for s in s0..s1 {
        let c0 = s * NR;
        let nc = (n - c0).min(NR);
        let sp = bp[s * k * NR..(s + 1) * k * NR].as_ptr();
        let mut acc = [[[_mm512_setzero_ps(); 3]; R]; S];
        let mut p = 0;
        while p + S <= k {
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let q = p + j;
                // The strips stream once per run (a classifier's 5 MB): ask for them ahead,
                // as the packed kernel does its panels (Lite0's 1280x1000 0.28 -> 0.25 ms).
                for v in 0..3 {
                    let ahead = sp.wrapping_add(q * NR + 16 * v + crate::packed::PREFETCH);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.cast::<i8>());
                }
                // SAFETY: q < k: row q of the strip (NR values) and column q of rows r < R
                // of `a` (caller's contract).
                unsafe {
                    let xs: [__m512; 3] =
                        std::array::from_fn(|v| _mm512_loadu_ps(sp.add(q * NR + 16 * v)));
                    for (r, acc_r) in acc_j.iter_mut().enumerate() {
                        let av = _mm512_set1_ps(*ap.add(r * a.row + q * a.col));
                        for v in 0..3 {
                            acc_r[v] = _mm512_fmadd_ps(xs[v], av, acc_r[v]);
                        }
                    }
                }
            }
            p += S;
        }
        while p < k {
            // SAFETY: as above, p < k.
            unsafe {
                let xs: [__m512; 3] =
                    std::array::from_fn(|v| _mm512_loadu_ps(sp.add(p * NR + 16 * v)));
                for (r, acc_r) in acc[0].iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*ap.add(r * a.row + p * a.col));
                    for v in 0..3 {
                        acc_r[v] = _mm512_fmadd_ps(xs[v], av, acc_r[v]);
                    }
                }
            }
            p += 1;
        }
        let masks: [u16; 3] =
            std::array::from_fn(|v| crate::dw_direct::lane_mask(16 * v as isize, nc, 16) as u16);
        let bv: [__m512; 3] = std::array::from_fn(|v| match bias {
            // SAFETY: masked lanes are columns c0 + 16 v + i < c0 + nc <= n of `bias`.
            Some(b) => unsafe {
                _mm512_maskz_loadu_ps(masks[v], b.as_ptr().wrapping_add(c0 + 16 * v))
            },
            None => _mm512_setzero_ps(),
        });
        for r in 0..R {
            for v in 0..3 {
                let mut y = _mm512_add_ps(acc[0][r][v], bv[v]);
                for acc_j in &acc[1..] {
                    y = _mm512_add_ps(y, acc_j[r][v]);
                }
                // SAFETY: row r < R, columns under the mask below n (caller's contract).
                unsafe { _mm512_mask_storeu_ps(dst.add(r * n + c0 + 16 * v), masks[v], y) };
            }
        }
    }
}
