//! Element-wise layers: the legacy multi-input `add`, `multiply`, `average`, `max`, `min` (one
//! input with `alpha`), the ND `*Broadcastable` binaries, `scale`, `bias`, `loadConstant` and
//! `loadConstantND`.

use coreml_format::proto::{self as pb, NeuralNetworkLayer as Layer};
use inference_api::Result;

use super::{Emitter, float, floats, name};

/// Folds the inputs with `op`; a single input is combined with `alpha` instead.
fn fold(e: &mut Emitter, l: &Layer, op: &str, alpha: Option<f32>) -> Result<()> {
    let ins = e.inputs(l)?;
    let rank = ins.iter().map(|(_, r)| *r).max().flatten();
    let Some((first, _)) = ins.first() else { return Err(e.bad("no inputs")) };
    let mut acc = first.clone();
    if ins.len() == 1 {
        let Some(a) = alpha else { return Err(e.bad("needs at least two inputs")) };
        acc = e.op(op, vec![("x", name(&acc)), ("y", float(a))], rank);
    }
    for (x, _) in &ins[1..] {
        acc = e.op(op, vec![("x", name(&acc)), ("y", name(x))], rank);
    }
    e.out(l, acc)
}

/// `add`: the sum of the inputs (one input: `x + alpha`).
pub(super) fn add(e: &mut Emitter, l: &Layer, p: &pb::AddLayerParams) -> Result<()> {
    fold(e, l, "add", Some(p.alpha))
}

/// `multiply`: the product of the inputs (one input: `x * alpha`).
pub(super) fn multiply(e: &mut Emitter, l: &Layer, p: &pb::MultiplyLayerParams) -> Result<()> {
    fold(e, l, "mul", Some(p.alpha))
}

/// `average`: the mean of the inputs.
pub(super) fn average(e: &mut Emitter, l: &Layer, _p: &pb::AverageLayerParams) -> Result<()> {
    let n = l.input.len();
    if n < 2 {
        return Err(e.bad("needs at least two inputs"));
    }
    let ins = e.inputs(l)?;
    let rank = ins.iter().map(|(_, r)| *r).max().flatten();
    let mut acc = ins[0].0.clone();
    for (x, _) in &ins[1..] {
        acc = e.op("add", vec![("x", name(&acc)), ("y", name(x))], rank);
    }
    let y = e.op("mul", vec![("x", name(&acc)), ("y", float(1.0 / n as f32))], rank);
    e.out(l, y)
}

/// `max`: the element-wise maximum of the inputs.
pub(super) fn max(e: &mut Emitter, l: &Layer, _p: &pb::MaxLayerParams) -> Result<()> {
    fold(e, l, "maximum", None)
}

/// `min`: the element-wise minimum of the inputs.
pub(super) fn min(e: &mut Emitter, l: &Layer, _p: &pb::MinLayerParams) -> Result<()> {
    fold(e, l, "minimum", None)
}

macro_rules! broadcastable {
    ($($f:ident, $params:ident, $op:literal;)*) => {$(
        #[doc = concat!("The numpy-broadcasting binary layer computed by MIL `", $op, "`.")]
        pub(super) fn $f(e: &mut Emitter, l: &Layer, _p: &pb::$params) -> Result<()> {
            if l.input.len() != 2 {
                return Err(e.bad(format!("{} inputs (expected 2)", l.input.len())));
            }
            fold(e, l, $op, None)
        }
    )*};
}

broadcastable! {
    add_broadcastable, AddBroadcastableLayerParams, "add";
    subtract_broadcastable, SubtractBroadcastableLayerParams, "sub";
    multiply_broadcastable, MultiplyBroadcastableLayerParams, "mul";
    divide_broadcastable, DivideBroadcastableLayerParams, "real_div";
    max_broadcastable, MaxBroadcastableLayerParams, "maximum";
    min_broadcastable, MinBroadcastableLayerParams, "minimum";
    pow_broadcastable, PowBroadcastableLayerParams, "pow";
    floor_div_broadcastable, FloorDivBroadcastableLayerParams, "floor_div";
    mod_broadcastable, ModBroadcastableLayerParams, "mod";
}

/// A `scale`/`bias` parameter shape (`[1]`, `[C]`, `[1, H, W]` or `[C, H, W]`) as the shape that
/// broadcasts it over `[..., C, H, W]`.
fn chw_shape(e: &Emitter, shape: &[u64]) -> Result<Vec<usize>> {
    match shape {
        [] | [1] => Ok(vec![1]),
        [c] => Ok(vec![*c as usize, 1, 1]),
        [c, h, w] => Ok(vec![*c as usize, *h as usize, *w as usize]),
        other => Err(e.bad(format!("parameter shape {other:?} (expected [1], [C] or [C, H, W])"))),
    }
}

/// `scale`: `x * scale (+ bias)`, parameters broadcast over C, H, W.
pub(super) fn scale(e: &mut Emitter, l: &Layer, p: &pb::ScaleLayerParams) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let shape = chw_shape(e, &p.shape_scale)?;
    let n: usize = shape.iter().product();
    let s = e.weights(p.scale.as_ref(), "scale", n, shape[0])?;
    let mut y = e.op("mul", vec![("x", name(&x)), ("y", floats(s, shape))], rank);
    if p.has_bias {
        let shape = chw_shape(e, &p.shape_bias)?;
        let n: usize = shape.iter().product();
        let b = e.weights(p.bias.as_ref(), "bias", n, shape[0])?;
        y = e.op("add", vec![("x", name(&y)), ("y", floats(b, shape))], rank);
    }
    e.out(l, y)
}

/// `bias`: `x + bias`, broadcast over C, H, W.
pub(super) fn bias(e: &mut Emitter, l: &Layer, p: &pb::BiasLayerParams) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let shape = chw_shape(e, &p.shape)?;
    let n: usize = shape.iter().product();
    let b = e.weights(p.bias.as_ref(), "bias", n, shape[0])?;
    let y = e.op("add", vec![("x", name(&x)), ("y", floats(b, shape))], rank);
    e.out(l, y)
}

fn constant(
    e: &mut Emitter,
    l: &Layer,
    w: Option<&pb::WeightParams>,
    shape: Vec<usize>,
) -> Result<()> {
    let n: usize = shape.iter().product();
    let v = e.weights(w, "data", n, shape.first().copied().unwrap_or(1))?;
    let rank = shape.len();
    let y = e.op("identity", vec![("x", floats(v, shape))], Some(rank));
    e.out(l, y)
}

/// `loadConstant`: a `[C, H, W]` constant, given a batch axis (`[1, C, H, W]`).
pub(super) fn load_constant(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::LoadConstantLayerParams,
) -> Result<()> {
    let &[c, h, w] = p.shape.as_slice() else {
        return Err(e.bad(format!("shape {:?} (expected [C, H, W])", p.shape)));
    };
    constant(e, l, p.data.as_ref(), vec![1, c as usize, h as usize, w as usize])
}

/// `loadConstantND`: a constant of any shape.
pub(super) fn load_constant_nd(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::LoadConstantNdLayerParams,
) -> Result<()> {
    let shape = p.shape.iter().map(|&d| d as usize).collect();
    constant(e, l, p.data.as_ref(), shape)
}
