//! 2-D max pooling over NCHW planes: for each output row, the element-wise maximum of the
//! window's input rows into one row buffer (padded with -inf on both sides), then the
//! horizontal maximum over that buffer at the window's stride. Both loops are plain slices the
//! compiler vectorises (re-compiled for AVX-512 and AVX2 and chosen at run time); planes run in
//! parallel on the kernels' pool.

#![allow(unsafe_code)]

use std::cell::RefCell;

thread_local! {
    /// Each thread's row buffer, kept between calls.
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Where a pooling window sits: input and output plane sizes, window, stride and the padding
/// before the first row and column (padding after them needs no value: a max pool ignores
/// every tap outside the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Rows of padding above the input.
    pub pad_top: usize,
    /// Columns of padding left of the input.
    pub pad_left: usize,
}

/// `out[p][oy][ox]` = the largest input value of plane `p` inside the window at `(oy, ox)`
/// (`-inf` for a window that sees no input), for `planes` planes of `h x w` in `x` and of
/// `oh x ow` in `out`. Fails, naming the problem, when the lengths or the geometry disagree.
pub fn max_pool2d(
    x: &[f32],
    planes: usize,
    g: PoolGeometry,
    out: &mut [f32],
) -> Result<(), String> {
    let PoolGeometry { h, w, oh, ow, kh, kw, stride: (sh, sw), pad_left, .. } = g;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return Err("max_pool: window and strides must be positive".into());
    }
    if x.len() != planes * h * w || out.len() != planes * oh * ow {
        return Err(format!(
            "max_pool: {} input / {} output values for {planes} planes of {h}x{w} -> {oh}x{ow}",
            x.len(),
            out.len()
        ));
    }
    if out.is_empty() {
        return Ok(());
    }
    // The row buffer: `pad_left` columns of -inf, the row, -inf up to the last window's end.
    let len = ((ow - 1) * sw + kw).max(pad_left + w);
    let dst = crate::pool::SharedMut::new(out);
    crate::pool::for_each_task(planes, &|p| {
        // SAFETY: task `p` writes only plane `p` of `out`, which outlives the loop.
        let o = unsafe { dst.slice(p * oh * ow, oh * ow) };
        let xp = &x[p * h * w..(p + 1) * h * w];
        ROW.with(|cell| {
            let mut own = Vec::new();
            let mut guard = cell.try_borrow_mut();
            let row: &mut Vec<f32> = match guard.as_mut() {
                Ok(r) => r,
                Err(_) => &mut own,
            };
            row.clear();
            row.resize(len, f32::NEG_INFINITY);
            plane(xp, g, row, o);
        });
    });
    Ok(())
}

/// One plane, on the best instruction set here.
fn plane(x: &[f32], g: PoolGeometry, row: &mut [f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx512() {
        // SAFETY: `plane_avx512` only requires AVX-512F, just detected at run time.
        unsafe { plane_avx512(x, g, row, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2_fma() {
        // SAFETY: `plane_avx2` only requires AVX2 and FMA, just detected at run time.
        unsafe { plane_avx2(x, g, row, out) };
        return;
    }
    plane_inline::<false>(x, g, row, out)
}

/// [`plane_inline`] compiled with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn plane_avx512(x: &[f32], g: PoolGeometry, row: &mut [f32], out: &mut [f32]) {
    plane_inline::<true>(x, g, row, out)
}

/// [`plane_inline`] compiled with AVX2+FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(x: &[f32], g: PoolGeometry, row: &mut [f32], out: &mut [f32]) {
    plane_inline::<false>(x, g, row, out)
}

/// The larger of two values (NaN-agnostic, so it compiles to one `max` instruction).
#[inline(always)]
fn mx(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// One plane: `row` holds `(ow - 1) * sw + kw` or more values, all -inf on entry. `AVX512`:
/// the caller runs with AVX-512F, and the 3-wide stride-2 window takes [`h3s2_avx512`].
#[inline(always)]
fn plane_inline<const AVX512: bool>(x: &[f32], g: PoolGeometry, row: &mut [f32], out: &mut [f32]) {
    let PoolGeometry { h, w, ow, kh, kw, stride: (sh, sw), pad_top, pad_left, .. } = g;
    for (oy, orow) in out.chunks_exact_mut(ow).enumerate() {
        let y0 = (oy * sh) as isize - pad_top as isize;
        let lo = y0.max(0) as usize;
        let hi = (y0 + kh as isize).clamp(0, h as isize) as usize;
        let mid = &mut row[pad_left..pad_left + w];
        if lo >= hi {
            mid.fill(f32::NEG_INFINITY);
        } else {
            mid.copy_from_slice(&x[lo * w..(lo + 1) * w]);
            for iy in lo + 1..hi {
                for (m, &v) in mid.iter_mut().zip(&x[iy * w..(iy + 1) * w]) {
                    *m = mx(*m, v);
                }
            }
        }
        match (kw, sw) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX512 is true only in `plane_avx512`, which runs with AVX-512F.
            (3, 2) if AVX512 => unsafe { h3s2_avx512(row, orow) },
            (3, 2) => horizontal::<3, 2>(row, orow),
            (2, 2) => horizontal::<2, 2>(row, orow),
            (3, 1) => horizontal::<3, 1>(row, orow),
            (2, 1) => horizontal::<2, 1>(row, orow),
            _ => {
                for (ox, o) in orow.iter_mut().enumerate() {
                    let win = &row[ox * sw..ox * sw + kw];
                    *o = win.iter().copied().fold(f32::NEG_INFINITY, mx);
                }
            }
        }
    }
}

/// `out[ox] = max(row[ox * S .. ox * S + K])` with the window fixed at compile time (strided
/// loads the compiler turns into shuffles).
#[inline(always)]
fn horizontal<const K: usize, const S: usize>(row: &[f32], out: &mut [f32]) {
    let row = &row[..(out.len() - 1) * S + K];
    for (ox, o) in out.iter_mut().enumerate() {
        let mut m = row[ox * S];
        for k in 1..K {
            m = mx(m, row[ox * S + k]);
        }
        *o = m;
    }
}

/// [`horizontal`] for a 3-wide window at stride 2 on AVX-512: 16 outputs from two pairs of
/// loads (the row from `2 * ox` and from `2 * ox + 2`) and three even / odd lane permutes,
/// the maximum taken in the scalar loop's order (so NaN propagates the same way); the last
/// outputs, whose loads would pass the row's end, in the scalar loop.
///
/// # Safety
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn h3s2_avx512(row: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
    let mut o = 0;
    while o + 16 <= out.len() && 2 * o + 34 <= row.len() {
        // SAFETY: the loads read row[2o .. 2o + 34), inside the row (checked above); the store
        // writes out[o .. o + 16), inside `out`.
        unsafe {
            let p = row.as_ptr().add(2 * o);
            let (a, b) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
            let (c, d) = (_mm512_loadu_ps(p.add(2)), _mm512_loadu_ps(p.add(18)));
            let m = _mm512_max_ps(
                _mm512_permutex2var_ps(a, evens, b),
                _mm512_permutex2var_ps(a, odds, b),
            );
            let m = _mm512_max_ps(m, _mm512_permutex2var_ps(c, evens, d));
            _mm512_storeu_ps(out.as_mut_ptr().add(o), m);
        }
        o += 16;
    }
    for (i, v) in out.iter_mut().enumerate().skip(o) {
        *v = mx(mx(row[2 * i], row[2 * i + 1]), row[2 * i + 2]);
    }
}
