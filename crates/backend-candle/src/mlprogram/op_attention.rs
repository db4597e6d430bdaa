//! iOS18 `scaled_dot_product_attention`: `softmax(Q Kᵀ / sqrt(E) + mask) V` over the last two
//! axes, with an optional float mask (added to the scores) or bool mask (false positions get
//! `-inf`), broadcast to `[B, *, L, S]`.

use coreml_format::{Argument, Operation, ScalarType, ValueType};
use inference_api::Result;

use super::Builder;
use super::func::arg;
use crate::mlprogram::ops;

/// The element type of the value bound to `input`, when the program declares it.
fn input_dtype(b: &Builder<'_>, op: &Operation, input: &str) -> Option<ScalarType> {
    let ty = |t: &ValueType| match t {
        ValueType::Tensor { dtype, .. } => Some(*dtype),
        _ => None,
    };
    match op.input(input)? {
        Argument::Value(v) => Some(v.dtype),
        Argument::Name(n) => {
            if let Some(f) = b.func.inputs.iter().find(|f| &f.name == n) {
                return ty(&f.ty);
            }
            let p = b.func.block.producer(n)?;
            ty(&p.outputs.iter().find(|o| &o.name == n)?.ty)
        }
    }
}

/// `scaled_dot_product_attention` (no dropout, not causal: the op has neither).
pub(super) fn sdpa(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let mut inputs = vec![b.var(i, op, "query")?, b.var(i, op, "key")?, b.var(i, op, "value")?];
    let has_mask = op.inputs.contains_key("attn_mask");
    let bool_mask = has_mask && input_dtype(b, op, "attn_mask") == Some(ScalarType::Bool);
    if has_mask {
        inputs.push(b.var(i, op, "attn_mask")?);
    }
    b.push_fn(i, op, inputs, move |a| {
        let (q, k, v) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
        if q.rank() < 3 || k.rank() != q.rank() || v.rank() != q.rank() {
            candle_core::bail!(
                "query, key and value must share a rank of at least 3; got {:?}, {:?}, {:?}",
                q.dims(),
                k.dims(),
                v.dims()
            )
        }
        let e = q.dims()[q.rank() - 1];
        let scale = 1.0 / (e as f64).sqrt();
        let mut scores = (ops::matmul(q, k, false, true)? * scale)?;
        if has_mask {
            let m = arg(a, 3)?;
            let m = if bool_mask {
                let ninf = f32::NEG_INFINITY;
                super::func::map(m, move |x| if x != 0.0 { 0.0 } else { ninf })?
            } else {
                m.clone()
            };
            scores = scores.broadcast_add(&m)?;
        }
        let w = ops::softmax(&scores, -1)?;
        Ok(vec![ops::matmul(&w, v, false, false)?])
    });
    Ok(())
}
