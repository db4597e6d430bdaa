//! Legacy NeuralNetwork models (`neuralNetwork`, `neuralNetworkClassifier`,
//! `neuralNetworkRegressor` specs in a `.mlmodel`) on the ML Program executor: the layer list is
//! translated into an in-memory MIL `main` function, which the executor compiles into a plan
//! over the same kernels as an ML Program.
//!
//! Tensors keep their natural rank: a multi-array input comes in with its declared shape (a
//! rank-1 `[C]` or rank-3 `[C, H, W]` input of an old "rank-5 mapping" model is given a batch
//! axis, `[1, C, 1, 1]` / `[1, C, H, W]`), an image input is `[1, C, H, W]`, and the layers that
//! work on "C, H, W" use the last three axes. Each declared output with a fixed shape is reshaped
//! to it; a classifier's probabilities come out flat, one score per class.
//!
//! [`LAYERS`] is both the dispatch table and the list `infer doctor` and the docs print; a layer
//! type not in it fails at prepare, naming the layer type and the layer.

use std::collections::HashMap;

use coreml_format::proto as pb;
use coreml_format::{
    Argument, Block, ConstData, ConstValue, Function, MlModel, NamedType, Operation, ScalarType,
    ValueType,
};
use inference_api::{Error, FeatureKind, ImageFormat, Result};

use crate::ENGINE_NAME;

mod act;
mod conv;
mod elementwise;
mod recurrent;
mod shape;
mod table;
pub(crate) mod weights;

pub(crate) use table::supported_layers;

/// The parts of a NeuralNetwork spec the translation reads (the same in all three flavours).
pub(crate) struct Net<'a> {
    layers: &'a [pb::NeuralNetworkLayer],
    preprocessing: &'a [pb::NeuralNetworkPreprocessing],
    rank5_arrays: bool,
    /// Classifier: the blob holding the class scores (`labelProbabilityLayerName`, or the last
    /// layer's output).
    probabilities: Option<String>,
}

/// The NeuralNetwork of a spec, if it is one.
pub(crate) fn network(model: &MlModel) -> Option<Net<'_>> {
    use pb::model::Type as T;
    let rank5 = |m: i32| m == pb::NeuralNetworkMultiArrayShapeMapping::Rank5ArrayMapping as i32;
    match model.spec().r#type.as_ref()? {
        T::NeuralNetwork(n) => Some(Net {
            layers: &n.layers,
            preprocessing: &n.preprocessing,
            rank5_arrays: rank5(n.array_input_shape_mapping),
            probabilities: None,
        }),
        T::NeuralNetworkRegressor(n) => Some(Net {
            layers: &n.layers,
            preprocessing: &n.preprocessing,
            rank5_arrays: rank5(n.array_input_shape_mapping),
            probabilities: None,
        }),
        T::NeuralNetworkClassifier(n) => {
            let last = n.layers.last().and_then(|l| l.output.first()).cloned();
            let named = Some(n.label_probability_layer_name.clone()).filter(|s| !s.is_empty());
            Some(Net {
                layers: &n.layers,
                preprocessing: &n.preprocessing,
                rank5_arrays: rank5(n.array_input_shape_mapping),
                probabilities: named.or(last),
            })
        }
        _ => None,
    }
}

/// Builds the MIL function: one op per simple layer, a few for the others.
pub(crate) struct Emitter {
    ops: Vec<Operation>,
    /// Current MIL variable of each NeuralNetwork blob (a layer may overwrite a blob name).
    vars: HashMap<String, String>,
    /// Rank of each MIL variable, when known.
    ranks: HashMap<String, Option<usize>>,
    next: usize,
    /// The layer being translated, for messages.
    layer: String,
    layer_type: &'static str,
}

/// One binding of a variable.
pub(crate) fn name(v: &str) -> Vec<Argument> {
    vec![Argument::Name(v.to_string())]
}

fn value(dtype: ScalarType, shape: Vec<usize>, data: ConstData) -> Vec<Argument> {
    vec![Argument::Value(ConstValue { dtype, shape, data })]
}

/// A 1-D int32 const.
pub(crate) fn ints(v: &[i64]) -> Vec<Argument> {
    let data = v.iter().map(|&x| i32::try_from(x).unwrap_or(i32::MAX)).collect();
    value(ScalarType::I32, vec![v.len()], ConstData::I32(data))
}

/// A scalar int32 const.
pub(crate) fn int(v: i64) -> Vec<Argument> {
    value(ScalarType::I32, vec![], ConstData::I32(vec![i32::try_from(v).unwrap_or(i32::MAX)]))
}

/// A scalar f32 const.
pub(crate) fn float(v: f32) -> Vec<Argument> {
    value(ScalarType::F32, vec![], ConstData::F32(vec![v]))
}

/// An f32 tensor const.
pub(crate) fn floats(v: Vec<f32>, shape: Vec<usize>) -> Vec<Argument> {
    value(ScalarType::F32, shape, ConstData::F32(v))
}

/// A scalar string const.
pub(crate) fn string(s: &str) -> Vec<Argument> {
    value(ScalarType::String, vec![], ConstData::String(vec![s.to_string()]))
}

/// A scalar bool const.
pub(crate) fn boolean(b: bool) -> Vec<Argument> {
    value(ScalarType::Bool, vec![], ConstData::Bool(vec![b]))
}

/// A 1-D bool const.
pub(crate) fn bools(v: &[bool]) -> Vec<Argument> {
    value(ScalarType::Bool, vec![v.len()], ConstData::Bool(v.to_vec()))
}

impl Emitter {
    /// A compile error naming the layer.
    pub(crate) fn bad(&self, msg: impl std::fmt::Display) -> Error {
        Error::Compile(format!(
            "{ENGINE_NAME}: NeuralNetwork layer `{}` ({}): {msg}",
            self.layer, self.layer_type
        ))
    }

    /// "We do not run this" naming the layer.
    pub(crate) fn unsupported(&self, msg: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!(
            "{ENGINE_NAME}: NeuralNetwork layer `{}` ({}): {msg}; the CPU engine cannot run this \
             model (run it with Core ML)",
            self.layer, self.layer_type
        ))
    }

    /// The MIL variable and rank of the layer's input `k`.
    pub(crate) fn input(
        &self,
        l: &pb::NeuralNetworkLayer,
        k: usize,
    ) -> Result<(String, Option<usize>)> {
        let blob = l.input.get(k).ok_or_else(|| self.bad(format!("needs input #{k}")))?;
        let v = self
            .vars
            .get(blob)
            .ok_or_else(|| self.bad(format!("input `{blob}` is not produced before this layer")))?;
        Ok((v.clone(), self.ranks.get(v).copied().flatten()))
    }

    /// The variables of every input of the layer.
    pub(crate) fn inputs(
        &self,
        l: &pb::NeuralNetworkLayer,
    ) -> Result<Vec<(String, Option<usize>)>> {
        (0..l.input.len()).map(|k| self.input(l, k)).collect()
    }

    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("{}__{}", self.layer, self.next)
    }

    /// Appends a MIL op with `n` outputs of rank `rank`; returns their variable names.
    pub(crate) fn op_n(
        &mut self,
        op_type: &str,
        inputs: Vec<(&str, Vec<Argument>)>,
        n: usize,
        rank: Option<usize>,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh()).collect();
        let mut attributes = std::collections::BTreeMap::new();
        let label = ConstValue {
            dtype: ScalarType::String,
            shape: vec![],
            data: ConstData::String(vec![self.layer.clone()]),
        };
        attributes.insert("name".to_string(), label);
        self.ops.push(Operation {
            op_type: op_type.to_string(),
            inputs: inputs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            outputs: outs
                .iter()
                .map(|o| NamedType { name: o.clone(), ty: ValueType::Unknown })
                .collect(),
            attributes,
            blocks: Vec::new(),
        });
        for o in &outs {
            self.ranks.insert(o.clone(), rank);
        }
        outs
    }

    /// Appends a one-output MIL op; returns its variable.
    pub(crate) fn op(
        &mut self,
        op_type: &str,
        inputs: Vec<(&str, Vec<Argument>)>,
        rank: Option<usize>,
    ) -> String {
        self.op_n(op_type, inputs, 1, rank).remove(0)
    }

    /// Makes `var` the value of the layer's output blob `k`.
    pub(crate) fn bind(&mut self, l: &pb::NeuralNetworkLayer, k: usize, var: String) -> Result<()> {
        let blob = l.output.get(k).ok_or_else(|| self.bad(format!("needs output #{k}")))?;
        self.vars.insert(blob.clone(), var);
        Ok(())
    }

    /// Binds the layer's only output.
    pub(crate) fn out(&mut self, l: &pb::NeuralNetworkLayer, var: String) -> Result<()> {
        if l.output.len() != 1 {
            return Err(self.bad(format!("has {} outputs, expected 1", l.output.len())));
        }
        self.bind(l, 0, var)
    }

    /// `x` reshaped to `shape` (0 copies an axis, -1 is inferred).
    pub(crate) fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        self.op("reshape", vec![("x", name(x)), ("shape", ints(shape))], Some(shape.len()))
    }

    /// Decodes a weight of `count` values with `channels` output channels.
    pub(crate) fn weights(
        &self,
        w: Option<&pb::WeightParams>,
        what: &str,
        count: usize,
        channels: usize,
    ) -> Result<Vec<f32>> {
        let w = w.ok_or_else(|| self.bad(format!("no {what}")))?;
        weights::decode(w, count, channels).map_err(|e| self.bad(format!("{what}: {e}")))
    }
}

/// The `n`-th value of a repeated size field, or `default` when it is not set.
pub(crate) fn pair(v: &[u64], default: u64) -> [i64; 2] {
    let at = |k: usize| v.get(k).copied().filter(|_| v.len() == 2).unwrap_or(default) as i64;
    [at(0), at(1)]
}

/// Translates the model's NeuralNetwork into a MIL `main` function whose inputs and outputs
/// carry the description's names.
pub(crate) fn translate(model: &MlModel) -> Result<Function> {
    let net = network(model).ok_or_else(|| {
        Error::Unavailable(format!(
            "{}: model type is {}, not a NeuralNetwork",
            model.path().display(),
            model.model_type()
        ))
    })?;
    let mut e = Emitter {
        ops: Vec::new(),
        vars: HashMap::new(),
        ranks: HashMap::new(),
        next: 0,
        layer: "(inputs)".into(),
        layer_type: "preprocessing",
    };
    // The model's own schema (double arrays as f32, a classifier's scores as a tensor).
    let schema = model.io_schema()?;
    let mut inputs = Vec::new();
    for spec in &schema.inputs {
        let name_ = spec.name.clone();
        inputs.push(NamedType { name: name_.clone(), ty: ValueType::Unknown });
        let var = match spec.kind {
            FeatureKind::Image { format, width, height } => {
                e.ranks.insert(name_.clone(), Some(4));
                let size = (height, width);
                preprocess(&mut e, &net, &name_, format, size, schema.inputs.len())?
            }
            _ => {
                let rank = spec.shape.len();
                e.ranks.insert(name_.clone(), Some(rank));
                match (net.rank5_arrays, rank) {
                    (true, 1) => e.reshape(&name_, &[1, -1, 1, 1]),
                    (true, 3) => e.op(
                        "expand_dims",
                        vec![("x", name(&name_)), ("axes", ints(&[0]))],
                        Some(4),
                    ),
                    _ => name_.clone(),
                }
            }
        };
        e.vars.insert(name_, var);
    }
    for l in net.layers {
        let layer = l.layer.as_ref().ok_or_else(|| {
            Error::Compile(format!("{ENGINE_NAME}: NeuralNetwork layer `{}` has no type", l.name))
        })?;
        table::translate_layer(&mut e, l, layer)?;
    }
    e.layer = "(outputs)".into();
    e.layer_type = "model outputs";
    let mut outputs = Vec::new();
    let probs = schema.classifier.as_ref().map(|c| c.output.as_str());
    for spec in &schema.outputs {
        let (blob, flat) = if Some(spec.name.as_str()) == probs {
            (net.probabilities.clone().unwrap_or_default(), true)
        } else {
            (spec.name.clone(), false)
        };
        let var = e.vars.get(&blob).cloned().ok_or_else(|| {
            Error::Compile(format!(
                "{ENGINE_NAME}: {}: output `{}` is not produced by any layer (blob `{blob}`)",
                model.path().display(),
                spec.name
            ))
        })?;
        let fixed: Option<Vec<i64>> = spec
            .fixed_shape()
            .map(|s| s.iter().map(|&n| i64::try_from(n).unwrap_or(i64::MAX)).collect());
        let shape = match (flat, fixed) {
            (true, _) => vec![-1],
            (false, Some(s)) if !s.is_empty() => s,
            _ => vec![],
        };
        let inputs = if shape.is_empty() {
            vec![("x", name(&var))]
        } else {
            vec![("x", name(&var)), ("shape", ints(&shape))]
        };
        let op_type = if shape.is_empty() { "identity" } else { "reshape" };
        let mut op = {
            e.op(op_type, inputs, None);
            e.ops.pop().ok_or_else(|| e.bad("internal: no op"))?
        };
        op.outputs = vec![NamedType { name: spec.name.clone(), ty: ValueType::Unknown }];
        e.ops.push(op);
        outputs.push(spec.name.clone());
    }
    Ok(Function {
        inputs,
        opset: "NeuralNetwork".into(),
        block: Block { inputs: Vec::new(), operations: e.ops, outputs },
        other_blocks: Default::default(),
        attributes: Default::default(),
    })
}

/// Core ML's image preprocessing of a NeuralNetwork: `channelScale * x + bias` per channel in
/// the model's colour layout, or a mean image subtracted. `inputs` is the number of inputs (a
/// preprocessing entry without a feature name applies to the only input).
fn preprocess(
    e: &mut Emitter,
    net: &Net<'_>,
    input: &str,
    format: ImageFormat,
    (height, width): (usize, usize),
    inputs: usize,
) -> Result<String> {
    use pb::neural_network_preprocessing::Preprocessor as P;
    let mut x = input.to_string();
    for p in net.preprocessing {
        if !(p.feature_name == input || (p.feature_name.is_empty() && inputs == 1)) {
            continue;
        }
        match &p.preprocessor {
            Some(P::Scaler(s)) => {
                let scale = s.channel_scale;
                if scale != 1.0 {
                    x = e.op("mul", vec![("x", name(&x)), ("y", float(scale))], Some(4));
                }
                let bias = match format {
                    ImageFormat::Rgb => vec![s.red_bias, s.green_bias, s.blue_bias],
                    ImageFormat::Bgr => vec![s.blue_bias, s.green_bias, s.red_bias],
                    ImageFormat::Gray => vec![s.gray_bias],
                };
                if bias.iter().any(|&b| b != 0.0) {
                    let n = bias.len();
                    let y = floats(bias, vec![1, n, 1, 1]);
                    x = e.op("add", vec![("x", name(&x)), ("y", y)], Some(4));
                }
            }
            Some(P::MeanImage(m)) => {
                let c = coreml_format::image::channels(format);
                if m.mean_image.len() != c * height * width {
                    return Err(e.bad(format!(
                        "mean image of {} values for a {c} x {height} x {width} image",
                        m.mean_image.len()
                    )));
                }
                let y = floats(m.mean_image.clone(), vec![1, c, height, width]);
                x = e.op("sub", vec![("x", name(&x)), ("y", y)], Some(4));
            }
            None => {}
        }
    }
    Ok(x)
}
