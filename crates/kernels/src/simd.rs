//! Run-time CPU-feature detection for the kernels. Kernels with an explicit SIMD path (AVX2+FMA
//! intrinsics, or an `#[inline(always)]` body re-compiled inside a `#[target_feature]` function)
//! check here before taking it; on aarch64 NEON is baseline and needs no check.

/// True when the AVX2+FMA paths can run here (checked once, then cached by std).
#[inline]
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// True when the AVX-512F paths can run here and `INFER_NO_AVX512` is not set (for A/B
/// measurements); read once.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::is_x86_feature_detected!("avx512f") && std::env::var_os("INFER_NO_AVX512").is_none()
    })
}
