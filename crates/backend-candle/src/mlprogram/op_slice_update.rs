//! `slice_update` (iOS18): `x` with the numpy slice `x[begin:end:stride, ...]` replaced by
//! `update`. The bounds may be computed at run time; the masks are consts, read as
//! `slice_by_index` reads them.

use candle_core::{DType, Device, Tensor};
use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, strides};
use crate::mlprogram::ops::{SliceSpec, axis, slice_indices};

/// Compiles `slice_update(x, update, begin, end, stride?, begin_mask?, end_mask?, squeeze_mask?)`.
pub(super) fn slice_update(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let masks = [
        b.flags(i, op, "begin_mask")?,
        b.flags(i, op, "end_mask")?,
        b.flags(i, op, "squeeze_mask")?,
    ];
    let mut inputs = Vec::with_capacity(5);
    for name in ["x", "update", "begin", "end"] {
        inputs.push(b.var(i, op, name)?);
    }
    let has_stride = op.inputs.contains_key("stride");
    if has_stride {
        inputs.push(b.var(i, op, "stride")?);
    }
    b.push_fn(i, op, inputs, move |a| {
        let ints = |k: usize| -> candle_core::Result<Vec<i64>> {
            let v = arg(a, k)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            Ok(v.into_iter().map(|v| v as i64).collect())
        };
        let [begin_mask, end_mask, squeeze_mask] = masks.clone();
        let spec = SliceSpec {
            begin: ints(2)?,
            end: ints(3)?,
            stride: if has_stride { ints(4)? } else { Vec::new() },
            begin_mask,
            end_mask,
            squeeze_mask,
        };
        Ok(vec![update_slice(arg(a, 0)?, arg(a, 1)?, &spec)?])
    });
    Ok(())
}

/// `x` with the elements `spec` selects replaced, in row-major order, by `update`'s.
pub(crate) fn update_slice(
    x: &Tensor,
    update: &Tensor,
    spec: &SliceSpec,
) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let rank = dims.len();
    if spec.begin.len() != rank || spec.end.len() != rank {
        candle_core::bail!(
            "slice_update: begin/end have {}/{} values for x of rank {rank}",
            spec.begin.len(),
            spec.end.len()
        )
    }
    let flag = |v: &[bool], d: usize| v.get(d).copied().unwrap_or(false);
    let mut picked = Vec::with_capacity(rank);
    for (d, &len) in dims.iter().enumerate() {
        picked.push(if flag(&spec.squeeze_mask, d) {
            vec![axis(spec.begin[d], len)?]
        } else {
            slice_indices(
                len,
                spec.begin[d],
                spec.end[d],
                spec.stride.get(d).copied().unwrap_or(1),
                flag(&spec.begin_mask, d),
                flag(&spec.end_mask, d),
            )?
        });
    }
    let count: usize = picked.iter().map(Vec::len).product();
    if update.elem_count() != count {
        let sliced: Vec<usize> = picked.iter().map(Vec::len).collect();
        candle_core::bail!(
            "slice_update: update has shape {:?} ({} elements) but the slice of x {:?} selects {:?}",
            update.dims(),
            update.elem_count(),
            dims,
            sliced
        )
    }
    let mut out = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let values = update.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let step = strides(&dims);
    let mut pos = vec![0usize; rank];
    for v in values.into_iter().take(count) {
        let at: usize = (0..rank).map(|d| picked[d][pos[d]] * step[d]).sum();
        out[at] = v;
        for d in (0..rank).rev() {
            pos[d] += 1;
            if pos[d] < picked[d].len() {
                break;
            }
            pos[d] = 0;
        }
    }
    Tensor::from_vec(out, dims, &Device::Cpu)?.to_dtype(x.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(begin: Vec<i64>, end: Vec<i64>, stride: Vec<i64>) -> SliceSpec {
        SliceSpec { begin, end, stride, ..SliceSpec::default() }
    }

    /// Against a hand-written numpy equivalent: `x[1:4:2, ::-1] = u` on a 4x3 matrix.
    #[test]
    fn strided_and_reversed_axes() {
        let x = Tensor::arange(0f32, 12., &Device::Cpu).unwrap().reshape((4, 3)).unwrap();
        let u = Tensor::new(&[[-1f32, -2., -3.], [-4., -5., -6.]], &Device::Cpu).unwrap();
        let mut s = spec(vec![1, 0], vec![4, 0], vec![2, -1]);
        s.end_mask = vec![false, true];
        s.begin_mask = vec![false, true];
        let y = update_slice(&x, &u, &s).unwrap().to_vec2::<f32>().unwrap();
        // numpy: rows 1 and 3, columns 2, 1, 0 in that order.
        assert_eq!(
            y,
            vec![vec![0., 1., 2.], vec![-3., -2., -1.], vec![6., 7., 8.], vec![-6., -5., -4.]]
        );
    }

    #[test]
    fn squeezed_axis_and_int_dtype() {
        let x = Tensor::zeros((2, 3), DType::I64, &Device::Cpu).unwrap();
        let u = Tensor::new(&[7i64, 8, 9], &Device::Cpu).unwrap();
        let mut s = spec(vec![-1, 0], vec![0, 3], vec![]);
        s.squeeze_mask = vec![true, false];
        let y = update_slice(&x, &u, &s).unwrap();
        assert_eq!(y.dtype(), DType::I64);
        assert_eq!(y.to_vec2::<i64>().unwrap(), vec![vec![0, 0, 0], vec![7, 8, 9]]);
    }

    #[test]
    fn wrong_update_shape_is_an_error_naming_both_shapes() {
        let x = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let u = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        let err = update_slice(&x, &u, &spec(vec![0, 0], vec![1, 3], vec![])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[4]") && msg.contains("[1, 3]"), "{msg}");
    }
}
