//! Run-time CPU-feature detection for the kernels. Kernels with an explicit SIMD path (AVX2+FMA
//! intrinsics, or an `#[inline(always)]` body re-compiled inside a `#[target_feature]` function)
//! check here before taking it; on aarch64 NEON is baseline and needs no check.

/// True when the AVX2+FMA paths can run here (checked once, then cached by std).
#[inline]
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}
