//! Rounding f32 values to the nearest fp16 (ties to even) and back to f32: the executor's
//! `cast` to fp16, whose values stay f32. F16C conversions 16 (AVX-512F) or 8 (AVX2 with F16C)
//! lanes at a time, a bit-exact scalar conversion elsewhere and for the tails; infinities stay
//! infinite, out-of-range values become infinities, NaNs stay NaN (quieted), as IEEE 754
//! (and the `half` crate) convert.

#![allow(unsafe_code)]

use crate::pool::{SharedMut, for_each_task};
use crate::rows::Isa;

/// Values per parallel task (below this the whole slice is one task).
const PER_TASK: usize = 64 * 1024;

/// The fp16 bit pattern nearest to `x` (ties to even), as IEEE 754 converts.
#[inline]
fn to_f16_bits(x: f32) -> u16 {
    let x = x.to_bits();
    let sign = (x & 0x8000_0000) >> 16;
    let exp = x & 0x7F80_0000;
    let man = x & 0x007F_FFFF;
    if exp == 0x7F80_0000 {
        // Infinity, or NaN with its payload's top bits kept and the quiet bit set.
        let quiet = if man == 0 { 0 } else { 0x0200 };
        return (sign | 0x7C00 | quiet | (man >> 13)) as u16;
    }
    let e = (exp >> 23) as i32 - 127 + 15;
    if e >= 0x1F {
        return (sign | 0x7C00) as u16;
    }
    if e <= 0 {
        // Subnormal (or zero) in fp16.
        if 14 - e > 24 {
            return sign as u16;
        }
        let man = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let mut m = man >> shift;
        let round = 1u32 << (shift - 1);
        if man & round != 0 && man & (3 * round - 1) != 0 {
            m += 1;
        }
        return (sign | m) as u16;
    }
    let bits = sign | ((e as u32) << 10) | (man >> 13);
    let round = 0x1000;
    // A carry out of the mantissa correctly steps the exponent (up to infinity).
    if man & round != 0 && man & (3 * round - 1) != 0 { (bits + 1) as u16 } else { bits as u16 }
}

/// The f32 value of fp16 bits (exact).
#[inline]
fn from_f16_bits(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x03FF) as u32;
    match exp {
        0 => {
            // Zero or subnormal: man * 2^-24, exact in f32.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            f32::from_bits(v.to_bits() | sign)
        }
        0x1F if man == 0 => f32::from_bits(sign | 0x7F80_0000),
        0x1F => f32::from_bits(sign | 0x7FC0_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

/// `x` rounded to the nearest fp16 value (ties to even) and widened back to f32, one value.
#[inline]
pub fn round_f16_scalar(x: f32) -> f32 {
    from_f16_bits(to_f16_bits(x))
}

fn portable(src: &[f32], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = round_f16_scalar(s);
    }
}

/// # Safety
/// AVX-512F; `src` and `dst` have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len() / 16 * 16;
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let mut i = 0;
    while i < n {
        // SAFETY: i + 16 <= n <= both lengths.
        unsafe {
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm512_loadu_ps(s.add(i)));
            _mm512_storeu_ps(d.add(i), _mm512_cvtph_ps(h));
        }
        i += 16;
    }
    portable(&src[n..], &mut dst[n..]);
}

/// # Safety
/// AVX and F16C; `src` and `dst` have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn f16c(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len() / 8 * 8;
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let mut i = 0;
    while i < n {
        // SAFETY: i + 8 <= n <= both lengths.
        unsafe {
            let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm256_loadu_ps(s.add(i)));
            _mm256_storeu_ps(d.add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    portable(&src[n..], &mut dst[n..]);
}

/// The path `isa` asks for, or the next one down this machine has.
fn resolve(isa: Isa) -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let f16c = std::is_x86_feature_detected!("avx") && std::is_x86_feature_detected!("f16c");
        match isa {
            Isa::Auto if super::simd::has_avx512() => Isa::Avx512,
            Isa::Avx512 if std::is_x86_feature_detected!("avx512f") => Isa::Avx512,
            Isa::Auto | Isa::Avx512 | Isa::Avx2 if f16c => Isa::Avx2,
            _ => Isa::Portable,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        Isa::Portable
    }
}

fn run(isa: Isa, src: &[f32], dst: &mut [f32]) {
    match isa {
        // SAFETY: `resolve` returned Avx512 only where AVX-512F was detected; equal lengths.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512(src, dst) },
        // SAFETY: `resolve` returned Avx2 only where AVX and F16C were detected; equal lengths.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { f16c(src, dst) },
        _ => portable(src, dst),
    }
}

/// `dst[i] = src[i]` rounded to the nearest fp16 (ties to even) and widened back to f32, as
/// `half::f16::from_f32(x).to_f32()` gives; spread over the kernels' pool for long slices.
/// Returns false (nothing written) when the lengths differ.
pub fn round_f16(src: &[f32], dst: &mut [f32]) -> bool {
    round_f16_with(Isa::Auto, src, dst)
}

/// [`round_f16`] on a chosen instruction set (`Avx2` means the 256-bit F16C conversions; an
/// unavailable one falls back to the next this machine has, at worst portable code).
pub fn round_f16_with(isa: Isa, src: &[f32], dst: &mut [f32]) -> bool {
    if src.len() != dst.len() {
        return false;
    }
    let isa = resolve(isa);
    let tasks = src.len().div_ceil(PER_TASK);
    if tasks <= 1 {
        run(isa, src, dst);
        return true;
    }
    let out = SharedMut::new(dst);
    for_each_task(tasks, &|t| {
        let (a, b) = (t * PER_TASK, ((t + 1) * PER_TASK).min(src.len()));
        // SAFETY: tasks write disjoint ranges a..b of `dst`, which stays borrowed through
        // `out` until `for_each_task` returns.
        let d = unsafe { out.slice(a, b - a) };
        run(isa, &src[a..b], d);
    });
    true
}
