//! The packed AVX-512 GEMM behind the 1x1 and im2col convolutions: weights packed once (at the
//! first run of a convolution) into panels of 8 rows interleaved along k, each tile's
//! activation columns packed into contiguous 48-column strips, and an 8 x 48 register-blocked
//! micro-kernel (24 accumulators) with bias, residual and clamp activation in its epilogue.

#![allow(unsafe_code)]
// Only the x86-64 build runs the packed kernel; elsewhere the packing helpers are unused.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

/// Rows of one weight panel.
pub(crate) const MR: usize = 8;
/// Columns of one activation strip (three 16-lane vectors).
pub(crate) const NR: usize = 48;

/// True when a packed GEMM kernel runs here: the AVX-512 one, or the portable one
/// ([`crate::packed_portable`]) on AVX2+FMA and on aarch64 (elsewhere the `gemm` crate, on
/// unpacked weights, is faster than plain multiply-adds).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return crate::simd::has_avx512() || crate::simd::has_avx2_fma();
    #[cfg(not(target_arch = "x86_64"))]
    return cfg!(target_arch = "aarch64");
}

/// How a packed GEMM of `rows x cols` outputs is shared out between threads: column tiles of
/// whole 48-column strips (the last tile also takes every column left), and row tiles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    /// Columns per column tile (a multiple of [`NR`]).
    pub(crate) nt: usize,
    /// Column tiles.
    pub(crate) col_tiles: usize,
    /// Row tiles wanted (the caller rounds their height to whole panels).
    pub(crate) row_tiles: usize,
    /// What the split reads, in units of the depth: each column tile streams all of its
    /// rows' weights, each row tile packs all of its columns' activations.
    pub(crate) reads: usize,
}

impl Split {
    /// The one-tile-per-thread split of a `rows x cols` GEMM that reads the least: small
    /// planes split rows, large ones columns. A plane's last few columns (at most [`TAIL`],
    /// as 7x7 = 48 + 1 leaves) belong to the strip before them, never to a tile of their own.
    pub(crate) fn least_reading(rows: usize, cols: usize, threads: usize) -> Split {
        let strips = (cols / NR + usize::from(cols % NR > TAIL)).max(1);
        let split = |ct: usize| {
            let per = strips.div_ceil(ct);
            let col_tiles = strips.div_ceil(per);
            let row_tiles = threads.div_ceil(col_tiles).min(rows.div_ceil(MR)).max(1);
            let reads = col_tiles * rows + row_tiles * cols;
            Split { nt: per * NR, col_tiles, row_tiles, reads }
        };
        (1..=strips.min(threads.max(1))).map(split).min_by_key(|s| s.reads).unwrap_or(split(1))
    }

    /// First column and width of column tile `ct` of a plane of `cols` columns, tiled `nt`
    /// wide in `col_tiles` tiles (the last takes every column left).
    pub(crate) fn columns(nt: usize, col_tiles: usize, ct: usize, cols: usize) -> (usize, usize) {
        let c0 = ct * nt;
        (c0, if ct + 1 == col_tiles { cols - c0 } else { nt.min(cols - c0) })
    }
}

/// Packs `w` (`m x k`, row-major) into `m.div_ceil(MR)` panels of `k x MR` (`panel[p * MR + i]`
/// = `w[(r + i) * k + p]`), zero-filled past the last row.
pub(crate) fn pack_weights(w: &[f32], m: usize, k: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut out = vec![0f32; panels * k * MR];
    for (pi, panel) in out.chunks_exact_mut((k * MR).max(1)).enumerate().take(panels) {
        for i in 0..MR.min(m - pi * MR) {
            let row = &w[(pi * MR + i) * k..(pi * MR + i + 1) * k];
            for (p, &v) in row.iter().enumerate() {
                panel[p * MR + i] = v;
            }
        }
    }
    out
}

/// Packs `groups` consecutive `m x k` weight matrices, each as [`pack_weights`]. When `m` is a
/// multiple of [`MR`] the panels take exactly the rows' place, so `w`'s buffer is reused (one
/// 8-row block copied out at a time): the weights are never held twice.
pub(crate) fn pack_groups(mut w: Vec<f32>, m: usize, k: usize, groups: usize) -> Vec<f32> {
    if !m.is_multiple_of(MR) || w.len() != groups * m * k || k == 0 {
        let mut v = Vec::with_capacity(groups * m.div_ceil(MR) * MR * k);
        for g in 0..groups {
            v.extend(pack_weights(&w[g * m * k..(g + 1) * m * k], m, k));
        }
        return v;
    }
    let mut tmp = vec![0f32; MR * k];
    for block in w.chunks_exact_mut(MR * k) {
        tmp.copy_from_slice(block);
        for i in 0..MR {
            for p in 0..k {
                block[p * MR + i] = tmp[i * k + p];
            }
        }
    }
    w
}

/// The inverse of [`pack_weights`]: `m x k` row-major weights from their panels.
pub(crate) fn unpack_weights(packed: &[f32], m: usize, k: usize) -> Vec<f32> {
    let mut w = vec![0f32; m * k];
    for (r, row) in w.chunks_exact_mut(k.max(1)).enumerate().take(m) {
        let panel = &packed[(r / MR) * k * MR..];
        for (p, v) in row.iter_mut().enumerate() {
            *v = panel[p * MR + r % MR];
        }
    }
    w
}

thread_local! {
    /// Each thread's packed activation strip, kept between calls (shared with the portable
    /// kernel: one tile runs at a time on a thread).
    pub(crate) static STRIP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `dst[m x n] = clamp(packed_w * x + bias (+ dst if accumulate))` for one tile: rows
/// `0..m` of the tile start at panel `panel0` of `packed` (so the tile's first row is a multiple
/// of [`MR`]), `x` has `k` rows of `n` columns at stride `ld`, `dst` `m` rows at stride `ldd`.
///
/// # Safety
/// AVX-512F must be available; `packed` must hold the panels `panel0 .. panel0 +
/// m.div_ceil(MR)`, `ps` values apart, each read for `k * MR` values (`ps > k * MR` when the
/// tile takes a slice of a deeper GEMM's depth); `x` must be valid for reads of rows `0..k`, columns
/// `0..n` at stride `ld`; `dst` for reads and writes of rows `0..m`, columns `0..n` at stride
/// `ldd`, and no other thread may access those elements during the call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile(
    m: usize,
    n: usize,
    k: usize,
    packed: &[f32],
    panel0: usize,
    ps: usize,
    x: *const f32,
    ld: usize,
    dst: *mut f32,
    ldd: usize,
    bias: &[f32],
    accumulate: bool,
    clamp: Option<(f32, f32)>,
) {
    crate::pool::with_aligned_scratch(&STRIP, 2 * k * NR, |strips| {
        let (strip, tail_strip) = strips.split_at_mut(k * NR);
        let mut c = 0;
        while c < n {
            let nc = (n - c).min(NR);
            // A last few columns (7x7 = 48 + 1) ride along with the strip before them, each
            // panel used for both while it is in cache (alone they would stream every panel
            // again for one column).
            let tail = if n - c - nc <= TAIL { n - c - nc } else { 0 };
            // SAFETY: columns c..c+nc+tail <= n of rows 0..k of x (caller's contract); each
            // strip holds k * NR values.
            unsafe {
                pack_strip(k, x.add(c), ld, nc, strip.as_mut_ptr());
                if tail > 0 {
                    pack_tail(k, x.add(c + nc), ld, tail, tail_strip);
                }
            }
            let mut r = 0;
            while r < m {
                let mr = (m - r).min(MR);
                let pi = panel0 + r / MR;
                let wp = &packed[pi * ps..pi * ps + k * MR];
                let b = &bias[r..r + mr];
                // SAFETY: rows r..r+mr < m and columns c..c+nc+tail <= n of dst (caller's
                // contract); the panel and strips hold k * MR and k * NR values.
                unsafe {
                    let d = dst.add(r * ldd + c);
                    micro_cols(k, wp, strip, d, ldd, b, nc, accumulate, clamp);
                    if tail > 0 {
                        let (t, dt) = (&tail_strip[..k * TAIL], d.add(nc));
                        tail_cols(k, wp, t, TAIL, dt, ldd, b, tail, accumulate, clamp);
                    }
                }
                r += mr;
            }
            c += nc + tail;
        }
    });
}

/// Copies columns `0..nc` of `k` rows of `x` (stride `ld`) into `strip` as `k` rows of `NR`
/// (the columns past `nc` zero).
///
/// # Safety
/// AVX-512F; `x` valid for rows `0..k`, columns `0..nc <= NR` at stride `ld`; `strip` for
/// `k * NR` writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_strip(k: usize, x: *const f32, ld: usize, nc: usize, strip: *mut f32) {
    use std::arch::x86_64::*;
    let masks: [u16; 3] =
        std::array::from_fn(|v| super::dw_direct::lane_mask(16 * v as isize, nc, 16) as u16);
    for p in 0..k {
        for (v, &mk) in masks.iter().enumerate() {
            // SAFETY: masked lanes are columns < nc of row p; the strip row has NR values.
            unsafe {
                let val = _mm512_maskz_loadu_ps(mk, x.wrapping_add(p * ld + 16 * v));
                _mm512_storeu_ps(strip.add(p * NR + 16 * v), val);
            }
        }
    }
}

/// How far ahead (in values, 8 KB) [`accumulate`] prefetches the weight panels it streams: the
/// panels of a 1x1 or deep 3x3 convolution come from L3 once per run, and the hardware
/// prefetcher alone left the micro-kernel waiting (Lite0's 7x7 1x1 GEMMs 5-8 % faster,
/// ResNet-18's 512->512 3x3 at 7x7 2785 -> 1898 us; 4 KB ahead helped less, 12 KB the same).
pub(crate) const PREFETCH: usize = 2048;

/// The `MR x 16V` products of one packed panel (`k x MR`, `panel[p * MR + i]`) and one packed
/// strip (`k x NR`, `strip[p * NR + j]`), summed over `k` in registers: the shared core of the
/// convolution GEMM's and the matmul's micro-kernels, which differ only in their epilogues.
///
/// # Safety
/// AVX-512F; `panel` holds at least `k * MR` values and `strip` at least `k * NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn accumulate<const V: usize>(
    k: usize,
    panel: &[f32],
    strip: &[f32],
) -> [[std::arch::x86_64::__m512; V]; MR] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; MR];
    let (w, s) = (panel.as_ptr(), strip.as_ptr());
    for p in 0..k {
        // SAFETY: p < k rows of the strip (NR >= 16 * V values each) and of the panel; the
        // prefetch only names an address (wrapping arithmetic; a prefetch never faults).
        unsafe {
            if p % 2 == 0 {
                // One 64-byte line of weights per two steps, PREFETCH values ahead.
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(p * MR + PREFETCH).cast::<i8>());
            }
            let xs: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(s.add(p * NR + 16 * v)));
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*w.add(p * MR + i));
                for v in 0..V {
                    acc_i[v] = _mm512_fmadd_ps(xs[v], wv, acc_i[v]);
                }
            }
        }
    }
    acc
}

/// [`micro`] as one, two or three registers wide, whichever `nc` (`<= NR`) needs.
///
/// # Safety
/// As [`micro`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro_cols(
    k: usize,
    wp: &[f32],
    strip: &[f32],
    dst: *mut f32,
    ld: usize,
    bias: &[f32],
    nc: usize,
    accumulate: bool,
    clamp: Option<(f32, f32)>,
) {
    // SAFETY: the caller's contract is micro's, and nc fits the width chosen.
    unsafe {
        if nc <= TAIL {
            tail_cols(k, wp, strip, NR, dst, ld, bias, nc, accumulate, clamp)
        } else if nc > 32 {
            micro::<3>(k, wp, strip, dst, ld, bias, nc, accumulate, clamp)
        } else if nc > 16 {
            micro::<2>(k, wp, strip, dst, ld, bias, nc, accumulate, clamp)
        } else {
            micro::<1>(k, wp, strip, dst, ld, bias, nc, accumulate, clamp)
        }
    }
}

/// [`micro_tail`] for `nc <= TAIL` columns of a strip whose rows hold `ls` values.
///
/// # Safety
/// As [`micro_tail`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tail_cols(
    k: usize,
    wp: &[f32],
    strip: &[f32],
    ls: usize,
    dst: *mut f32,
    ld: usize,
    bias: &[f32],
    nc: usize,
    accumulate: bool,
    clamp: Option<(f32, f32)>,
) {
    // SAFETY: the caller's contract, nc <= TAIL.
    unsafe {
        match nc {
            1 => micro_tail::<1>(k, wp, strip, ls, dst, ld, bias, accumulate, clamp),
            2 => micro_tail::<2>(k, wp, strip, ls, dst, ld, bias, accumulate, clamp),
            3 => micro_tail::<3>(k, wp, strip, ls, dst, ld, bias, accumulate, clamp),
            _ => micro_tail::<4>(k, wp, strip, ls, dst, ld, bias, accumulate, clamp),
        }
    }
}

/// Copies columns `0..nc <= TAIL` of `k` rows of `x` (stride `ld`) into `out` as `k` rows of
/// `TAIL` (columns past `nc` zero): a few last columns packed densely, so their multiply-adds
/// stream the packed rows instead of touching one cache line per row.
///
/// # Safety
/// `x` valid for rows `0..k`, columns `0..nc` at stride `ld`; `out` holds `k * TAIL` values.
unsafe fn pack_tail(k: usize, x: *const f32, ld: usize, nc: usize, out: &mut [f32]) {
    for (p, row) in out.chunks_exact_mut(TAIL).take(k).enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            // SAFETY: row p < k, column j < nc of x.
            *v = if j < nc { unsafe { *x.add(p * ld + j) } } else { 0.0 };
        }
    }
}

/// Widths up to this many columns (the last few columns of a plane, as 7x7 = 48 + 1 leaves)
/// take [`micro_tail`]: a 16-lane vector holding one column would do 16 times the work.
pub(crate) const TAIL: usize = 4;

/// One `mr x NC` block (`NC <= TAIL` columns) from a packed panel and strip, the panel's 8 rows
/// as the vector lanes: per `k` step one panel load and `NC` broadcasts, four or eight steps in
/// flight (independent accumulators) so the multiply-adds do not wait on each other.
///
/// # Safety
/// As [`micro`], with `nc = NC` and strip rows of `ls >= NC` values (`strip` holds `k * ls`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_tail<const NC: usize>(
    k: usize,
    wp: &[f32],
    strip: &[f32],
    ls: usize,
    dst: *mut f32,
    ld: usize,
    bias: &[f32],
    accumulate: bool,
    clamp: Option<(f32, f32)>,
) {
    use std::arch::x86_64::*;
    // Steps in flight: enough independent accumulators (8, or 4 per column when there are
    // three or four columns) to cover the multiply-add latency.
    const U: usize = 8;
    let uu = if NC <= 2 { U } else { U / 2 };
    let mut acc = [[_mm256_setzero_ps(); U]; NC];
    let (w, s) = (wp.as_ptr(), strip.as_ptr());
    let mut p = 0;
    while p + uu <= k {
        for u in 0..uu {
            // SAFETY: p + u < k rows of the panel (MR values) and the strip (ls >= NC values).
            unsafe {
                let wv = _mm256_loadu_ps(w.add((p + u) * MR));
                for (j, acc_j) in acc.iter_mut().enumerate() {
                    let xv = _mm256_set1_ps(*s.add((p + u) * ls + j));
                    acc_j[u] = _mm256_fmadd_ps(wv, xv, acc_j[u]);
                }
            }
        }
        p += uu;
    }
    while p < k {
        // SAFETY: p < k, as above.
        unsafe {
            let wv = _mm256_loadu_ps(w.add(p * MR));
            for (j, acc_j) in acc.iter_mut().enumerate() {
                acc_j[0] = _mm256_fmadd_ps(wv, _mm256_set1_ps(*s.add(p * ls + j)), acc_j[0]);
            }
        }
        p += 1;
    }
    for (j, acc_j) in acc.iter().enumerate() {
        let mut sum = acc_j[0];
        for a in &acc_j[1..uu] {
            sum = _mm256_add_ps(sum, *a);
        }
        let mut rows = [0f32; MR];
        // SAFETY: `rows` holds MR = 8 values.
        unsafe { _mm256_storeu_ps(rows.as_mut_ptr(), sum) };
        for (i, (&v, &b)) in rows.iter().zip(bias).enumerate() {
            // SAFETY: row i < mr = bias.len(), column j < NC = nc (the caller's contract).
            unsafe {
                let d = dst.add(i * ld + j);
                let y = v + b + if accumulate { *d } else { 0.0 };
                // Comparisons, not min/max: a NaN stays NaN, as in `micro`.
                *d = match clamp {
                    Some((lo, _)) if y < lo => lo,
                    Some((_, hi)) if y > hi => hi,
                    _ => y,
                };
            }
        }
    }
}

/// One `mr x nc` block (`mr <= MR`, `nc <= 16 * V`) from a packed panel and strip.
///
/// # Safety
/// AVX-512F; `wp` holds `k * MR`, `strip` `k * NR` values; `dst` valid for rows `0..mr`
/// (`mr = bias.len()`), columns `0..nc` at stride `ld`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<const V: usize>(
    k: usize,
    wp: &[f32],
    strip: &[f32],
    dst: *mut f32,
    ld: usize,
    bias: &[f32],
    nc: usize,
    accumulate: bool,
    clamp: Option<(f32, f32)>,
) {
    use std::arch::x86_64::*;
    // SAFETY: AVX-512F (this function's contract); `wp` holds k * MR and `strip` k * NR values.
    let acc = unsafe { self::accumulate::<V>(k, wp, strip) };
    let masks: [u16; V] =
        std::array::from_fn(|v| super::dw_direct::lane_mask(16 * v as isize, nc, 16) as u16);
    let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    for (i, (acc_i, &b)) in acc.iter().zip(bias).enumerate() {
        let b = _mm512_set1_ps(b);
        for v in 0..V {
            // SAFETY: row i < mr, columns under the mask < nc.
            unsafe {
                let dp = dst.add(i * ld + 16 * v);
                let mut y = _mm512_add_ps(acc_i[v], b);
                if accumulate {
                    y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(masks[v], dp));
                }
                if clamp.is_some() {
                    y = _mm512_min_ps(vhi, _mm512_max_ps(vlo, y));
                }
                _mm512_mask_storeu_ps(dp, masks[v], y);
            }
        }
    }
}
