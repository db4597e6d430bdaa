//! Weight decompression at prepare time (the `constexpr_*` ops Apple's compression tools
//! write): LUT palettization, sparse masks, blockwise shift-scale and casts. Each result
//! becomes an f32 const; nothing of it runs per call.

use std::sync::Arc;

use coreml_format::{ConstData, ConstValue, Operation, ScalarType};
use inference_api::Result;

use super::Builder;

/// Bits per element of a packed sub-byte type (`None` for byte-or-wider types).
fn packed_bits(t: ScalarType) -> Option<(u32, bool)> {
    Some(match t {
        ScalarType::U1 => (1, false),
        ScalarType::U2 => (2, false),
        ScalarType::U3 => (3, false),
        ScalarType::U4 => (4, false),
        ScalarType::U6 => (6, false),
        ScalarType::I4 => (4, true),
        _ => return None,
    })
}

/// Unpacks `n` LSB-first `bits`-wide fields from `bytes` (sign-extended when `signed`).
pub(crate) fn unpack(bytes: &[u8], bits: u32, signed: bool, n: usize) -> Option<Vec<f32>> {
    if bytes.len() * 8 < n * bits as usize {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let mut v: u32 = 0;
        for b in 0..bits as usize {
            let bit = k * bits as usize + b;
            if bytes[bit / 8] >> (bit % 8) & 1 == 1 {
                v |= 1 << b;
            }
        }
        let x = if signed && v >> (bits - 1) & 1 == 1 {
            v as i64 - (1i64 << bits)
        } else {
            i64::from(v)
        };
        out.push(x as f32);
    }
    Some(out)
}

/// A const's values as f32, packed sub-byte integers included.
fn numbers(v: &ConstValue) -> Option<Vec<f32>> {
    match (&v.data, packed_bits(v.dtype)) {
        (ConstData::Raw(bytes), Some((bits, signed))) => {
            unpack(bytes, bits, signed, v.element_count())
        }
        _ => v.to_f32_vec(),
    }
}

pub(super) fn required(
    b: &mut Builder<'_>,
    i: usize,
    op: &Operation,
    name: &str,
) -> Result<Arc<ConstValue>> {
    b.param(i, op, name)?.ok_or_else(|| b.bad(i, op, format!("no `{name}`")))
}

pub(super) fn nums(
    b: &Builder<'_>,
    i: usize,
    op: &Operation,
    v: &ConstValue,
    name: &str,
) -> Result<Vec<f32>> {
    numbers(v).ok_or_else(|| b.bad(i, op, format!("`{name}` ({}) is not numeric", v.dtype)))
}

pub(super) fn define(
    b: &mut Builder<'_>,
    op: &Operation,
    k: usize,
    shape: Vec<usize>,
    data: Vec<f32>,
) {
    if let Some(o) = op.outputs.get(k) {
        let v = ConstValue { dtype: ScalarType::F32, shape, data: ConstData::F32(data) };
        b.consts.insert(o.name.clone(), Arc::new(v));
    }
}

fn out_shape(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<Vec<usize>> {
    b.usizes(i, op, "shape")?.ok_or_else(|| b.bad(i, op, "no `shape`"))
}

/// Repeats `small` (shaped `sshape`) blockwise up to `shape` (each axis an integer multiple).
pub(super) fn repeat_blocks(small: &[f32], sshape: &[usize], shape: &[usize]) -> Option<Vec<f32>> {
    if sshape.len() != shape.len() || shape.iter().zip(sshape).any(|(&d, &s)| s == 0 || d % s != 0)
    {
        return None;
    }
    let total: usize = shape.iter().product();
    let st = super::func::strides(shape);
    let ss = super::func::strides(sshape);
    Some(
        (0..total)
            .map(|e| {
                let mut at = 0;
                for d in 0..shape.len() {
                    let c = (e / st[d]) % shape[d];
                    at += (c / (shape[d] / sshape[d])) * ss[d];
                }
                small[at]
            })
            .collect(),
    )
}

/// `constexpr_lut_to_dense`: iOS16 (packed uint8 indices, 1-D LUT, `shape`) or iOS18 (sub-byte
/// indices, per-block LUTs `[..., palettes, vector]`, vectors along `vector_axis`).
pub(super) fn lut_to_dense(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let idx = required(b, i, op, "indices")?;
    let lut = required(b, i, op, "lut")?;
    let lv = nums(b, i, op, &lut, "lut")?;
    if op.inputs.contains_key("shape") || op.attributes.contains_key("shape") {
        let shape = out_shape(b, i, op)?;
        let n: usize = shape.iter().product();
        let bits = lv.len().trailing_zeros();
        let ConstData::U8(bytes) = &idx.data else {
            return Err(b.bad(i, op, "iOS16 indices must be packed uint8"));
        };
        if !lv.len().is_power_of_two() || lv.is_empty() {
            return Err(b.bad(i, op, format!("a LUT of {} entries", lv.len())));
        }
        let keys =
            unpack(bytes, bits, false, n).ok_or_else(|| b.bad(i, op, "too few index bytes"))?;
        let data = keys.iter().map(|&k| lv[k as usize]).collect();
        define(b, op, 0, shape, data);
        return Ok(());
    }
    let keys = nums(b, i, op, &idx, "indices")?;
    let va = b.ints(i, op, "vector_axis")?.and_then(|v| v.first().copied());
    let (shape, data) =
        lut_lookup(&keys, &idx.shape, &lut.shape, &lv, va).map_err(|e| b.bad(i, op, e))?;
    define(b, op, 0, shape, data);
    Ok(())
}

/// The iOS18 LUT lookup: `keys` shaped `ishape` index per-block palettes `lut`
/// (`[blocks.., palettes, vector]`, values `lv`); a vector of more than one value fills
/// `vector_axis` (`vector` times longer than the indices' axis). Returns the output shape and
/// values.
pub(super) fn lut_lookup(
    keys: &[f32],
    ishape: &[usize],
    lshape: &[usize],
    lv: &[f32],
    vector_axis: Option<i64>,
) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    let r = ishape.len();
    if lshape.len() != r + 2 {
        return Err(format!("LUT shape {lshape:?} for indices {ishape:?}"));
    }
    let (pal, vec) = (lshape[r], lshape[r + 1]);
    let blocks = &lshape[..r];
    if (0..r).any(|d| blocks[d] == 0 || !ishape[d].is_multiple_of(blocks[d])) {
        return Err(format!("LUT blocks {blocks:?} do not divide the indices' shape {ishape:?}"));
    }
    let va = match (vec, vector_axis) {
        (1, _) => r,
        (_, Some(a)) => crate::mlprogram::ops::axis(a, r).map_err(|e| e.to_string())?,
        (_, None) => return Err(format!("a LUT vector of {vec} values needs a vector_axis")),
    };
    let mut shape = ishape.to_vec();
    if va < r {
        shape[va] *= vec;
    }
    let total: usize = shape.iter().product();
    let (ost, ist, bs) =
        (super::func::strides(&shape), super::func::strides(ishape), super::func::strides(blocks));
    let mut data = Vec::with_capacity(total);
    for e in 0..total {
        let (mut at, mut blk, mut j) = (0, 0, 0);
        for d in 0..r {
            let mut c = (e / ost[d]) % shape[d];
            if d == va {
                j = c % vec;
                c /= vec;
            }
            at += c * ist[d];
            blk += (c / (ishape[d] / blocks[d])) * bs[d];
        }
        let k = keys[at] as usize;
        if k >= pal {
            return Err(format!("index {k} past a LUT of {pal}"));
        }
        data.push(lv[(blk * pal + k) * vec + j]);
    }
    Ok((shape, data))
}

/// `constexpr_sparse_to_dense`: iOS16 (bit mask packed in uint8 plus `shape`) or iOS18
/// (uint1 mask shaped as the output).
pub(super) fn sparse_to_dense(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let nz = required(b, i, op, "nonzero_data")?;
    let nzv = nums(b, i, op, &nz, "nonzero_data")?;
    let mask = required(b, i, op, "mask")?;
    let (shape, bits) = if op.inputs.contains_key("shape") || op.attributes.contains_key("shape") {
        let shape = out_shape(b, i, op)?;
        let ConstData::U8(bytes) = &mask.data else {
            return Err(b.bad(i, op, "iOS16 mask must be packed uint8"));
        };
        let n = shape.iter().product();
        let bits = unpack(bytes, 1, false, n).ok_or_else(|| b.bad(i, op, "too few mask bytes"))?;
        (shape, bits)
    } else {
        (mask.shape.clone(), nums(b, i, op, &mask, "mask")?)
    };
    let mut it = nzv.iter();
    let mut data = Vec::with_capacity(bits.len());
    for &m in &bits {
        data.push(if m != 0.0 {
            *it.next().ok_or_else(|| b.bad(i, op, "more mask bits than nonzero values"))?
        } else {
            0.0
        });
    }
    define(b, op, 0, shape, data);
    Ok(())
}

/// `constexpr_blockwise_shift_scale`: `scale * (data - offset)`, scale/offset repeated blockwise.
pub(super) fn blockwise_shift_scale(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let d = required(b, i, op, "data")?;
    let dv = nums(b, i, op, &d, "data")?;
    let data = shift_scale(b, i, op, &dv, &d.shape)?;
    define(b, op, 0, d.shape.clone(), data);
    Ok(())
}

/// `scale * (data - offset)` for `data` (values `dv` of `shape`), the op's `scale` and optional
/// `offset` repeated blockwise up to `shape`.
pub(super) fn shift_scale(
    b: &mut Builder<'_>,
    i: usize,
    op: &Operation,
    dv: &[f32],
    shape: &[usize],
) -> Result<Vec<f32>> {
    let s = required(b, i, op, "scale")?;
    let sv = nums(b, i, op, &s, "scale")?;
    let scale = repeat_blocks(&sv, &s.shape, shape)
        .ok_or_else(|| b.bad(i, op, format!("scale {:?} does not tile data {shape:?}", s.shape)))?;
    let offset = match b.param(i, op, "offset")? {
        None => None,
        Some(o) => {
            let ov = nums(b, i, op, &o, "offset")?;
            Some(
                repeat_blocks(&ov, &o.shape, shape)
                    .ok_or_else(|| b.bad(i, op, "offset does not tile data"))?,
            )
        }
    };
    Ok(dv
        .iter()
        .enumerate()
        .map(|(e, &x)| scale[e] * (x - offset.as_ref().map_or(0.0, |o| o[e])))
        .collect())
}

/// `constexpr_cast`: widens fp16 weights (values stay f32 inside the executor).
pub(super) fn cast(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let v = required(b, i, op, "source_val")?;
    let data = nums(b, i, op, &v, "source_val")?;
    define(b, op, 0, v.shape.clone(), data);
    Ok(())
}

/// `constexpr_affine_dequantize` (iOS16): `(q - zero_point) * scale` along `axis`, int8/uint8
/// (and packed int4/uint4) data.
pub(super) fn affine_dequantize(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let q = required(b, i, op, "quantized_data")?;
    let data = nums(b, i, op, &q, "quantized_data")?;
    let zp = b.floats(i, op, "zero_point")?.unwrap_or(vec![0.0]);
    let scale = b.floats(i, op, "scale")?.unwrap_or(vec![1.0]);
    let ax = b.int_or(i, op, "axis", 0)?;
    let rank = q.shape.len();
    let a = crate::mlprogram::ops::axis(ax, rank).map_err(|e| b.bad(i, op, e))?;
    let dim = q.shape.get(a).copied().unwrap_or(1);
    let inner: usize = q.shape[a + 1..].iter().product();
    if (zp.len() != 1 && zp.len() != dim) || (scale.len() != 1 && scale.len() != dim) {
        return Err(b.bad(i, op, "zero_point/scale do not match the axis"));
    }
    let pick = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] };
    let out = data
        .iter()
        .enumerate()
        .map(|(e, &x)| {
            let c = (e / inner.max(1)) % dim.max(1);
            (x - pick(&zp, c)) * pick(&scale, c)
        })
        .collect();
    define(b, op, 0, q.shape.clone(), out);
    Ok(())
}
