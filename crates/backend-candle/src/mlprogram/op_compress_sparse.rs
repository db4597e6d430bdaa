//! iOS18 joint compression, sparse-to-sparse: `constexpr_lut_to_sparse` (palettized non-zero
//! values) and `constexpr_sparse_blockwise_shift_scale` (quantized non-zero values). Each
//! yields a mask and the decompressed non-zero values, which a `constexpr_sparse_to_dense`
//! then spreads out; all of it at prepare time.

use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::compress::{define, lut_lookup, nums, required, shift_scale};

/// Spreads `nonzero` over the set places of `mask` (zeros elsewhere).
fn dense(mask: &[f32], nonzero: &[f32]) -> Option<Vec<f32>> {
    let mut it = nonzero.iter();
    let out = mask.iter().map(|&m| if m != 0.0 { it.next().copied() } else { Some(0.0) });
    out.collect()
}

/// `v` (shaped `from`) stretched to `to` (each axis a whole multiple), every element repeated
/// over its block.
fn stretch(v: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    let (st, sf) = (super::func::strides(to), super::func::strides(from));
    (0..to.iter().product())
        .map(|e: usize| {
            let at: usize =
                (0..to.len()).map(|d| ((e / st[d]) % to[d]) / (to[d] / from[d]) * sf[d]).sum();
            v[at]
        })
        .collect()
}

/// The values of `data` at the set places of `mask`, in order.
fn gather(mask: &[f32], data: &[f32]) -> Vec<f32> {
    mask.iter().zip(data).filter(|(m, _)| **m != 0.0).map(|(_, &v)| v).collect()
}

/// `constexpr_lut_to_sparse`: looks the non-zero indices up in the LUT; a vector LUT repeats
/// the mask `vector` times along `vector_axis`.
pub(super) fn lut_to_sparse(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let m = required(b, i, op, "indices_mask")?;
    let mask = nums(b, i, op, &m, "indices_mask")?;
    let nz = required(b, i, op, "indices_nonzero_data")?;
    let keys = nums(b, i, op, &nz, "indices_nonzero_data")?;
    let lut = required(b, i, op, "lut")?;
    let lv = nums(b, i, op, &lut, "lut")?;
    let va = b.ints(i, op, "vector_axis")?.and_then(|v| v.first().copied());
    let keys =
        dense(&mask, &keys).ok_or_else(|| b.bad(i, op, "more mask bits than non-zero indices"))?;
    let (shape, values) =
        lut_lookup(&keys, &m.shape, &lut.shape, &lv, va).map_err(|e| b.bad(i, op, e))?;
    // The mask over the output: each index's bit repeated along the vector axis.
    let omask = if shape == m.shape { mask } else { stretch(&mask, &m.shape, &shape) };
    let nonzero = gather(&omask, &values);
    let n = nonzero.len();
    define(b, op, 0, shape, omask);
    define(b, op, 1, vec![n], nonzero);
    Ok(())
}

/// `constexpr_sparse_blockwise_shift_scale`: `scale * (x - offset)` of the non-zero values, with
/// `scale` and `offset` tiled over the mask's (dense) shape.
pub(super) fn sparse_shift_scale(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let m = required(b, i, op, "data_mask")?;
    let mask = nums(b, i, op, &m, "data_mask")?;
    let nz = required(b, i, op, "nonzero_data")?;
    let nzv = nums(b, i, op, &nz, "nonzero_data")?;
    let data =
        dense(&mask, &nzv).ok_or_else(|| b.bad(i, op, "more mask bits than non-zero values"))?;
    let deq = shift_scale(b, i, op, &data, &m.shape)?;
    let nonzero = gather(&mask, &deq);
    let n = nonzero.len();
    define(b, op, 0, m.shape.clone(), mask);
    define(b, op, 1, vec![n], nonzero);
    Ok(())
}
