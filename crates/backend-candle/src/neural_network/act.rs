//! Activation, unary and softmax layers: `activation` (every nonlinearity of the spec),
//! `unary`, `clip`, `gelu`, the element-wise unary ND layers, `softmax` and `softmaxND`.

use coreml_format::proto::{self as pb, NeuralNetworkLayer as Layer};
use inference_api::Result;

use super::{Emitter, float, floats, int, name, string};

/// A one-input layer computed by one MIL op with extra parameters.
fn simple(
    e: &mut Emitter,
    l: &Layer,
    op_type: &str,
    params: Vec<(&str, Vec<coreml_format::Argument>)>,
) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let mut inputs = vec![("x", name(&x))];
    inputs.extend(params);
    let y = e.op(op_type, inputs, rank);
    e.out(l, y)
}

/// A per-channel parameter (`[C]`, or one value for every channel) as a MIL const of shape
/// `[C]`.
fn per_channel(e: &Emitter, w: Option<&pb::WeightParams>, what: &str) -> Result<Vec<f32>> {
    let w = w.ok_or_else(|| e.bad(format!("no {what}")))?;
    let n = if !w.float_value.is_empty() {
        w.float_value.len()
    } else if !w.float16_value.is_empty() {
        w.float16_value.len() / 2
    } else {
        return Err(e.bad(format!("{what} has no float values")));
    };
    e.weights(Some(w), what, n, n)
}

/// `activation`: every nonlinearity of the spec, each on its MIL op.
pub(super) fn activation(e: &mut Emitter, l: &Layer, p: &pb::ActivationParams) -> Result<()> {
    use pb::activation_params::NonlinearityType as N;
    let Some(kind) = &p.nonlinearity_type else {
        return Err(e.bad("activation without a nonlinearity"));
    };
    match kind {
        N::ReLu(_) => simple(e, l, "relu", vec![]),
        N::LeakyReLu(a) => simple(e, l, "leaky_relu", vec![("alpha", float(a.alpha))]),
        N::ThresholdedReLu(a) => simple(e, l, "thresholded_relu", vec![("alpha", float(a.alpha))]),
        N::Tanh(_) => simple(e, l, "tanh", vec![]),
        N::ScaledTanh(a) => {
            simple(e, l, "scaled_tanh", vec![("alpha", float(a.alpha)), ("beta", float(a.beta))])
        }
        N::Sigmoid(_) => simple(e, l, "sigmoid", vec![]),
        N::SigmoidHard(a) => {
            simple(e, l, "sigmoid_hard", vec![("alpha", float(a.alpha)), ("beta", float(a.beta))])
        }
        N::Linear(a) => simple(
            e,
            l,
            "linear_activation",
            vec![("alpha", float(a.alpha)), ("beta", float(a.beta))],
        ),
        N::Elu(a) => simple(e, l, "elu", vec![("alpha", float(a.alpha))]),
        N::Softsign(_) => simple(e, l, "softsign", vec![]),
        N::Softplus(_) => simple(e, l, "softplus", vec![]),
        N::PReLu(a) => {
            let alpha = per_channel(e, a.alpha.as_ref(), "alpha")?;
            let n = alpha.len();
            simple(e, l, "prelu", vec![("alpha", floats(alpha, vec![n]))])
        }
        N::ParametricSoftplus(a) => {
            let alpha = per_channel(e, a.alpha.as_ref(), "alpha")?;
            let beta = per_channel(e, a.beta.as_ref(), "beta")?;
            let (na, nb) = (alpha.len(), beta.len());
            simple(
                e,
                l,
                "softplus_parametric",
                vec![("alpha", floats(alpha, vec![na])), ("beta", floats(beta, vec![nb]))],
            )
        }
    }
}

/// `unary`: `f(scale * x + shift)` for sqrt, rsqrt, inverse, power, exp, log, abs, threshold.
pub(super) fn unary(e: &mut Emitter, l: &Layer, p: &pb::UnaryFunctionLayerParams) -> Result<()> {
    use pb::unary_function_layer_params::Operation as O;
    let (mut x, rank) = e.input(l, 0)?;
    // The spec's defaults: scale 1 and epsilon 1e-6 when not set.
    let scale = if p.scale == 0.0 { 1.0 } else { p.scale };
    let eps = if p.epsilon == 0.0 { 1e-6 } else { p.epsilon };
    if scale != 1.0 {
        x = e.op("mul", vec![("x", name(&x)), ("y", float(scale))], rank);
    }
    if p.shift != 0.0 {
        x = e.op("add", vec![("x", name(&x)), ("y", float(p.shift))], rank);
    }
    let op = O::try_from(p.r#type).map_err(|_| e.bad(format!("unary type {}", p.r#type)))?;
    let mut inputs = vec![("x", name(&x))];
    let op_type = match op {
        O::Sqrt => "sqrt",
        O::Rsqrt => {
            inputs.push(("epsilon", float(eps)));
            "rsqrt"
        }
        O::Inverse => {
            inputs.push(("epsilon", float(eps)));
            "inverse"
        }
        O::Power => {
            inputs = vec![("x", name(&x)), ("y", float(p.alpha))];
            "pow"
        }
        O::Exp => "exp",
        O::Log => {
            inputs.push(("epsilon", float(eps)));
            "log"
        }
        O::Abs => "abs",
        O::Threshold => {
            inputs.push(("alpha", float(p.alpha)));
            "threshold"
        }
    };
    let y = e.op(op_type, inputs, rank);
    e.out(l, y)
}

/// `clip`: clamps to `[minVal, maxVal]`.
pub(super) fn clip(e: &mut Emitter, l: &Layer, p: &pb::ClipLayerParams) -> Result<()> {
    simple(e, l, "clip", vec![("alpha", float(p.min_val)), ("beta", float(p.max_val))])
}

/// `gelu`: exact, tanh or sigmoid approximation.
pub(super) fn gelu(e: &mut Emitter, l: &Layer, p: &pb::GeluLayerParams) -> Result<()> {
    use pb::gelu_layer_params::GeluMode as G;
    let mode = match G::try_from(p.mode) {
        Ok(G::Exact) => "EXACT",
        Ok(G::TanhApproximation) => "TANH_APPROXIMATION",
        Ok(G::SigmoidApproximation) => "SIGMOID_APPROXIMATION",
        Err(_) => return Err(e.bad(format!("gelu mode {}", p.mode))),
    };
    simple(e, l, "gelu", vec![("mode", string(mode))])
}

/// `softmax`: over the channel axis (the third from last).
pub(super) fn softmax(e: &mut Emitter, l: &Layer, _p: &pb::SoftmaxLayerParams) -> Result<()> {
    simple(e, l, "softmax", vec![("axis", int(-3))])
}

/// `softmaxND`: over `axis`.
pub(super) fn softmax_nd(e: &mut Emitter, l: &Layer, p: &pb::SoftmaxNdLayerParams) -> Result<()> {
    simple(e, l, "softmax", vec![("axis", int(p.axis))])
}

macro_rules! unary_nd {
    ($($f:ident, $params:ident, $op:literal;)*) => {$(
        #[doc = concat!("The element-wise `", $op, "` layer.")]
        pub(super) fn $f(e: &mut Emitter, l: &Layer, _p: &pb::$params) -> Result<()> {
            simple(e, l, $op, vec![])
        }
    )*};
}

unary_nd! {
    acos, AcosLayerParams, "acos";
    asin, AsinLayerParams, "asin";
    atan, AtanLayerParams, "atan";
    ceil, CeilLayerParams, "ceil";
    cos, CosLayerParams, "cos";
    cosh, CoshLayerParams, "cosh";
    erf, ErfLayerParams, "erf";
    exp2, Exp2LayerParams, "exp2";
    floor, FloorLayerParams, "floor";
    round, RoundLayerParams, "round";
    sign, SignLayerParams, "sign";
    sin, SinLayerParams, "sin";
    sinh, SinhLayerParams, "sinh";
    tan, TanLayerParams, "tan";
    tanh, TanhLayerParams, "tanh";
}
