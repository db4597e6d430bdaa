//! Runtime CPU-feature dispatch for the kernels: run a closure in a function compiled with
//! AVX2+FMA enabled when the CPU has them, so the loops inside it vectorize 8-wide with FMA.
//!
//! On aarch64 NEON is part of the baseline target, so the portable path is already compiled
//! for NEON and there is nothing to dispatch.

#![allow(unsafe_code)]

/// True when the AVX2+FMA path can run here (checked once, then cached by std).
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `f` inside a function compiled for AVX2+FMA when available, else as is. `f` must be
/// `#[inline(always)]`-friendly (a closure over the kernel body) for the features to reach its
/// loops.
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: `with_avx2_fma` only requires that the CPU supports AVX2 and FMA, which
            // was just checked at run time.
            return unsafe { with_avx2_fma(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}
