//! The NeuralNetwork layer table: the one list that is both the translator's dispatch table
//! (layer type -> translation) and what `infer doctor` and `docs/models.md` print.

use coreml_format::proto::{NeuralNetworkLayer, neural_network_layer::Layer as L};
use inference_api::{Error, Result};

use crate::ENGINE_NAME;

use super::{Emitter, act, conv, elementwise as ew, recurrent as rnn, shape};

/// Translates one layer when it is of the entry's type (`None` otherwise).
type Translate = fn(&mut Emitter, &NeuralNetworkLayer, &L) -> Option<Result<()>>;

/// One supported layer type.
pub(crate) struct LayerEntry {
    /// The layer type as the spec's `NeuralNetworkLayer.layer` field spells it.
    pub(crate) name: &'static str,
    /// What of the layer type is not covered (empty when all of it is).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) limits: &'static str,
    translate: Translate,
}

macro_rules! entry {
    ($name:literal, $variant:ident, $f:path, $limits:literal) => {
        LayerEntry {
            name: $name,
            limits: $limits,
            translate: |e, l, layer| match layer {
                L::$variant(p) => Some($f(e, l, p)),
                _ => None,
            },
        }
    };
    ($name:literal, $variant:ident, $f:path) => {
        entry!($name, $variant, $f, "")
    };
}

/// Every layer type the CPU engine runs, sorted by name (a test keeps it sorted).
pub(crate) static LAYERS: &[LayerEntry] = &[
    entry!("acos", Acos, act::acos),
    entry!("activation", Activation, act::activation),
    entry!("add", Add, ew::add),
    entry!("addBroadcastable", AddBroadcastable, ew::add_broadcastable),
    entry!("asin", Asin, act::asin),
    entry!("atan", Atan, act::atan),
    entry!("average", Average, ew::average),
    entry!("batchedMatmul", BatchedMatmul, conv::batched_matmul, "int8 dynamic quantization"),
    entry!("batchnorm", Batchnorm, conv::batchnorm, "computeMeanVar without instanceNormalization"),
    entry!(
        "biDirectionalLSTM",
        BiDirectionalLstm,
        rnn::bi_lstm,
        "coupledInputAndForgetGate; different activations per direction; no +-50 clip of gate pre-activations (matters for relu/linear gates only)"
    ),
    entry!("bias", Bias, ew::bias),
    entry!("ceil", Ceil, act::ceil),
    entry!("clip", Clip, act::clip),
    entry!("concat", Concat, shape::concat, "sequenceConcat"),
    entry!("concatND", ConcatNd, shape::concat_nd),
    entry!("constantPad", ConstantPad, conv::constant_pad, "padToGivenOutputSizeMode"),
    entry!(
        "convolution",
        Convolution,
        conv::convolution,
        "TOP_LEFT_HEAVY same padding; deconvolution with same padding"
    ),
    entry!("copy", Copy, rnn::copy),
    entry!("cos", Cos, act::cos),
    entry!("cosh", Cosh, act::cosh),
    entry!("crop", Crop, conv::crop, "two-input crop (to the second input's size)"),
    entry!("divideBroadcastable", DivideBroadcastable, ew::divide_broadcastable),
    entry!("erf", Erf, act::erf),
    entry!("exp2", Exp2, act::exp2),
    entry!("expandDims", ExpandDims, shape::expand_dims),
    entry!("flatten", Flatten, shape::flatten),
    entry!("flattenTo2D", FlattenTo2D, shape::flatten_to_2d),
    entry!("floor", Floor, act::floor),
    entry!("floorDivBroadcastable", FloorDivBroadcastable, ew::floor_div_broadcastable),
    entry!("gelu", Gelu, act::gelu),
    entry!(
        "gru",
        Gru,
        rnn::gru,
        "no +-50 clip of gate pre-activations (matters for relu/linear gates only)"
    ),
    entry!("innerProduct", InnerProduct, conv::inner_product, "int8 dynamic quantization"),
    entry!("l2normalize", L2normalize, conv::l2normalize),
    entry!("loadConstant", LoadConstant, ew::load_constant),
    entry!("loadConstantND", LoadConstantNd, ew::load_constant_nd),
    entry!("lrn", Lrn, conv::lrn),
    entry!("max", Max, ew::max),
    entry!("maxBroadcastable", MaxBroadcastable, ew::max_broadcastable),
    entry!("min", Min, ew::min),
    entry!("minBroadcastable", MinBroadcastable, ew::min_broadcastable),
    entry!("modBroadcastable", ModBroadcastable, ew::mod_broadcastable),
    entry!("multiply", Multiply, ew::multiply),
    entry!("multiplyBroadcastable", MultiplyBroadcastable, ew::multiply_broadcastable),
    entry!("padding", Padding, conv::padding_layer),
    entry!("permute", Permute, shape::permute, "permutations that move the sequence axis"),
    entry!("pooling", Pooling, conv::pooling, "L2 pooling; TOP_LEFT_HEAVY same padding"),
    entry!("powBroadcastable", PowBroadcastable, ew::pow_broadcastable),
    entry!("reduce", Reduce, shape::reduce),
    entry!("reduceL1", ReduceL1, shape::reduce_l1),
    entry!("reduceL2", ReduceL2, shape::reduce_l2),
    entry!("reduceLogSum", ReduceLogSum, shape::reduce_log_sum),
    entry!("reduceLogSumExp", ReduceLogSumExp, shape::reduce_log_sum_exp),
    entry!("reduceMax", ReduceMax, shape::reduce_max),
    entry!("reduceMean", ReduceMean, shape::reduce_mean),
    entry!("reduceMin", ReduceMin, shape::reduce_min),
    entry!("reduceProd", ReduceProd, shape::reduce_prod),
    entry!("reduceSum", ReduceSum, shape::reduce_sum),
    entry!("reduceSumSquare", ReduceSumSquare, shape::reduce_sum_square),
    entry!("reshape", Reshape, shape::reshape, "CHANNEL_LAST mode; 4-D target with a sequence"),
    entry!("reshapeStatic", ReshapeStatic, shape::reshape_static),
    entry!("round", Round, act::round),
    entry!("scale", Scale, ew::scale),
    entry!("sign", Sign, act::sign),
    entry!(
        "simpleRecurrent",
        SimpleRecurrent,
        rnn::simple_recurrent,
        "no +-50 clip of gate pre-activations (matters for relu/linear gates only)"
    ),
    entry!("sin", Sin, act::sin),
    entry!("sinh", Sinh, act::sinh),
    entry!("slice", Slice, shape::slice),
    entry!("sliceStatic", SliceStatic, shape::slice_static),
    entry!("softmax", Softmax, act::softmax),
    entry!("softmaxND", SoftmaxNd, act::softmax_nd),
    entry!("split", Split, shape::split),
    entry!("splitND", SplitNd, shape::split_nd),
    entry!("squeeze", Squeeze, shape::squeeze),
    entry!("subtractBroadcastable", SubtractBroadcastable, ew::subtract_broadcastable),
    entry!("tan", Tan, act::tan),
    entry!("tanh", Tanh, act::tanh),
    entry!("transpose", Transpose, shape::transpose),
    entry!("unary", Unary, act::unary),
    entry!(
        "uniDirectionalLSTM",
        UniDirectionalLstm,
        rnn::uni_lstm,
        "coupledInputAndForgetGate; no +-50 clip of gate pre-activations (matters for relu/linear gates only)"
    ),
    entry!(
        "upsample",
        Upsample,
        conv::upsample,
        "fractional bilinear scale factors with ALIGN_CORNERS_FALSE"
    ),
];

/// Names of every supported layer type, in table order.
pub(crate) fn supported_layers() -> Vec<&'static str> {
    LAYERS.iter().map(|e| e.name).collect()
}

/// Translates one layer through the table; a layer type not in it fails naming it.
pub(super) fn translate_layer(e: &mut Emitter, l: &NeuralNetworkLayer, layer: &L) -> Result<()> {
    e.layer = l.name.clone();
    for entry in LAYERS {
        e.layer_type = entry.name;
        if let Some(r) = (entry.translate)(e, l, layer) {
            return r;
        }
    }
    let kind = coreml_format::neural_network::layer_type_name(layer);
    Err(Error::Unavailable(format!(
        "{ENGINE_NAME}: NeuralNetwork layer `{}` is of type `{kind}`, which the CPU engine does \
         not run (supported layer types: `infer doctor` lists them); run the model with Core ML",
        l.name
    )))
}

/// The layer list of `docs/models.md` (between its `nn-layers` markers), generated from
/// [`LAYERS`].
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn layers_markdown() -> String {
    let mut s = String::from("| layer type | not covered |\n| --- | --- |\n");
    for e in LAYERS {
        s += &format!("| `{}` | {} |\n", e.name, e.limits);
    }
    s += &format!(
        "\n{} layer types in all. Generated from the layer table \
         (`crates/backend-candle/src/neural_network/table.rs`) by \
         `UPDATE_NN_DOC=1 cargo test -p backend-candle nn_layers_doc`.\n",
        LAYERS.len()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- nn-layers:begin -->\n";
    const END: &str = "<!-- nn-layers:end -->";

    #[test]
    fn nn_layers_doc_matches_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/models.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
            panic!("docs/models.md has no nn-layers markers");
        };
        let want = format!("{}{BEGIN}{}{}", &doc[..b], layers_markdown(), &doc[e..]);
        if std::env::var_os("UPDATE_NN_DOC").is_some() {
            let tmp = path.with_extension("md.tmp");
            std::fs::write(&tmp, &want).expect("write docs/models.md");
            std::fs::rename(&tmp, &path).expect("rename docs/models.md");
            return;
        }
        assert!(
            doc == want,
            "docs/models.md's layer list is out of date: run UPDATE_NN_DOC=1 cargo test -p \
             backend-candle nn_layers_doc"
        );
    }

    #[test]
    fn the_table_is_sorted_and_unique() {
        for w in LAYERS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }
}
