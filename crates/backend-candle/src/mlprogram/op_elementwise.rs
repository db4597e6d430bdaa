//! Element-wise unary and binary ops (trigonometric, rounding, epsilon-guarded inverse/log/
//! rsqrt, comparisons and logic as 0/1 values, pow/mod/floor_div) and `cast`.

use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use crate::mlprogram::plan::Kind;

fn eps(b: &mut Builder<'_>, i: usize, op: &Operation, default: f32) -> Result<f32> {
    Ok(b.scalar(i, op, "epsilon")?.unwrap_or(default))
}

fn truth(v: bool) -> f32 {
    if v { 1.0 } else { 0.0 }
}

/// The unary ops that are plain functions of one value.
pub(super) fn unary(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let f: fn(f32) -> f32 = match op.op_type.as_str() {
        "acos" => f32::acos,
        "asin" => f32::asin,
        "atan" => f32::atan,
        "atanh" => f32::atanh,
        "ceil" => f32::ceil,
        "cos" => f32::cos,
        "cosh" => f32::cosh,
        "erf" => kernels::erf,
        "exp2" => f32::exp2,
        "floor" => f32::floor,
        "logical_not" => |x| truth(x == 0.0),
        "round" => f32::round_ties_even,
        "sign" => |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        },
        "sin" => f32::sin,
        "sinh" => f32::sinh,
        "square" => |x| x * x,
        "tan" => f32::tan,
        other => return Err(b.unsupported(i, op, format!("unary op `{other}`"))),
    };
    b.push_map(i, op, f)
}

/// `inverse`: `1 / (x + epsilon)`.
pub(super) fn inverse(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let e = eps(b, i, op, 1e-4)?;
    b.push_map(i, op, move |x| 1.0 / (x + e))
}

/// `log`: `ln(x + epsilon)`.
pub(super) fn log(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let e = eps(b, i, op, 1e-45)?;
    b.push_map(i, op, move |x| (x + e).ln())
}

/// `rsqrt`: `1 / sqrt(x + epsilon)`.
pub(super) fn rsqrt(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let e = eps(b, i, op, 1e-12)?;
    b.push_map(i, op, move |x| 1.0 / (x + e).sqrt())
}

/// `threshold`: `max(x, alpha)`.
pub(super) fn threshold(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let alpha = b.req_scalar(i, op, "alpha")?;
    b.push_map(i, op, move |x| x.max(alpha))
}

/// `cast`: values stay f32 inside the executor (a cast to fp16 rounds them to the nearest
/// fp16); integer targets truncate toward zero (as numpy's `astype`), `bool` maps non-zero to 1.
pub(super) fn cast(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    match b.string(i, op, "dtype")?.as_deref() {
        Some(t @ ("fp16" | "fp32" | "fp64")) => {
            let x = b.var(i, op, "x")?;
            b.push(i, op, Kind::Cast { fp16: t == "fp16" }, vec![x]);
            Ok(())
        }
        Some("int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32") => {
            b.push_map(i, op, f32::trunc)
        }
        Some("bool") => b.push_map(i, op, |x| truth(x != 0.0)),
        other => Err(b.unsupported(i, op, format!("cast to {other:?}"))),
    }
}

/// The binary ops with numpy broadcasting that have no candle equivalent.
pub(super) fn binary(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let f: fn(f32, f32) -> f32 = match op.op_type.as_str() {
        "equal" => |x, y| truth(x == y),
        "not_equal" => |x, y| truth(x != y),
        "greater" => |x, y| truth(x > y),
        "greater_equal" => |x, y| truth(x >= y),
        "less" => |x, y| truth(x < y),
        "less_equal" => |x, y| truth(x <= y),
        "logical_and" => |x, y| truth(x != 0.0 && y != 0.0),
        "logical_or" => |x, y| truth(x != 0.0 || y != 0.0),
        "logical_xor" => |x, y| truth((x != 0.0) != (y != 0.0)),
        "floor_div" => |x, y| (x / y).floor(),
        "mod" => |x, y| x - (x / y).floor() * y,
        "pow" => f32::powf,
        other => return Err(b.unsupported(i, op, format!("binary op `{other}`"))),
    };
    b.push_zip(i, op, f)
}
