//! Layers with weights or windows: `convolution` (grouped, dilated, deconvolution), `pooling`,
//! `innerProduct`, `batchedMatmul`, `batchnorm`, `padding`, `constantPad`, `upsample`, `lrn` and
//! `l2normalize`.

use coreml_format::Argument;
use coreml_format::proto::{self as pb, NeuralNetworkLayer as Layer};
use inference_api::Result;

use super::{Emitter, boolean, float, floats, int, ints, name, pair, string};

type Inputs<'a> = Vec<(&'a str, Vec<Argument>)>;

/// The MIL `pad_type` / `pad` of a NeuralNetwork `valid` or `same` padding over H and W.
fn pad_args<'a>(
    e: &Emitter,
    valid: Option<&pb::ValidPadding>,
    same: Option<&pb::SamePadding>,
) -> Result<Inputs<'a>> {
    if let Some(s) = same {
        if s.asymmetry_mode != pb::same_padding::SamePaddingMode::BottomRightHeavy as i32 {
            return Err(e.unsupported("TOP_LEFT_HEAVY same padding"));
        }
        return Ok(vec![("pad_type", string("same"))]);
    }
    let amounts =
        valid.and_then(|v| v.padding_amounts.as_ref()).map(|b| b.border_amounts.as_slice());
    let pads = match amounts {
        None | Some([]) => [0i64; 4],
        Some([h, w]) => [
            h.start_edge_size as i64,
            h.end_edge_size as i64,
            w.start_edge_size as i64,
            w.end_edge_size as i64,
        ],
        Some(other) => {
            return Err(e.bad(format!("{} padding border amounts (expected 2)", other.len())));
        }
    };
    Ok(vec![("pad_type", string("custom")), ("pad", ints(&pads))])
}

/// `convolution` and deconvolution: weights `[C_out, C_in / groups, kH, kW]` (deconvolution:
/// `[C_in, C_out / groups, kH, kW]`).
pub(super) fn convolution(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::ConvolutionLayerParams,
) -> Result<()> {
    use pb::convolution_layer_params::ConvolutionPaddingType as P;
    let (x, rank) = e.input(l, 0)?;
    if l.input.len() > 1 {
        return Err(e.unsupported("weights given as a second input"));
    }
    let groups = p.n_groups.max(1) as usize;
    let [kh, kw] = pair(&p.kernel_size, 3);
    let (kh, kw) = (kh as usize, kw as usize);
    let (cout, kc) = (p.output_channels as usize, p.kernel_channels as usize);
    let wshape = if p.is_deconvolution {
        vec![kc, cout / groups.max(1), kh, kw]
    } else {
        vec![cout, kc, kh, kw]
    };
    let count: usize = wshape.iter().product();
    let w = e.weights(p.weights.as_ref(), "weights", count, wshape[0])?;
    let mut inputs = vec![("x", name(&x)), ("weight", floats(w, wshape))];
    if p.has_bias {
        let b = e.weights(p.bias.as_ref(), "bias", cout, cout)?;
        inputs.push(("bias", floats(b, vec![cout])));
    }
    inputs.push(("strides", ints(&pair(&p.stride, 1))));
    inputs.push(("groups", int(groups as i64)));
    let (valid, same) = match &p.convolution_padding_type {
        Some(P::Valid(v)) => (Some(v), None),
        Some(P::Same(s)) => (None, Some(s)),
        None => (None, None),
    };
    inputs.extend(pad_args(e, valid, same)?);
    let op_type = if p.is_deconvolution {
        if let [oh, ow] = p.output_shape[..] {
            inputs.push(("output_shape", ints(&[1, cout as i64, oh as i64, ow as i64])));
        }
        "conv_transpose"
    } else {
        inputs.push(("dilations", ints(&pair(&p.dilation_factor, 1))));
        "conv"
    };
    let y = e.op(op_type, inputs, rank);
    e.out(l, y)
}

/// `pooling`: max or average, windowed or global, with valid / same / include-last-pixel
/// padding.
pub(super) fn pooling(e: &mut Emitter, l: &Layer, p: &pb::PoolingLayerParams) -> Result<()> {
    use pb::pooling_layer_params::{PoolingPaddingType as P, PoolingType as T};
    let (x, rank) = e.input(l, 0)?;
    let kind = T::try_from(p.r#type).map_err(|_| e.bad(format!("pooling type {}", p.r#type)))?;
    if kind == T::L2 {
        return Err(e.unsupported("L2 pooling"));
    }
    if p.global_pooling {
        let op = if kind == T::Max { "reduce_max" } else { "reduce_mean" };
        let inputs = vec![("x", name(&x)), ("axes", ints(&[-2, -1])), ("keep_dims", boolean(true))];
        let y = e.op(op, inputs, rank);
        return e.out(l, y);
    }
    let mut inputs = vec![
        ("x", name(&x)),
        ("kernel_sizes", ints(&pair(&p.kernel_size, 3))),
        ("strides", ints(&pair(&p.stride, 1))),
    ];
    match &p.pooling_padding_type {
        Some(P::Valid(v)) => inputs.extend(pad_args(e, Some(v), None)?),
        Some(P::Same(s)) => inputs.extend(pad_args(e, None, Some(s))?),
        Some(P::IncludeLastPixel(c)) => {
            // Caffe-style: symmetric padding, the output size rounded up.
            let [ph, pw] = pair(&c.padding_amounts, 0);
            inputs.push(("pad_type", string("custom")));
            inputs.push(("pad", ints(&[ph, ph, pw, pw])));
            inputs.push(("ceil_mode", boolean(true)));
        }
        None => inputs.push(("pad_type", string("valid"))),
    }
    let op = if kind == T::Max {
        "max_pool"
    } else {
        inputs.push(("exclude_padding_from_average", boolean(p.avg_pool_exclude_padding)));
        "avg_pool"
    };
    let y = e.op(op, inputs, rank);
    e.out(l, y)
}

/// `innerProduct`: `linear` over the last axis (rank 1-3) or over `C*H*W` (rank 4 and 5, the
/// result shaped `[..., C_out, 1, 1]`).
pub(super) fn inner_product(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::InnerProductLayerParams,
) -> Result<()> {
    if p.int8_dynamic_quantize {
        return Err(e.unsupported("int8 dynamic quantization"));
    }
    let (x, rank) = e.input(l, 0)?;
    let (cin, cout) = (p.input_channels as usize, p.output_channels as usize);
    let w = e.weights(p.weights.as_ref(), "weights", cin * cout, cout)?;
    let mut inputs = vec![("weight", floats(w, vec![cout, cin]))];
    if p.has_bias {
        let b = e.weights(p.bias.as_ref(), "bias", cout, cout)?;
        inputs.push(("bias", floats(b, vec![cout])));
    }
    let rank = rank.ok_or_else(|| e.unsupported("input of unknown rank"))?;
    let (pre, post): (Option<Vec<i64>>, Option<Vec<i64>>) = match rank {
        1..=3 => (None, None),
        4 => (Some(vec![0, -1]), Some(vec![0, -1, 1, 1])),
        5 => (Some(vec![0, 0, -1]), Some(vec![0, 0, -1, 1, 1])),
        r => return Err(e.bad(format!("input of rank {r}"))),
    };
    let x = match &pre {
        Some(s) => e.reshape(&x, s),
        None => x,
    };
    inputs.insert(0, ("x", name(&x)));
    let inner_rank = pre.as_ref().map_or(rank, Vec::len);
    let mut y = e.op("linear", inputs, Some(inner_rank));
    if let Some(s) = &post {
        y = e.reshape(&y, s);
    }
    e.out(l, y)
}

/// `batchedMatmul`: a matmul of two inputs, or `linear` with the layer's weight matrix.
pub(super) fn batched_matmul(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::BatchedMatMulLayerParams,
) -> Result<()> {
    if p.int8_dynamic_quantize {
        return Err(e.unsupported("int8 dynamic quantization"));
    }
    let (a, rank) = e.input(l, 0)?;
    if l.input.len() == 2 {
        let (b, rb) = e.input(l, 1)?;
        let inputs = vec![
            ("x", name(&a)),
            ("y", name(&b)),
            ("transpose_x", boolean(p.transpose_a)),
            ("transpose_y", boolean(p.transpose_b)),
        ];
        let y = e.op("matmul", inputs, rank.max(rb));
        return e.out(l, y);
    }
    if p.transpose_a {
        return Err(e.unsupported("transposeA with a weight matrix"));
    }
    let (cin, cout) =
        (p.weight_matrix_first_dimension as usize, p.weight_matrix_second_dimension as usize);
    // The weight is [C_in, C_out]; linear wants [C_out, C_in].
    let w = e.weights(p.weights.as_ref(), "weights", cin * cout, cin)?;
    let mut wt = vec![0f32; w.len()];
    for r in 0..cin {
        for c in 0..cout {
            wt[c * cin + r] = w[r * cout + c];
        }
    }
    let mut inputs = vec![("x", name(&a)), ("weight", floats(wt, vec![cout, cin]))];
    if p.has_bias {
        let b = e.weights(p.bias.as_ref(), "bias", cout, cout)?;
        inputs.push(("bias", floats(b, vec![cout])));
    }
    let y = e.op("linear", inputs, rank);
    e.out(l, y)
}

/// `batchnorm`: with given statistics, or instance normalization when computed per instance.
pub(super) fn batchnorm(e: &mut Emitter, l: &Layer, p: &pb::BatchnormLayerParams) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let c = p.channels as usize;
    let eps = if p.epsilon == 0.0 { 1e-5 } else { p.epsilon };
    let gamma = e.weights(p.gamma.as_ref(), "gamma", c, c)?;
    let beta = e.weights(p.beta.as_ref(), "beta", c, c)?;
    let mut inputs = vec![
        ("x", name(&x)),
        ("gamma", floats(gamma, vec![c])),
        ("beta", floats(beta, vec![c])),
        ("epsilon", float(eps)),
    ];
    let op = if p.compute_mean_var {
        if !p.instance_normalization {
            return Err(e.unsupported("batch statistics computed at run time"));
        }
        "instance_norm"
    } else {
        let mean = e.weights(p.mean.as_ref(), "mean", c, c)?;
        let var = e.weights(p.variance.as_ref(), "variance", c, c)?;
        inputs.push(("mean", floats(mean, vec![c])));
        inputs.push(("variance", floats(var, vec![c])));
        "batch_norm"
    };
    if rank.is_some_and(|r| r != 4) {
        return Err(e.unsupported(format!(
            "{op} on a rank-{} input (rank 4 is supported)",
            rank.unwrap_or(0)
        )));
    }
    let y = e.op(op, inputs, rank);
    e.out(l, y)
}

/// `padding`: constant, reflection or replication padding of H and W.
pub(super) fn padding_layer(e: &mut Emitter, l: &Layer, p: &pb::PaddingLayerParams) -> Result<()> {
    use pb::padding_layer_params::PaddingType as P;
    let (x, rank) = e.input(l, 0)?;
    let pads = match p.padding_amounts.as_ref().map(|b| b.border_amounts.as_slice()) {
        None | Some([]) => [0i64; 4],
        Some([h, w]) => [
            h.start_edge_size as i64,
            h.end_edge_size as i64,
            w.start_edge_size as i64,
            w.end_edge_size as i64,
        ],
        Some(other) => return Err(e.bad(format!("{} border amounts (expected 2)", other.len()))),
    };
    let mut inputs = vec![("x", name(&x)), ("pad", ints(&pads))];
    match &p.padding_type {
        Some(P::Constant(c)) => {
            inputs.push(("mode", string("constant")));
            inputs.push(("constant_val", float(c.value)));
        }
        Some(P::Reflection(_)) => inputs.push(("mode", string("reflect"))),
        Some(P::Replication(_)) => inputs.push(("mode", string("replicate"))),
        None => return Err(e.bad("no padding type")),
    }
    let y = e.op("pad", inputs, rank);
    e.out(l, y)
}

/// `constantPad`: constant padding of the trailing axes (`padAmounts` before/after pairs).
pub(super) fn constant_pad(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::ConstantPaddingLayerParams,
) -> Result<()> {
    if p.pad_to_given_output_size_mode {
        return Err(e.unsupported("padToGivenOutputSizeMode"));
    }
    let (x, rank) = e.input(l, 0)?;
    let pads: Vec<i64> = p.pad_amounts.iter().map(|&v| v as i64).collect();
    let inputs = vec![
        ("x", name(&x)),
        ("pad", ints(&pads)),
        ("mode", string("constant")),
        ("constant_val", float(p.value)),
    ];
    let y = e.op("pad", inputs, rank);
    e.out(l, y)
}

/// `upsample`: nearest neighbour or bilinear by integer (or fractional) factors.
pub(super) fn upsample(e: &mut Emitter, l: &Layer, p: &pb::UpsampleLayerParams) -> Result<()> {
    use pb::upsample_layer_params::{InterpolationMode as I, LinearUpsampleMode as M};
    let (x, rank) = e.input(l, 0)?;
    let (sh, sw) = match (&p.scaling_factor[..], &p.fractional_scaling_factor[..]) {
        ([h, w], _) => (*h as f32, *w as f32),
        (_, [h, w]) => (*h, *w),
        _ => (1.0, 1.0),
    };
    let mut inputs = vec![
        ("x", name(&x)),
        ("scale_factor_height", float(sh)),
        ("scale_factor_width", float(sw)),
    ];
    let op = match I::try_from(p.mode) {
        Ok(I::Nn) => "upsample_nearest_neighbor",
        Ok(I::Bilinear) => {
            let align = match M::try_from(p.linear_upsample_mode) {
                Ok(M::AlignCornersFalse) => false,
                // DEFAULT is the align-corners grid, as MIL's upsample_bilinear default.
                Ok(M::Default | M::AlignCornersTrue) => true,
                Err(_) => {
                    return Err(e.bad(format!("linear upsample mode {}", p.linear_upsample_mode)));
                }
            };
            inputs.push(("align_corners", boolean(align)));
            "upsample_bilinear"
        }
        Err(_) => return Err(e.bad(format!("upsample mode {}", p.mode))),
    };
    let y = e.op(op, inputs, rank);
    e.out(l, y)
}

/// `lrn`: local response normalization across channels.
pub(super) fn lrn(e: &mut Emitter, l: &Layer, p: &pb::LrnLayerParams) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let inputs = vec![
        ("x", name(&x)),
        ("size", int(p.local_size as i64)),
        ("alpha", float(p.alpha)),
        ("beta", float(p.beta)),
        ("k", float(p.k)),
    ];
    let y = e.op("local_response_norm", inputs, rank);
    e.out(l, y)
}

/// `l2normalize`: `x / sqrt(sum(x^2) + epsilon)` over C, H, W.
pub(super) fn l2normalize(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::L2NormalizeLayerParams,
) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let eps = if p.epsilon == 0.0 { 1e-6 } else { p.epsilon };
    let y = e.op("l2_norm", vec![("x", name(&x)), ("epsilon", float(eps))], rank);
    e.out(l, y)
}

/// `crop` with one input: border amounts cut from H and W. (The two-input form, cropping to the
/// second input's size at an offset, needs that size at prepare time and is not supported.)
pub(super) fn crop(e: &mut Emitter, l: &Layer, p: &pb::CropLayerParams) -> Result<()> {
    if l.input.len() != 1 {
        return Err(e.unsupported("crop to the size of a second input"));
    }
    let (x, rank) = e.input(l, 0)?;
    let (h, w) = match p.crop_amounts.as_ref().map(|b| b.border_amounts.as_slice()) {
        None | Some([]) => ([0i64; 2], [0i64; 2]),
        Some([h, w]) => (
            [h.start_edge_size as i64, h.end_edge_size as i64],
            [w.start_edge_size as i64, w.end_edge_size as i64],
        ),
        Some(other) => return Err(e.bad(format!("{} border amounts (expected 2)", other.len()))),
    };
    let inputs = vec![("x", name(&x)), ("crop_height", ints(&h)), ("crop_width", ints(&w))];
    let y = e.op("crop", inputs, rank);
    e.out(l, y)
}
