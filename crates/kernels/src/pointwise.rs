//! 1x1 stride-1 convolution as one GEMM per image, `out[co x hw] = w[co x ci] * x[ci x hw]`,
//! tiled over output columns (and rows when there are few columns) so each tile's bias,
//! activation and optional residual are applied while it is still in cache. Tiles run on the
//! kernels' pool ([`crate::pool`]), one single-threaded GEMM each: no nested parallelism.

#![allow(unsafe_code)]

use super::{Activation, apply_activation};

/// A raw output pointer shared by tiles that write disjoint regions.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only dereferenced by tiles that write pairwise-disjoint index sets of
// one live `&mut [f32]` that outlives the parallel loop (see `pointwise`).
unsafe impl Send for OutPtr {}
// SAFETY: as above; shared references to `OutPtr` only copy the address.
unsafe impl Sync for OutPtr {}

/// `out = act(w * x + bias) (+ out if accumulate)` for one image. `w` is `co x ci`, `x` is
/// `ci x hw`, `out` is `co x hw`. With `accumulate`, `out` holds a residual that the product is
/// added to before the bias; `act` must then be `None` (the caller checks). `packed`, when
/// given, holds `w` packed by [`crate::packed::pack_weights`]; it is used on AVX-512.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pointwise(
    co: usize,
    ci: usize,
    hw: usize,
    w: &[f32],
    packed: Option<&[f32]>,
    x: &[f32],
    bias: &[f32],
    act: Activation,
    accumulate: bool,
    out: &mut [f32],
) -> bool {
    let packed =
        packed.filter(|p| p.len() >= co.div_ceil(super::packed::MR) * ci * super::packed::MR);
    // `w` may be empty when the packed copy is given (it is then the only copy).
    let w_ok = w.len() >= co * ci || packed.is_some();
    if !w_ok || x.len() < ci * hw || out.len() < co * hw || bias.len() < co {
        return false;
    }
    if co == 0 || hw == 0 {
        return true;
    }
    let clamp = super::dw_direct::clamp_of(act);
    let threads = crate::pool::threads();
    let (nt, col_tiles, row_tiles) = if let Some(packed) = packed {
        // The packed kernel packs x one 48-column strip at a time whatever the tile, so tiles
        // are whole strips, one per thread, split to read the least. Two tasks per thread
        // measured slower on every Lite0 shape (each repeats that reading).
        let best = super::packed::Split::least_reading(co, hw, threads);
        // Or split the depth: each thread reads its own slice of the input channels (the
        // ones its core wrote, when a channel-split step came before) and of every weight
        // row, and the partial sums (co x hw each, read and added once more) are summed.
        let depth = co + hw + 2 * (threads - 1) * co * hw / ci.max(1);
        if threads > 1 && ci >= 16 * threads && depth < best.reads && split_depth_allowed() {
            split_depth(co, ci, hw, packed, x, bias, act, accumulate, out, threads);
            return true;
        }
        (best.nt, best.col_tiles, best.row_tiles)
    } else {
        // Column tiles sized so a tile of x (ci x nt) stays within about 256 KB.
        let nt_cache = ((64 * 1024) / ci.max(1)).clamp(64, 1024) / 16 * 16;
        let mut nt = nt_cache.min(hw);
        if threads > 1 && hw.div_ceil(nt) < threads && hw >= 32 * threads {
            nt = hw.div_ceil(threads).div_ceil(8) * 8;
        }
        let col_tiles = hw.div_ceil(nt);
        // Split rows too when columns alone cannot feed every thread.
        let row_tiles = if col_tiles >= 2 * threads || threads == 1 {
            1
        } else {
            (2 * threads).div_ceil(col_tiles).min(co.div_ceil(16)).max(1)
        };
        (nt, col_tiles, row_tiles)
    };
    let mt = co.div_ceil(row_tiles).div_ceil(8) * 8;
    let row_tiles = co.div_ceil(mt);
    let dst = OutPtr(out.as_mut_ptr());
    let tile = |t: usize| {
        let (rt, ct) = (t / col_tiles, t % col_tiles);
        let r0 = rt * mt;
        let (c0, n) = super::packed::Split::columns(nt, col_tiles, ct, hw);
        let m = (co - r0).min(mt);
        let d = dst;
        // The activation over the tile's rows, for the kernels that do not apply it in
        // registers.
        let activate = || {
            for i in 0..m {
                // SAFETY: row segment out[(r0+i)*hw + c0 .. + n] is in bounds and this tile's.
                let row = unsafe { std::slice::from_raw_parts_mut(d.0.add((r0 + i) * hw + c0), n) };
                apply_activation(row, act);
            }
        };
        if let Some(pk) = packed {
            // SAFETY: r0 is a multiple of MR (mt is a multiple of 8), the panels from r0 / MR
            // cover rows r0..r0+m (length checked above), and the tile's x columns and out
            // block are in bounds and this tile's alone, as argued for the GEMM call below.
            unsafe {
                super::packed_portable::best_tile(
                    m,
                    n,
                    ci,
                    pk,
                    r0 / super::packed::MR,
                    ci * super::packed::MR,
                    x.as_ptr().add(c0),
                    hw,
                    d.0.add(r0 * hw + c0),
                    hw,
                    &bias[r0..r0 + m],
                    accumulate,
                    clamp,
                )
            };
            if act != Activation::None && clamp.is_none() {
                activate();
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if super::simd::has_avx512() {
            // SAFETY: AVX-512F was detected at run time. The tile's rows r0..r0+m of `w` (row
            // stride ci), columns c0..c0+n of `x` (ci rows of stride hw) and of `out` (rows
            // r0..r0+m, stride hw) are in bounds as argued below for the GEMM call, and belong
            // to this tile alone.
            unsafe {
                tile_avx512(
                    m,
                    n,
                    ci,
                    w.as_ptr().add(r0 * ci),
                    x.as_ptr().add(c0),
                    hw,
                    d.0.add(r0 * hw + c0),
                    &bias[r0..r0 + m],
                    accumulate,
                )
            };
            if act != Activation::None {
                activate();
            }
            return;
        }
        // SAFETY: r0 + m <= co and c0 + n <= hw, so every element the GEMM touches,
        // out[(r0 + i) * hw + c0 + j] for i < m, j < n, lies inside `out` (len >= co * hw);
        // `w` holds co * ci and `x` ci * hw elements (checked above), so lhs rows r0..r0+m and
        // rhs columns c0..c0+n are in bounds with the strides given. Distinct tiles cover
        // disjoint (row, column) blocks, so no two tiles write the same element, and `out` is
        // exclusively borrowed for the whole call.
        unsafe {
            ::gemm::gemm(
                m,
                n,
                ci,
                d.0.add(r0 * hw + c0),
                1,
                hw as isize,
                accumulate,
                w.as_ptr().add(r0 * ci),
                1,
                ci as isize,
                x.as_ptr().add(c0),
                1,
                hw as isize,
                if accumulate { 1.0 } else { 0.0 },
                1.0,
                false,
                false,
                false,
                ::gemm::Parallelism::None,
            );
        }
        for i in 0..m {
            // SAFETY: the row segment out[(r0+i)*hw + c0 .. + n] is in bounds (see above) and
            // belongs to this tile only.
            let row = unsafe { std::slice::from_raw_parts_mut(d.0.add((r0 + i) * hw + c0), n) };
            let b = bias[r0 + i];
            if b != 0.0 {
                row.iter_mut().for_each(|v| *v += b);
            }
            apply_activation(row, act);
        }
    };
    let tiles = row_tiles * col_tiles;
    crate::pool::for_each_task(tiles, &tile);
    true
}

/// `dst[m x n] (+)= w[m x k] * x[k x n] + bias`, AVX-512 register-blocked: 6 rows x 32 columns
/// of accumulators, weights broadcast from `w` (row stride `k`), `x` and `dst` with row stride
/// `ld`; column tails by masked loads and stores.
///
/// # Safety
/// The CPU must support AVX-512F; `w` must be valid for `m * k` reads, `x` for rows `0..k` of
/// `n` columns at stride `ld`, `dst` for rows `0..m` of `n` columns at stride `ld`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512(
    m: usize,
    n: usize,
    k: usize,
    w: *const f32,
    x: *const f32,
    ld: usize,
    dst: *mut f32,
    bias: &[f32],
    accumulate: bool,
) {
    let mut r = 0;
    while r < m {
        let rr = (m - r).min(6);
        let mut c = 0;
        while c < n {
            let nc = (n - c).min(32);
            // SAFETY: forwarded from the caller; rows r..r+rr < m, columns c..c+nc <= n.
            unsafe {
                match rr {
                    6 => micro::<6>(
                        k,
                        w.add(r * k),
                        x.add(c),
                        ld,
                        dst.add(r * ld + c),
                        &bias[r..],
                        nc,
                        accumulate,
                    ),
                    5 => micro::<5>(
                        k,
                        w.add(r * k),
                        x.add(c),
                        ld,
                        dst.add(r * ld + c),
                        &bias[r..],
                        nc,
                        accumulate,
                    ),
                    4 => micro::<4>(
                        k,
                        w.add(r * k),
                        x.add(c),
                        ld,
                        dst.add(r * ld + c),
                        &bias[r..],
                        nc,
                        accumulate,
                    ),
                    3 => micro::<3>(
                        k,
                        w.add(r * k),
                        x.add(c),
                        ld,
                        dst.add(r * ld + c),
                        &bias[r..],
                        nc,
                        accumulate,
                    ),
                    2 => micro::<2>(
                        k,
                        w.add(r * k),
                        x.add(c),
                        ld,
                        dst.add(r * ld + c),
                        &bias[r..],
                        nc,
                        accumulate,
                    ),
                    _ => micro::<1>(
                        k,
                        w.add(r * k),
                        x.add(c),
                        ld,
                        dst.add(r * ld + c),
                        &bias[r..],
                        nc,
                        accumulate,
                    ),
                }
            }
            c += nc;
        }
        r += rr;
    }
}

/// One `R x 32` block (`nc <= 32` valid columns).
///
/// # Safety
/// As [`tile_avx512`] for an `R x nc` block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<const R: usize>(
    k: usize,
    w: *const f32,
    x: *const f32,
    ld: usize,
    dst: *mut f32,
    bias: &[f32],
    nc: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let lo: __mmask16 = if nc >= 16 { 0xFFFF } else { ((1u32 << nc) - 1) as u16 };
    let hi: __mmask16 = if nc >= 32 {
        0xFFFF
    } else if nc > 16 {
        ((1u32 << (nc - 16)) - 1) as u16
    } else {
        0
    };
    let mut a0 = [_mm512_setzero_ps(); R];
    let mut a1 = [_mm512_setzero_ps(); R];
    for p in 0..k {
        // SAFETY: row p < k of x, columns under the masks only.
        let (x0, x1) = unsafe {
            let xp = x.add(p * ld);
            (_mm512_maskz_loadu_ps(lo, xp), _mm512_maskz_loadu_ps(hi, xp.add(16)))
        };
        for i in 0..R {
            // SAFETY: i < R rows of w, p < k.
            let wv = _mm512_set1_ps(unsafe { *w.add(i * k + p) });
            a0[i] = _mm512_fmadd_ps(x0, wv, a0[i]);
            a1[i] = _mm512_fmadd_ps(x1, wv, a1[i]);
        }
    }
    for i in 0..R {
        let b = _mm512_set1_ps(bias[i]);
        // SAFETY: row i < R of dst, columns under the masks only.
        unsafe {
            let dp = dst.add(i * ld);
            let (mut v0, mut v1) = (_mm512_add_ps(a0[i], b), _mm512_add_ps(a1[i], b));
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(lo, dp));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(hi, dp.add(16)));
            }
            _mm512_mask_storeu_ps(dp, lo, v0);
            _mm512_mask_storeu_ps(dp.add(16), hi, v1);
        }
    }
}

thread_local! {
    /// The calling thread's partial sums of a depth-split GEMM (and a zero bias), kept.
    static PARTIAL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `INFER_SPLIT_K=never` (read once) keeps every 1x1 GEMM split by rows or columns, for
/// same-binary A/B runs.
fn split_depth_allowed() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("INFER_SPLIT_K").map_or(true, |v| v != "never"))
}

/// [`pointwise`] with the depth `ci` split into `parts` slices, one task each: slice 0 goes
/// straight into `out` with the bias, the others into partial buffers, which are then added
/// to `out` before the activation. With `accumulate` (a residual in `out`) slice 0 gets a
/// buffer too and the residual is added last, so the sum rounds exactly as a plain
/// convolution followed by the add does (the ML Program executor's interpreted first run and
/// its lowered plan, which folds the add, agree to the bit).
#[allow(clippy::too_many_arguments)]
fn split_depth(
    co: usize,
    ci: usize,
    hw: usize,
    packed: &[f32],
    x: &[f32],
    bias: &[f32],
    act: Activation,
    accumulate: bool,
    out: &mut [f32],
    parts: usize,
) {
    let mr = super::packed::MR;
    let per = ci.div_ceil(parts);
    let parts = ci.div_ceil(per);
    let plane = co * hw;
    let first = usize::from(!accumulate);
    let buffers = parts - first;
    crate::pool::with_aligned_scratch(&PARTIAL, buffers * plane + co, |buf| {
        let (partials, zeros) = buf.split_at_mut(buffers * plane);
        zeros.fill(0.0);
        let zeros = &*zeros;
        let shared = crate::pool::SharedMut::new(partials);
        let dst = OutPtr(out.as_mut_ptr());
        crate::pool::for_each_task(parts, &|p| {
            let (k0, d) = (p * per, dst);
            let kk = per.min(ci - k0);
            let to = if p < first {
                d.0
            } else {
                // SAFETY: buffer p - first is this task's alone; `buf` outlives the loop.
                unsafe { shared.slice((p - first) * plane, plane) }.as_mut_ptr()
            };
            let b = if p == 0 { bias } else { zeros };
            // SAFETY: the panels of all co rows start every ci * MR values (packed checked by
            // the caller); slice p reads their values k0 * MR.. for kk steps, and rows
            // k0..k0+kk of x (ci rows of hw); `to` holds co rows of hw values, this task's
            // alone (`out` for slice 0 without a residual, a buffer otherwise).
            unsafe {
                super::packed_portable::best_tile(
                    co,
                    hw,
                    kk,
                    &packed[k0 * mr..],
                    0,
                    ci * mr,
                    x.as_ptr().add(k0 * hw),
                    hw,
                    to,
                    hw,
                    &b[..co],
                    false,
                    None,
                )
            };
        });
        let out = &mut out[..plane];
        if accumulate {
            let (sum, rest) = partials.split_at_mut(plane);
            for part in rest.chunks_exact(plane) {
                sum.iter_mut().zip(part).for_each(|(s, v)| *s += v);
            }
            out.iter_mut().zip(&*sum).for_each(|(o, v)| *o += v);
        } else {
            for part in partials.chunks_exact(plane) {
                out.iter_mut().zip(part).for_each(|(o, v)| *o += v);
            }
        }
        apply_activation(out, act);
    });
}
