//! 1x1 stride-1 convolution as one GEMM per image, `out[co x hw] = w[co x ci] * x[ci x hw]`,
//! tiled over output columns (and rows when there are few columns) so each tile's bias,
//! activation and optional residual are applied while it is still in cache. Tiles run on the
//! current rayon pool, one single-threaded GEMM each: no nested parallelism.

#![allow(unsafe_code)]

use rayon::prelude::*;

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
/// added to before the bias; `act` must then be `None` (the caller checks).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pointwise(
    co: usize,
    ci: usize,
    hw: usize,
    w: &[f32],
    x: &[f32],
    bias: &[f32],
    act: Activation,
    accumulate: bool,
    out: &mut [f32],
) -> bool {
    if w.len() < co * ci || x.len() < ci * hw || out.len() < co * hw || bias.len() < co {
        return false;
    }
    if co == 0 || hw == 0 {
        return true;
    }
    let threads = rayon::current_num_threads().max(1);
    // Column tiles sized so a tile of x (ci x nt) stays within about 256 KB.
    let nt_cache = ((64 * 1024) / ci.max(1)).clamp(64, 1024) / 16 * 16;
    let mut nt = nt_cache.min(hw);
    let mut col_tiles = hw.div_ceil(nt);
    if threads > 1 && col_tiles < threads && hw >= 32 * threads {
        nt = hw.div_ceil(threads).div_ceil(8) * 8;
        col_tiles = hw.div_ceil(nt);
    }
    // Split rows too when columns alone cannot feed every thread.
    let row_tiles = if col_tiles >= 2 * threads || threads == 1 {
        1
    } else {
        (2 * threads).div_ceil(col_tiles).min(co.div_ceil(16)).max(1)
    };
    let mt = co.div_ceil(row_tiles).div_ceil(8) * 8;
    let row_tiles = co.div_ceil(mt);
    let dst = OutPtr(out.as_mut_ptr());
    let tile = |t: usize| {
        let (rt, ct) = (t / col_tiles, t % col_tiles);
        let (r0, c0) = (rt * mt, ct * nt);
        let (m, n) = ((co - r0).min(mt), (hw - c0).min(nt));
        let d = dst;
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
    if tiles == 1 || threads == 1 {
        (0..tiles).for_each(tile);
    } else {
        (0..tiles).into_par_iter().for_each(tile);
    }
    true
}
