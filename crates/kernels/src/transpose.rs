//! Batched 2-D transpose of elements or of contiguous runs (`[b, r, c, inner]` -> `[b, c, r,
//! inner]`), the copy behind most tensor permutes (NCHW <-> NHWC, attention heads): cache-sized
//! tiles, spread over the pool by tile rows.

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
    let out = SharedMut::new(dst);
    for_each_task(b * bands, &|task| {
        let (m, band) = (task / bands, task % bands);
        let (j0, j1) = (band * TILE, ((band + 1) * TILE).min(c));
        let s = &src[m * mat..(m + 1) * mat];
        // SAFETY: this task writes only rows j0..j1 of matrix m of the output, a range no
        // other task writes; `dst` outlives the loop.
        let d = unsafe { out.slice(m * mat + j0 * r * inner, (j1 - j0) * r * inner) };
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
            for j in j0..j1 {
                for i in 0..r {
                    let at = ((j - j0) * r + i) * inner;
                    let from = (i * c + j) * inner;
                    d[at..at + inner].copy_from_slice(&s[from..from + inner]);
                }
            }
        }
    });
    Ok(())
}
