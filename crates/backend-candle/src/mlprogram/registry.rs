//! The ML Program op registry: the one table that is both the executor's dispatch table (op
//! type -> compile function) and the coverage list `infer doctor` prints and
//! `docs/coreml-coverage.md` is generated from.

use std::sync::LazyLock;

use coreml_format::Operation;
use inference_api::Result;

use super::{
    Builder, act, attention, classify, compress, compress_sparse, conv_transpose, conv3d, einsum,
    elementwise, gather, layout, norm, pool_nd, quant, recurrent, reduce, resample, resize, select,
    slice_update, tensor_ops as t,
};

/// The op families of coremltools' MIL op definitions (and its op tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Family {
    /// `activation.py`.
    Activation,
    /// `elementwise_unary.py`.
    ElementwiseUnary,
    /// `elementwise_binary.py`.
    ElementwiseBinary,
    /// `reduction.py`.
    Reduction,
    /// `conv.py`.
    Conv,
    /// `pool.py`.
    Pool,
    /// `normalization.py`.
    Normalization,
    /// `linear.py`.
    Linear,
    /// `tensor_operation.py`.
    TensorOperation,
    /// `tensor_transformation.py`.
    TensorTransformation,
    /// `scatter_gather.py`.
    ScatterGather,
    /// `image_resizing.py`.
    ImageResizing,
    /// `constexpr_ops.py` / `compression.py`: weight decompression at prepare time.
    Compression,
    /// `recurrent.py`.
    Recurrent,
    /// `quantization_ops.py` (iOS17): activation quantization.
    Quantization,
    /// `transformers.py` (iOS18): fused attention.
    Transformers,
    /// `control_flow.py`: the ops of it without nested blocks.
    ControlFlow,
    /// `classify.py`: a classifier's last op.
    Classify,
    /// `const`.
    Const,
}

#[cfg_attr(not(test), allow(dead_code))]
impl Family {
    /// The family's name as coremltools' files spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Activation => "activation",
            Family::ElementwiseUnary => "elementwise_unary",
            Family::ElementwiseBinary => "elementwise_binary",
            Family::Reduction => "reduction",
            Family::Conv => "conv",
            Family::Pool => "pool",
            Family::Normalization => "normalization",
            Family::Linear => "linear",
            Family::TensorOperation => "tensor_operation",
            Family::TensorTransformation => "tensor_transformation",
            Family::ScatterGather => "scatter_gather",
            Family::ImageResizing => "image_resizing",
            Family::Recurrent => "recurrent",
            Family::Compression => "compression",
            Family::Quantization => "quantization",
            Family::Transformers => "transformers",
            Family::ControlFlow => "control_flow",
            Family::Classify => "classify",
            Family::Const => "const",
        }
    }
}

/// Translates one op into plan steps (or a prepare-time const).
pub(crate) type CompileFn = fn(&mut Builder<'_>, usize, &Operation) -> Result<()>;

/// One supported MIL op.
pub(crate) struct OpEntry {
    /// The MIL op type.
    pub(crate) name: &'static str,
    /// Its family.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) family: Family,
    /// How it is compiled.
    pub(crate) compile: CompileFn,
    /// What of the op is not covered (empty when all of it is).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) limits: &'static str,
}

const fn e(name: &'static str, family: Family, compile: CompileFn) -> OpEntry {
    OpEntry { name, family, compile, limits: "" }
}

const fn l(
    name: &'static str,
    family: Family,
    compile: CompileFn,
    limits: &'static str,
) -> OpEntry {
    OpEntry { name, family, compile, limits }
}

use Family as F;

/// Every op the executor runs, sorted by name (a test keeps it sorted and unique).
pub(crate) static REGISTRY: &[OpEntry] = &[
    e("abs", F::ElementwiseUnary, super::core_op),
    e("acos", F::ElementwiseUnary, elementwise::unary),
    e("add", F::ElementwiseBinary, super::core_op),
    e("argsort", F::TensorOperation, t::argsort),
    e("asin", F::ElementwiseUnary, elementwise::unary),
    e("atan", F::ElementwiseUnary, elementwise::unary),
    e("atanh", F::ElementwiseUnary, elementwise::unary),
    l("avg_pool", F::Pool, pool_nd::pool, "1-D, 2-D and 3-D"),
    e("band_part", F::TensorOperation, t::band_part),
    e("batch_norm", F::Normalization, super::core_op),
    e("batch_to_space", F::TensorTransformation, t::batch_to_space),
    e("cast", F::ElementwiseUnary, elementwise::cast),
    e("ceil", F::ElementwiseUnary, elementwise::unary),
    e("clamped_relu", F::Activation, act::clamped_relu),
    l(
        "classify",
        F::Classify,
        classify::classify,
        "scores as a [.., classes] tensor; int64 labels exact to 2^24; no string outputs",
    ),
    e("clip", F::ElementwiseUnary, super::core_op),
    e("concat", F::TensorOperation, layout::concat),
    e("const", F::Const, super::core_op),
    e("constexpr_affine_dequantize", F::Compression, compress::affine_dequantize),
    e("constexpr_blockwise_shift_scale", F::Compression, compress::blockwise_shift_scale),
    e("constexpr_cast", F::Compression, compress::cast),
    e("constexpr_lut_to_dense", F::Compression, compress::lut_to_dense),
    e("constexpr_lut_to_sparse", F::Compression, compress_sparse::lut_to_sparse),
    e(
        "constexpr_sparse_blockwise_shift_scale",
        F::Compression,
        compress_sparse::sparse_shift_scale,
    ),
    e("constexpr_sparse_to_dense", F::Compression, compress::sparse_to_dense),
    l("conv", F::Conv, conv3d::conv, "1-D, 2-D and 3-D; weight must be a const"),
    l(
        "conv_transpose",
        F::Conv,
        conv_transpose::conv_transpose,
        "1-D, 2-D and 3-D; weight must be a const",
    ),
    e("cos", F::ElementwiseUnary, elementwise::unary),
    e("cosh", F::ElementwiseUnary, elementwise::unary),
    e("crop", F::ImageResizing, resize::crop),
    l(
        "crop_resize",
        F::ImageResizing,
        resample::crop_resize,
        "sampling modes ALIGN_CORNERS and STRICT_ALIGN_CORNERS",
    ),
    e("cumsum", F::TensorOperation, t::cumsum),
    e("depth_to_space", F::TensorTransformation, t::depth_space),
    e("dequantize", F::Quantization, quant::dequantize),
    l("einsum", F::Linear, einsum::einsum, "two operands; no ellipsis or repeated letters"),
    e("elu", F::Activation, act::elu),
    e("equal", F::ElementwiseBinary, elementwise::binary),
    e("erf", F::ElementwiseUnary, elementwise::unary),
    e("exp", F::ElementwiseUnary, super::core_op),
    e("exp2", F::ElementwiseUnary, elementwise::unary),
    e("expand_dims", F::TensorTransformation, super::core_op),
    e("fill", F::TensorOperation, t::fill),
    e("fill_like", F::TensorOperation, t::fill_like),
    e("flatten2d", F::TensorOperation, t::flatten2d),
    e("floor", F::ElementwiseUnary, elementwise::unary),
    e("floor_div", F::ElementwiseBinary, elementwise::binary),
    e("gather", F::ScatterGather, gather::gather),
    e("gather_along_axis", F::ScatterGather, gather::gather_along_axis),
    e("gather_nd", F::ScatterGather, gather::gather_nd),
    e("gelu", F::Activation, act_gelu),
    e("greater", F::ElementwiseBinary, elementwise::binary),
    e("greater_equal", F::ElementwiseBinary, elementwise::binary),
    e("gru", F::Recurrent, recurrent::recurrent),
    e("identity", F::TensorOperation, super::core_op),
    e("instance_norm", F::Normalization, norm::instance_norm),
    e("inverse", F::ElementwiseUnary, elementwise::inverse),
    e("l2_norm", F::Normalization, norm::l2_norm),
    e("l2_pool", F::Pool, pool_nd::pool),
    e("layer_norm", F::Normalization, super::core_op),
    e("leaky_relu", F::Activation, act::leaky_relu),
    e("less", F::ElementwiseBinary, elementwise::binary),
    e("less_equal", F::ElementwiseBinary, elementwise::binary),
    e("linear", F::Linear, super::core_op),
    e("linear_activation", F::Activation, act::linear_activation),
    e("local_response_norm", F::Normalization, norm::local_response_norm),
    e("log", F::ElementwiseUnary, elementwise::log),
    e("logical_and", F::ElementwiseBinary, elementwise::binary),
    e("logical_not", F::ElementwiseUnary, elementwise::unary),
    e("logical_or", F::ElementwiseBinary, elementwise::binary),
    e("logical_xor", F::ElementwiseBinary, elementwise::binary),
    e("lstm", F::Recurrent, recurrent::recurrent),
    e("matmul", F::Linear, super::core_op),
    l("max_pool", F::Pool, pool_nd::pool, "1-D, 2-D and 3-D"),
    e("maximum", F::ElementwiseBinary, super::core_op),
    e("minimum", F::ElementwiseBinary, super::core_op),
    e("mod", F::ElementwiseBinary, elementwise::binary),
    e("mul", F::ElementwiseBinary, super::core_op),
    e("non_zero", F::TensorOperation, select::non_zero),
    e("not_equal", F::ElementwiseBinary, elementwise::binary),
    e("one_hot", F::TensorOperation, t::one_hot),
    e("pad", F::TensorOperation, super::core_op),
    e("pixel_shuffle", F::TensorTransformation, t::depth_space),
    e("pixel_unshuffle", F::TensorTransformation, t::depth_space),
    e("pow", F::ElementwiseBinary, elementwise::binary),
    e("prelu", F::Activation, act::prelu),
    e("quantize", F::Quantization, quant::quantize),
    e("range_1d", F::TensorOperation, t::range_1d),
    e("real_div", F::ElementwiseBinary, super::core_op),
    e("reduce_argmax", F::Reduction, reduce::arg_reduction),
    e("reduce_argmin", F::Reduction, reduce::arg_reduction),
    e("reduce_l1_norm", F::Reduction, reduce::reduction),
    e("reduce_l2_norm", F::Reduction, reduce::reduction),
    e("reduce_log_sum", F::Reduction, reduce::reduction),
    e("reduce_log_sum_exp", F::Reduction, reduce::reduction),
    e("reduce_max", F::Reduction, reduce::reduction),
    e("reduce_mean", F::Reduction, super::core_op),
    e("reduce_min", F::Reduction, reduce::reduction),
    e("reduce_prod", F::Reduction, reduce::reduction),
    e("reduce_sum", F::Reduction, reduce::reduction),
    e("reduce_sum_square", F::Reduction, reduce::reduction),
    e("relu", F::Activation, super::core_op),
    e("relu6", F::Activation, super::core_op),
    e("resample", F::ImageResizing, resample::resample),
    e("reshape", F::TensorTransformation, super::core_op),
    e("reshape_like", F::TensorTransformation, t::reshape_like),
    l("resize", F::ImageResizing, resample::resize, "resized_dims 1 or 2"),
    e("resize_bilinear", F::ImageResizing, resize::resize_bilinear),
    e("resize_nearest_neighbor", F::ImageResizing, resize::resize_nearest),
    e("reverse", F::TensorTransformation, t::reverse),
    e("reverse_sequence", F::TensorTransformation, select::reverse_sequence),
    e("rnn", F::Recurrent, recurrent::recurrent),
    e("round", F::ElementwiseUnary, elementwise::unary),
    e("rsqrt", F::ElementwiseUnary, elementwise::rsqrt),
    e("scaled_dot_product_attention", F::Transformers, attention::sdpa),
    e("scaled_tanh", F::Activation, act::scaled_tanh),
    e("scatter", F::ScatterGather, gather::scatter),
    e("scatter_along_axis", F::ScatterGather, gather::scatter_along_axis),
    e("scatter_nd", F::ScatterGather, gather::scatter_nd),
    e("select", F::ControlFlow, select::select),
    e("shape", F::TensorOperation, t::shape),
    e("sigmoid", F::Activation, super::core_op),
    e("sigmoid_hard", F::Activation, act::sigmoid_hard),
    e("sign", F::ElementwiseUnary, elementwise::unary),
    e("silu", F::Activation, super::core_op),
    e("sin", F::ElementwiseUnary, elementwise::unary),
    e("sinh", F::ElementwiseUnary, elementwise::unary),
    e("slice_by_index", F::TensorTransformation, super::core_op),
    e("slice_by_size", F::TensorTransformation, t::slice_by_size),
    e("slice_update", F::TensorTransformation, slice_update::slice_update),
    e("sliding_windows", F::TensorTransformation, layout::sliding_windows),
    e("softmax", F::Activation, super::core_op),
    e("softplus", F::Activation, act::softplus),
    e("softplus_parametric", F::Activation, act::softplus_parametric),
    e("softsign", F::Activation, act::softsign),
    e("space_to_batch", F::TensorTransformation, t::space_to_batch),
    e("space_to_depth", F::TensorTransformation, t::depth_space),
    e("split", F::TensorOperation, super::core_op),
    e("sqrt", F::ElementwiseUnary, super::core_op),
    e("square", F::ElementwiseUnary, elementwise::unary),
    e("squeeze", F::TensorTransformation, super::core_op),
    e("stack", F::TensorOperation, t::stack),
    e("sub", F::ElementwiseBinary, super::core_op),
    e("tan", F::ElementwiseUnary, elementwise::unary),
    e("tanh", F::ElementwiseUnary, super::core_op),
    e("threshold", F::ElementwiseUnary, elementwise::threshold),
    e("thresholded_relu", F::Activation, act::thresholded_relu),
    e("tile", F::TensorOperation, t::tile),
    l("topk", F::TensorOperation, t::topk, "sort=False"),
    e("transpose", F::TensorTransformation, layout::transpose),
    e("upsample_bilinear", F::ImageResizing, resize::upsample_bilinear),
    e("upsample_nearest_neighbor", F::ImageResizing, resize::upsample_nearest),
];

/// `gelu`: EXACT on the shared kernel, the approximations in `act`.
fn act_gelu(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    match b.string(i, op, "mode")?.as_deref() {
        None | Some("EXACT") => super::core_op(b, i, op),
        _ => act::gelu_approx(b, i, op),
    }
}

/// The registry entry for an op type.
pub(crate) fn lookup(op_type: &str) -> Option<&'static OpEntry> {
    REGISTRY.binary_search_by(|e| e.name.cmp(op_type)).ok().map(|k| &REGISTRY[k])
}

/// The op type as a `'static` name (for step labels); `"?"` for an op not in the registry.
pub(crate) fn static_name(op_type: &str) -> &'static str {
    lookup(op_type).map_or("?", |e| e.name)
}

/// Names of every supported op, in registry order (what `infer doctor` prints).
pub(crate) static SUPPORTED_OPS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| REGISTRY.iter().map(|e| e.name).collect());

/// MIL ops of the iOS15-iOS18 opsets the executor does not run, with the reason (listed in
/// the coverage doc; preparing a program that uses one fails naming it).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) static NOT_SUPPORTED: &[(&str, &str)] = &[
    ("affine", "image warping; not emitted for common model families"),
    ("cond", "control flow (nested blocks)"),
    ("conv_quantized", "legacy quantized conv"),
    ("list_gather", "control flow (lists)"),
    ("list_length", "control flow (lists)"),
    ("list_read", "control flow (lists)"),
    ("list_scatter", "control flow (lists)"),
    ("list_write", "control flow (lists)"),
    ("make_list", "control flow (lists)"),
    ("non_maximum_suppression", "data-dependent output size"),
    ("random_bernoulli", "random sampling"),
    ("random_categorical", "random sampling"),
    ("random_normal", "random sampling"),
    ("random_uniform", "random sampling"),
    ("read_state", "stateful models"),
    ("while_loop", "control flow (nested blocks)"),
];

/// The coverage document (`docs/coreml-coverage.md`), generated from [`REGISTRY`] and
/// [`NOT_SUPPORTED`].
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn coverage_markdown() -> String {
    let mut s = String::from(
        "# Core ML coverage of the CPU engine\n\n\
         Generated from the op registry (`crates/backend-candle/src/mlprogram/registry.rs`) by\n\
         `UPDATE_COVERAGE_DOC=1 cargo test -p backend-candle coverage_doc`; a test fails when this\n\
         file and the registry differ. `infer doctor` prints the same list.\n\n\
         ## How the ops are tested\n\n\
         - coremltools' own MIL op tests (`coremltools/converters/mil/mil/ops/tests/iOS14..iOS18`),\n\
           captured by `scripts/mil_conformance/capture.sh` and replayed by\n\
           `cargo test -p backend-candle --test mil_conformance -- --ignored` at each test's own\n\
           tolerance; `scripts/mil_conformance/pick_subset.py` copies passing cases into\n\
           `crates/backend-candle/tests/mil_cases/` for the `committed_cases` test.\n\
         - Unit and property tests beside the code (`compile_tests.rs`, `ops_tests.rs`) for the\n\
           conv, pooling, slicing and padding paths against naive references;\n\
           `registry_tests.rs` keeps the registry sorted and this file in step with it.\n\
         - Whole models against PyTorch (`tests/mlprogram_parity.rs`, the fixtures).\n\n\
         ## ML Program ops that run\n\n",
    );
    let mut fams: Vec<Family> = REGISTRY.iter().map(|e| e.family).collect();
    fams.sort();
    fams.dedup();
    for f in fams {
        s += &format!("### {}\n\n| op | not covered |\n| --- | --- |\n", f.name());
        for e in REGISTRY.iter().filter(|e| e.family == f) {
            let limits = if e.limits.is_empty() { "" } else { e.limits };
            s += &format!("| `{}` | {} |\n", e.name, limits);
        }
        s += "\n";
    }
    s += &format!(
        "{} ops in all.\n\n## ML Program ops that do not run\n\n\
         Preparing a program that uses one of these fails with `Unavailable`, naming the op and\n\
         where it is.\n\n| op | why |\n| --- | --- |\n",
        REGISTRY.len()
    );
    for (op, why) in NOT_SUPPORTED {
        s += &format!("| `{op}` | {why} |\n");
    }
    s += "\n## Features\n\n\
          - Inputs: fp32, fp16 and int32 multi-arrays (int32 values are exact up to 2^24: the\n\
            executor computes in f32).\n\
          - Image inputs: u8 `[height, width, channels]`, R, G, B order (or one gray channel),\n\
            whatever the package's colour layout, as on the Core ML engine; the executor hands\n\
            the program float planes in the package's layout (B, G, R for a BGR model) and the\n\
            image scale and bias run as the ops coremltools wrote. Image outputs come back as u8\n\
            `[height, width, channels]` RGB (rounded, clamped to 0-255).\n\
          - Flexible inputs (`RangeDim`, `EnumeratedShapes`) run at any size the description\n\
            allows; an output the description leaves without a shape takes its rank and fixed\n\
            sizes from the program's return type, so its shape follows the input.\n\
          - Classifiers (converted with a `ClassifierConfig`: `main` ends in `classify`): the\n\
            probabilities dictionary is an f32 `[.., classes]` tensor in label order, an int64\n\
            predicted label an i64 `[1]` tensor; a string label output is left out of the schema\n\
            (no string tensors): the labels are `IoSchema::classifier`, the predicted label is\n\
            the arg-max of the scores.\n\
          - Legacy NeuralNetwork `.mlmodel` files run by translation into an ML Program\n\
            `main` (their layer list and tests: the section on them\n\
            in `docs/models.md`).\n\
          - Weights: fp32, fp16, and the compression ops above, decompressed to f32 at prepare.\n";
    s
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
