//! Conv translation for the plan builder: MIL conv on the shared `Conv2d` kernel with a
//! preceding zero `pad` folded into its padding and a following activation fused into its
//! epilogue (including coremltools' three-op hard-swish and a lone hard sigmoid).

use std::sync::Arc;

use coreml_format::{Argument, Operation};
use inference_api::Result;

use super::Builder;
use crate::conv_op::ConvOp;
use crate::mlprogram::plan::Kind;
use kernels::{Activation, Conv2d, Padding};

/// A fused activation for an op that follows a conv, when the kernels have one.
pub(super) fn fusable_activation(
    b: &mut Builder<'_>,
    j: usize,
    op: &Operation,
) -> Result<Option<Activation>> {
    Ok(match op.op_type.as_str() {
        "relu" => Some(Activation::Relu),
        "relu6" => Some(Activation::Relu6),
        "sigmoid" => Some(Activation::Sigmoid),
        "silu" => Some(Activation::Silu),
        "gelu" => match b.string(j, op, "mode")?.as_deref() {
            None | Some("EXACT") => Some(Activation::Gelu),
            _ => None,
        },
        "sigmoid_hard" if is_torch_hard_sigmoid(b, j, op)? => Some(Activation::HardSigmoid),
        "clip" => match (b.scalar(j, op, "alpha")?, b.scalar(j, op, "beta")?) {
            (Some(lo), Some(hi)) if lo == 0.0 && hi == 6.0 => Some(Activation::Relu6),
            _ => None,
        },
        _ => None,
    })
}

/// True for `sigmoid_hard` with PyTorch's hard-sigmoid constants (alpha 1/6, beta 1/2).
pub(super) fn is_torch_hard_sigmoid(b: &mut Builder<'_>, j: usize, op: &Operation) -> Result<bool> {
    let alpha = b.scalar(j, op, "alpha")?.unwrap_or(0.2);
    let beta = b.scalar(j, op, "beta")?.unwrap_or(0.5);
    Ok(alpha == 1.0 / 6.0 && beta == 0.5)
}

/// The ops after `from` that read `name`, with their indices.
fn consumers<'o>(ops: &'o [Operation], from: usize, name: &str) -> Vec<(usize, &'o Operation)> {
    ops.iter()
        .enumerate()
        .skip(from + 1)
        .filter(|(_, o)| {
            o.inputs.values().flatten().any(|a| matches!(a, Argument::Name(n) if n == name))
        })
        .collect()
}

/// coremltools' hard-swish from the conv output's single consumer `next` (op `j`):
/// `w = thresholded_relu(x, alpha = -3)`, `y = sigmoid_hard(w, 1/6, 1/2)`, `mul(w, y)` (either
/// order), with `w` read by exactly those two and `y` by the `mul` alone, neither a block
/// output. Returns the indices of the `sigmoid_hard` and the `mul`.
pub(super) fn hard_swish_chain(
    b: &mut Builder<'_>,
    j: usize,
    next: &Operation,
) -> Result<Option<(usize, usize)>> {
    if next.op_type != "thresholded_relu" || b.scalar(j, next, "alpha")? != Some(-3.0) {
        return Ok(None);
    }
    let ops = &b.func.block.operations;
    let outputs = &b.func.block.outputs;
    let w = next.output_name().unwrap_or_default().to_string();
    if b.uses.get(w.as_str()) != Some(&2) || outputs.contains(&w) {
        return Ok(None);
    }
    let users = consumers(ops, j, &w);
    let Some(&(hs, hard)) = users.iter().find(|(_, o)| o.op_type == "sigmoid_hard") else {
        return Ok(None);
    };
    let Some(&(m, mul)) = users.iter().find(|(_, o)| o.op_type == "mul") else {
        return Ok(None);
    };
    let y = hard.output_name().unwrap_or_default().to_string();
    let pair = (mul.input_name("x"), mul.input_name("y"));
    let ok = hard.input_name("x") == Some(w.as_str())
        && b.uses.get(y.as_str()) == Some(&1)
        && !outputs.contains(&y)
        && (pair == (Some(w.as_str()), Some(y.as_str()))
            || pair == (Some(y.as_str()), Some(w.as_str())))
        && m > hs;
    if !ok || !is_torch_hard_sigmoid(b, hs, hard)? {
        return Ok(None);
    }
    Ok(Some((hs, m)))
}

pub(super) fn compile_conv(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let w = b.param(i, op, "weight")?.ok_or_else(|| b.bad(i, op, "no weight"))?;
    if w.shape.len() == 3 {
        return compile_conv1d(b, i, op, &w);
    }
    let &[out, cig, kh, kw] = w.shape.as_slice() else {
        return Err(b.unsupported(
            i,
            op,
            format!("only 1-D and 2-D conv; weight shape {:?}", w.shape),
        ));
    };
    let weight = w.to_f32_vec().ok_or_else(|| b.bad(i, op, "weight is not numeric"))?;
    let bias = b.param(i, op, "bias")?.and_then(|v| v.to_f32_vec());
    let pair = |v: Option<Vec<usize>>, what: &str| -> std::result::Result<(usize, usize), String> {
        match v.as_deref() {
            None => Ok((1, 1)),
            Some(&[a, b]) => Ok((a, b)),
            Some(other) => Err(format!("`{what}` {other:?} is not two values")),
        }
    };
    let strides = b.usizes(i, op, "strides")?;
    let stride = pair(strides, "strides").map_err(|e| b.bad(i, op, e))?;
    let dilations = b.usizes(i, op, "dilations")?;
    let dilation = pair(dilations, "dilations").map_err(|e| b.bad(i, op, e))?;
    let groups = b.ints(i, op, "groups")?.and_then(|g| g.first().copied()).unwrap_or(1);
    let groups = usize::try_from(groups).map_err(|_| b.bad(i, op, "negative groups"))?;
    let pad_type = b.string(i, op, "pad_type")?.unwrap_or_else(|| "valid".into());
    let mut pads = match pad_type.as_str() {
        "valid" => [0; 4],
        "custom" => match b.usizes(i, op, "pad")?.as_deref() {
            Some(&[t, bo, l, r]) => [t, bo, l, r],
            other => return Err(b.bad(i, op, format!("custom pad {other:?} is not 4 values"))),
        },
        "same" => [0; 4],
        other => return Err(b.unsupported(i, op, format!("pad_type `{other}`"))),
    };
    let mut x_name = op.input_name("x").map(str::to_string);
    // Fold a preceding zero `pad` of H/W into the conv's explicit padding.
    if pad_type != "same"
        && let Some(xn) = x_name.clone()
        && b.uses.get(xn.as_str()) == Some(&1)
        && let Some(p) = b.func.block.producer(&xn)
        && p.op_type == "pad"
        && !b.func.block.outputs.contains(&xn)
    {
        let j = b.func.block.operations.iter().position(|o| std::ptr::eq(o, p)).unwrap_or(0);
        let mode = b.string(j, p, "mode")?.unwrap_or_else(|| "constant".into());
        let value = b.scalar(j, p, "constant_val")?.unwrap_or(0.0);
        let pp = b.usizes(j, p, "pad")?.unwrap_or_default();
        let hw = match pp.as_slice() {
            [t, bo, l, r] => Some([*t, *bo, *l, *r]),
            [rest @ .., t, bo, l, r] if rest.iter().all(|&v| v == 0) => Some([*t, *bo, *l, *r]),
            _ => None,
        };
        if let (Some(hw), "constant", 0.0) = (hw, mode.as_str(), value)
            && let Some(inner) = p.input_name("x")
        {
            for k in 0..4 {
                pads[k] += hw[k];
            }
            x_name = Some(inner.to_string());
        }
    }
    let padding = if pad_type == "same" { Padding::Same } else { Padding::Explicit(pads) };
    // Fuse the single consumer when it is an activation the kernels have.
    let mut act = Activation::None;
    let mut out_op = op;
    let out_name = op.output_name().unwrap_or_default().to_string();
    if b.uses.get(out_name.as_str()) == Some(&1) && !b.func.block.outputs.contains(&out_name) {
        let ops = &b.func.block.operations;
        if let Some((j, next)) = ops.iter().enumerate().skip(i + 1).find(|(_, o)| {
            o.inputs.values().flatten().any(|a| matches!(a, Argument::Name(n) if *n == out_name))
        }) && next.input_name("x") == Some(out_name.as_str())
        {
            if let Some((hs, m)) = hard_swish_chain(b, j, next)? {
                act = Activation::HardSwish;
                out_op = &ops[m];
                for k in [j, hs, m] {
                    b.skip[k] = true;
                }
            } else if let Some(a) = fusable_activation(b, j, next)? {
                act = a;
                out_op = next;
                b.skip[j] = true;
            }
        }
    }
    let conv =
        Conv2d::new(weight, [out, cig, kh, kw], bias, stride, dilation, groups, padding, act)
            .map_err(|e| b.bad(i, op, e))?;
    let x = match x_name {
        Some(n) => b.slot_for(i, op, &n)?,
        None => b.var(i, op, "x")?,
    };
    b.push(i, out_op, Kind::Conv(ConvOp(Arc::new(conv))), vec![x]);
    Ok(())
}

/// A 1-D conv (`x` `[n, c, length]`, weight `[out, c / groups, k]`) on the 2-D kernel with a
/// unit height: the input is viewed as `[n, c, 1, length]` and the result reshaped back.
fn compile_conv1d(
    b: &mut Builder<'_>,
    i: usize,
    op: &Operation,
    w: &coreml_format::ConstValue,
) -> Result<()> {
    let &[out, cig, k] = w.shape.as_slice() else {
        return Err(b.bad(i, op, format!("1-D weight shape {:?}", w.shape)));
    };
    let weight = w.to_f32_vec().ok_or_else(|| b.bad(i, op, "weight is not numeric"))?;
    let bias = b.param(i, op, "bias")?.and_then(|v| v.to_f32_vec());
    let one = |v: Option<Vec<usize>>, what: &str| match v.as_deref() {
        None => Ok(1),
        Some(&[a]) => Ok(a),
        Some(other) => Err(format!("`{what}` {other:?} is not one value")),
    };
    let strides = b.usizes(i, op, "strides")?;
    let stride = one(strides, "strides").map_err(|e| b.bad(i, op, e))?;
    let dilations = b.usizes(i, op, "dilations")?;
    let dilation = one(dilations, "dilations").map_err(|e| b.bad(i, op, e))?;
    let groups = b.ints(i, op, "groups")?.and_then(|g| g.first().copied()).unwrap_or(1);
    let groups = usize::try_from(groups).map_err(|_| b.bad(i, op, "negative groups"))?;
    let padding = match b.string(i, op, "pad_type")?.as_deref().unwrap_or("valid") {
        "valid" => Padding::Explicit([0; 4]),
        "same" => Padding::Same,
        "custom" => match b.usizes(i, op, "pad")?.as_deref() {
            Some(&[l, r]) => Padding::Explicit([0, 0, l, r]),
            other => return Err(b.bad(i, op, format!("custom 1-D pad {other:?} is not 2 values"))),
        },
        other => return Err(b.unsupported(i, op, format!("pad_type `{other}`"))),
    };
    let conv = Conv2d::new(
        weight,
        [out, cig, 1, k],
        bias,
        (1, stride),
        (1, dilation),
        groups,
        padding,
        Activation::None,
    )
    .map_err(|e| b.bad(i, op, e))?;
    let conv = ConvOp(Arc::new(conv));
    let x = b.var(i, op, "x")?;
    b.push_fn(i, op, vec![x], move |a| {
        let x = super::func::arg(a, 0)?;
        let &[n, c, len] = x.dims() else {
            candle_core::bail!("1-D conv: input shape {:?} is not [n, c, length]", x.dims())
        };
        let y = x.reshape((n, c, 1, len))?.contiguous()?.apply_op1_no_bwd(&conv)?;
        let (n, o, _, l) = y.dims4()?;
        Ok(vec![y.reshape((n, o, l))?])
    });
    Ok(())
}
