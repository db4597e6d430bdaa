//! Batched 2-D transpose of elements or of contiguous runs (`[b, r, c, inner]` -> `[b, c, r,
//! inner]`), the copy behind most tensor permutes (NCHW <-> NHWC, attention heads): cache-sized
//! tiles (8 x 8 blocks transposed in AVX2 registers where the CPU has it), spread over the pool
//! by tile rows.

#![allow(unsafe_code)]

use crate::pool::{SharedMut, for_each_task};

/// Tile side: 32 x 32 f32 is 4 KiB read and 4 KiB written, both in L1.
const TILE: usize = 32;

/// Writes `dst[m][j][i][..] = src[m][i][j][..]` for a batch of `b` row-major `r x c` matrices
/// whose elements are runs of `inner` values. Fails (writing nothing) when either slice is not
/// `b * r * c * inner` long.
pub fn transpose_batched(
    src: &[f32],
    [b, r, c, inner]: [usize; 4],
    dst: &mut [f32],
) -> Result<(), String> {
    let n = [b, r, c, inner]
        .iter()
        .try_fold(1usize, |acc, &v| acc.checked_mul(v))
        .ok_or("transpose: size overflows")?;
    if src.len() != n || dst.len() != n {
        return Err(format!(
            "transpose: {b} x {r} x {c} x {inner} needs {n} values, got {} in and {} out",
            src.len(),
            dst.len()
        ));
    }
    if n == 0 {
        return Ok(());
    }
    // One task per band of TILE output rows (input columns) of one matrix.
    let bands = c.div_ceil(TILE);
    let mat = r * c * inner;
    #[cfg(target_arch = "x86_64")]
    let avx2 = super::simd::has_avx2_fma();
    let out = SharedMut::new(dst);
    for_each_task(b * bands, &|task| {
        let (m, band) = (task / bands, task % bands);
        let (j0, j1) = (band * TILE, ((band + 1) * TILE).min(c));
        let s = &src[m * mat..(m + 1) * mat];
        // SAFETY: this task writes only rows j0..j1 of matrix m of the output, a range no
        // other task writes; `dst` outlives the loop.
        let d = unsafe { out.slice(m * mat + j0 * r * inner, (j1 - j0) * r * inner) };
        #[cfg(target_arch = "x86_64")]
        if inner == 1 && avx2 {
            for i0 in (0..r).step_by(TILE) {
                let i1 = (i0 + TILE).min(r);
                // SAFETY: AVX2 was detected; rows i0..i1 < r, columns j0..j1 <= c of the
                // r x c matrix `s`, and rows 0..j1 - j0, columns i0..i1 of `d` (r per row).
                unsafe {
                    tile_avx2(
                        s.as_ptr().add(i0 * c + j0),
                        c,
                        d.as_mut_ptr().add(i0),
                        r,
                        i1 - i0,
                        j1 - j0,
                    )
                };
            }
            return;
        }
        if inner == 1 {
            for i0 in (0..r).step_by(TILE) {
                let i1 = (i0 + TILE).min(r);
                for j in j0..j1 {
                    let row = &mut d[(j - j0) * r + i0..(j - j0) * r + i1];
                    for (k, v) in row.iter_mut().enumerate() {
                        *v = s[(i0 + k) * c + j];
                    }
                }
            }
        } else {
            // Short runs (patch unfolds move runs of 2) as fixed-size copies: a run-time
            // length makes every run a `memcpy` call.
            match inner {
                2 => runs::<2>(s, d, r, c, j0, j1),
                3 => runs::<3>(s, d, r, c, j0, j1),
                4 => runs::<4>(s, d, r, c, j0, j1),
                _ => {
                    for j in j0..j1 {
                        for i in 0..r {
                            let at = ((j - j0) * r + i) * inner;
                            let from = (i * c + j) * inner;
                            d[at..at + inner].copy_from_slice(&s[from..from + inner]);
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

/// The most axes [`permute_into`] takes.
const MAX_RANK: usize = 8;

/// Writes `dst` = `src` (row-major, shape `dims`) with its axes permuted: output axis `i` is
/// input axis `perm[i]` (as numpy's `transpose`), for any rank up to 8. Size-1 axes are
/// dropped and output axes that read consecutive input axes merged first; the innermost
/// output axis is then copied as contiguous runs when it is contiguous in the input, else
/// gathered at its stride; blocks of outer indices run on the pool. Fails (writing nothing)
/// when `perm` is not a permutation of `0..dims.len()` or a length does not match.
pub fn permute_into(
    src: &[f32],
    dims: &[usize],
    perm: &[usize],
    dst: &mut [f32],
) -> Result<(), String> {
    let rank = dims.len();
    let mut seen = [false; MAX_RANK];
    if rank > MAX_RANK
        || perm.len() != rank
        || perm.iter().any(|&a| a >= rank || std::mem::replace(&mut seen[a], true))
    {
        return Err(format!("permute: {perm:?} is not a permutation of {rank} axes"));
    }
    let n = dims.iter().try_fold(1usize, |acc, &v| acc.checked_mul(v)).ok_or("permute: size")?;
    if src.len() != n || dst.len() != n {
        return Err(format!(
            "permute: {dims:?} needs {n} values, got {} in and {} out",
            src.len(),
            dst.len()
        ));
    }
    if n == 0 {
        return Ok(());
    }
    // Input strides, then the output axes as (size, input stride), merged.
    let mut stride = [0usize; MAX_RANK];
    let mut acc = 1;
    for a in (0..rank).rev() {
        stride[a] = acc;
        acc *= dims[a];
    }
    let mut axes = [(0usize, 0usize); MAX_RANK];
    let mut na = 0;
    for &a in perm {
        let (size, st) = (dims[a], stride[a]);
        if size == 1 {
            continue;
        }
        // The previous output axis steps over exactly this one's extent: one axis.
        if na > 0 && axes[na - 1].1 == st * size {
            axes[na - 1] = (axes[na - 1].0 * size, st);
        } else {
            axes[na] = (size, st);
            na += 1;
        }
    }
    if na == 0 {
        dst.copy_from_slice(src);
        return Ok(());
    }
    let (len, inner) = axes[na - 1];
    let outer = &axes[..na - 1];
    let rows = n / len;
    // Tasks of about 16 K values.
    let per_task = (16 * 1024 / len).clamp(1, rows);
    let out = SharedMut::new(dst);
    for_each_task(rows.div_ceil(per_task), &|t| {
        let (r0, r1) = (t * per_task, ((t + 1) * per_task).min(rows));
        // SAFETY: task t writes only output rows r0..r1, disjoint from every other task's;
        // `dst` outlives the loop.
        let d = unsafe { out.slice(r0 * len, (r1 - r0) * len) };
        for (r, row) in (r0..r1).zip(d.chunks_exact_mut(len)) {
            // The row's first input offset from its outer index (last outer axis fastest).
            let (mut rem, mut from) = (r, 0);
            for &(size, st) in outer.iter().rev() {
                from += (rem % size) * st;
                rem /= size;
            }
            if inner == 1 {
                row.copy_from_slice(&src[from..from + len]);
            } else {
                for (i, v) in row.iter_mut().enumerate() {
                    *v = src[from + i * inner];
                }
            }
        }
    });
    Ok(())
}

/// Rows `j0..j1` of the transposed `r x c` matrix of `N`-value runs `s` into `d` (`(j1 - j0) *
/// r` runs).
#[inline(always)]
fn runs<const N: usize>(s: &[f32], d: &mut [f32], r: usize, c: usize, j0: usize, j1: usize) {
    for (j, out) in (j0..j1).zip(d.chunks_exact_mut(r * N)) {
        for (i, o) in out.chunks_exact_mut(N).enumerate() {
            let from = (i * c + j) * N;
            o.copy_from_slice(&s[from..from + N]);
        }
    }
}

/// `dst[j * d_row + i] = src[i * s_row + j]` for `i < rows`, `j < cols`: 8 x 8 blocks
/// transposed in registers, the edges element by element.
///
/// # Safety
/// AVX2; `src` valid for reads and `dst` for writes at every index the formula names, and no
/// other thread writes those `dst` elements during the call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2(
    src: *const f32,
    s_row: usize,
    dst: *mut f32,
    d_row: usize,
    rows: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    let mut j = 0;
    while j + 8 <= cols {
        let mut i = 0;
        while i + 8 <= rows {
            // SAFETY: rows i..i+8 <= rows, columns j..j+8 <= cols (the caller's contract).
            unsafe {
                let sp = src.add(i * s_row + j);
                let r0 = _mm256_loadu_ps(sp);
                let r1 = _mm256_loadu_ps(sp.add(s_row));
                let r2 = _mm256_loadu_ps(sp.add(2 * s_row));
                let r3 = _mm256_loadu_ps(sp.add(3 * s_row));
                let r4 = _mm256_loadu_ps(sp.add(4 * s_row));
                let r5 = _mm256_loadu_ps(sp.add(5 * s_row));
                let r6 = _mm256_loadu_ps(sp.add(6 * s_row));
                let r7 = _mm256_loadu_ps(sp.add(7 * s_row));
                let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let dp = dst.add(j * d_row + i);
                _mm256_storeu_ps(dp, _mm256_permute2f128_ps::<0x20>(u0, u4));
                _mm256_storeu_ps(dp.add(d_row), _mm256_permute2f128_ps::<0x20>(u1, u5));
                _mm256_storeu_ps(dp.add(2 * d_row), _mm256_permute2f128_ps::<0x20>(u2, u6));
                _mm256_storeu_ps(dp.add(3 * d_row), _mm256_permute2f128_ps::<0x20>(u3, u7));
                _mm256_storeu_ps(dp.add(4 * d_row), _mm256_permute2f128_ps::<0x31>(u0, u4));
                _mm256_storeu_ps(dp.add(5 * d_row), _mm256_permute2f128_ps::<0x31>(u1, u5));
                _mm256_storeu_ps(dp.add(6 * d_row), _mm256_permute2f128_ps::<0x31>(u2, u6));
                _mm256_storeu_ps(dp.add(7 * d_row), _mm256_permute2f128_ps::<0x31>(u3, u7));
            }
            i += 8;
        }
        for jj in j..j + 8 {
            for ii in i..rows {
                // SAFETY: ii < rows, jj < cols.
                unsafe { *dst.add(jj * d_row + ii) = *src.add(ii * s_row + jj) };
            }
        }
        j += 8;
    }
    for jj in j..cols {
        for ii in 0..rows {
            // SAFETY: ii < rows, jj < cols.
            unsafe { *dst.add(jj * d_row + ii) = *src.add(ii * s_row + jj) };
        }
    }
}
