//! The machine's measured FMA peak: a register-only loop of independent fused multiply-adds at
//! the widest vector width the kernels use here (AVX-512, else AVX2+FMA, else NEON), timed on
//! one or more threads at once. Benchmarks divide a model's achieved GFLOP/s by it.

#![allow(unsafe_code)]

use std::time::Instant;

/// Independent accumulator chains: more than FMA latency (4) x FMA ports (2), so the loop is
/// throughput-bound, and few enough to stay in registers (16 on AVX2, 32 on AVX-512).
const CHAINS: usize = 12;

/// The ISA the peak loop (and the kernels) use on this CPU: `"avx512"`, `"avx2+fma"`, `"neon"`
/// or `"portable"`.
pub fn isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::has_avx512() {
            return "avx512";
        }
        if crate::simd::has_avx2_fma() {
            return "avx2+fma";
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        return "neon";
    }
    #[allow(unreachable_code)]
    "portable"
}

/// Runs `iters` rounds of the FMA loop on this thread; returns the floating-point operations
/// done (2 per lane per FMA) and a value derived from the result (so it cannot be elided).
fn fma_loop(iters: u64) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd::has_avx512() {
            // SAFETY: AVX-512F was detected at run time.
            let s = unsafe { loop_avx512(iters) };
            return ((iters as usize * CHAINS * 16 * 2) as f64, s);
        }
        if crate::simd::has_avx2_fma() {
            // SAFETY: AVX2 and FMA were detected at run time.
            let s = unsafe { loop_avx2(iters) };
            return ((iters as usize * CHAINS * 8 * 2) as f64, s);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: NEON is baseline on aarch64.
        let s = unsafe { loop_neon(iters) };
        return ((iters as usize * CHAINS * 4 * 2) as f64, s);
    }
    #[allow(unreachable_code)]
    {
        let mut acc = [1.0f32; CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = a.mul_add(0.999_999, 1e-7);
            }
        }
        ((iters as usize * CHAINS * 2) as f64, acc.iter().sum())
    }
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn loop_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    let mut s = acc[0];
    for a in &acc[1..] {
        s = _mm512_add_ps(s, *a);
    }
    _mm512_reduce_add_ps(s)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn loop_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut lanes = [0f32; 8];
    let mut s = acc[0];
    for a in &acc[1..] {
        s = _mm256_add_ps(s, *a);
    }
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
    lanes.iter().sum()
}

/// # Safety
/// NEON is baseline on aarch64; nothing beyond that.
#[cfg(target_arch = "aarch64")]
unsafe fn loop_neon(iters: u64) -> f32 {
    use std::arch::aarch64::*;
    // SAFETY: NEON is baseline on aarch64.
    unsafe {
        let (m, c) = (vdupq_n_f32(0.999_999), vdupq_n_f32(1e-7));
        let mut acc = [vdupq_n_f32(1.0); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = vfmaq_f32(c, *a, m);
            }
        }
        acc.iter().map(|a| vaddvq_f32(*a)).sum()
    }
}

/// Measured FMA peak in GFLOP/s of `threads` threads running the loop at once (the best of
/// `trials` timings of `iters` rounds each, so a descheduled trial does not count).
pub fn fma_peak_gflops(threads: usize, iters: u64, trials: usize) -> f64 {
    let threads = threads.max(1);
    let mut best = 0f64;
    for _ in 0..trials.max(1) {
        let t = Instant::now();
        let flops: f64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads).map(|_| s.spawn(move || fma_loop(iters))).collect();
            hs.into_iter()
                .map(|h| {
                    let (f, v) = h.join().unwrap_or((0.0, 0.0));
                    std::hint::black_box(v);
                    f
                })
                .sum()
        });
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_counts_flops_and_keeps_a_finite_result() {
        let (flops, v) = fma_loop(1000);
        assert!(flops >= (1000 * CHAINS * 2) as f64);
        assert!(v.is_finite() && v > 0.0);
        assert!(fma_peak_gflops(1, 1000, 1) > 0.0);
    }
}
