//! iOS17 activation quantization: `quantize` (`clip(round(x / scale) + zero_point)` into
//! int8/uint8) and `dequantize` (`scale * (q - zero_point)`), per tensor or along one axis.
//! Values stay f32 inside the executor; a quantized tensor holds its integer values.

use std::sync::Arc;

use candle_core::Result as CResult;
use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, around, tensor, values};
use crate::mlprogram::ops::axis;

/// Scale and zero point of one op: scalars, or vectors along `axis`.
struct Affine {
    scale: Vec<f32>,
    zero: Vec<f32>,
    axis: Option<i64>,
}

impl Affine {
    fn read(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<Affine> {
        let scale = b.floats(i, op, "scale")?.ok_or_else(|| b.bad(i, op, "no `scale`"))?;
        let zero = b.floats(i, op, "zero_point")?.unwrap_or_else(|| vec![0.0]);
        let axis = b.ints(i, op, "axis")?.and_then(|v| v.first().copied());
        if scale.is_empty() || zero.is_empty() {
            return Err(b.bad(i, op, "empty `scale` or `zero_point`"));
        }
        if (scale.len() > 1 || zero.len() > 1) && axis.is_none() {
            return Err(b.bad(i, op, "vector `scale`/`zero_point` without an `axis`"));
        }
        if scale.len() > 1 && zero.len() > 1 && scale.len() != zero.len() {
            return Err(b.bad(
                i,
                op,
                format!("{} scales but {} zero points", scale.len(), zero.len()),
            ));
        }
        Ok(Affine { scale, zero, axis })
    }

    /// Applies `f(value, scale, zero_point)` to every element of `x`.
    fn apply(
        &self,
        x: &candle_core::Tensor,
        f: impl Fn(f32, f32, f32) -> f32,
    ) -> CResult<candle_core::Tensor> {
        let v = values(x)?;
        let dims = x.dims();
        let (dim, inner) = match self.axis {
            Some(a) => {
                let (_, len, inner) = around(dims, axis(a, dims.len())?);
                (len, inner)
            }
            None => (1, 1),
        };
        for p in [&self.scale, &self.zero] {
            if p.len() != 1 && p.len() != dim {
                candle_core::bail!("{} parameters for an axis of {dim}", p.len())
            }
        }
        let pick = |p: &[f32], c: usize| if p.len() == 1 { p[0] } else { p[c] };
        let out = v
            .iter()
            .enumerate()
            .map(|(e, &q)| {
                let c = (e / inner.max(1)) % dim.max(1);
                f(q, pick(&self.scale, c), pick(&self.zero, c))
            })
            .collect();
        tensor(out, dims)
    }
}

/// `quantize`: `clip(round_half_even(x / scale) + zero_point)` to the range of `output_dtype`.
pub(super) fn quantize(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let (lo, hi) = match b.string(i, op, "output_dtype")?.as_deref() {
        Some("int8") => (-128.0, 127.0),
        Some("uint8") => (0.0, 255.0),
        other => return Err(b.unsupported(i, op, format!("quantize to {other:?}"))),
    };
    let p = Arc::new(Affine::read(b, i, op)?);
    let x = b.var(i, op, "input")?;
    b.push_fn(i, op, vec![x], move |a| {
        let y = p.apply(arg(a, 0)?, |x, s, z| ((x / s).round_ties_even() + z).clamp(lo, hi))?;
        Ok(vec![y])
    });
    Ok(())
}

/// `dequantize`: `scale * (input - zero_point)`.
pub(super) fn dequantize(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let p = Arc::new(Affine::read(b, i, op)?);
    let x = b.var(i, op, "input")?;
    b.push_fn(i, op, vec![x], move |a| Ok(vec![p.apply(arg(a, 0)?, |q, s, z| s * (q - z))?]));
    Ok(())
}
