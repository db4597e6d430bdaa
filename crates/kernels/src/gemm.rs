//! The one GEMM entry point of the kernels: row-major f32 matrices through the `gemm` crate.

#![allow(unsafe_code)]

use ::gemm::Parallelism;

/// `c[m x n] = a[m x k] * b[k x n]` (all row-major, contiguous), overwriting `c`.
/// Uses the current rayon pool's threads when the product is big enough to pay for it.
///
/// # Panics
/// Never for well-formed slices; returns without work when a length does not match.
pub fn matmul(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) -> bool {
    crate::profile::add_flops(2 * (m * n * k) as u64);
    matmul_uncounted(m, n, k, a, b, c)
}

/// [`matmul`] without adding to the FLOP counter (for callers that counted the work already).
pub(crate) fn matmul_uncounted(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
) -> bool {
    if a.len() < m * k || b.len() < k * n || c.len() < m * n {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return true;
    }
    let threads = crate::pool::gemm_crate_threads();
    let par = if threads > 1 && m * n * k >= 64 * 64 * 64 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the lengths were checked above: `a` holds m*k, `b` k*n and `c` m*n elements laid
    // out row-major with the strides given (row stride = row length, column stride 1), so every
    // index the kernel forms is in bounds; `c` is borrowed mutably and does not alias `a`/`b`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product() {
        let (m, n, k) = (7, 13, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let mut c = vec![f32::NAN; m * n];
        assert!(matmul(m, n, k, &a, &b, &mut c));
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
        assert!(!matmul(m, n, k, &a[1..], &b, &mut c));
    }
}
