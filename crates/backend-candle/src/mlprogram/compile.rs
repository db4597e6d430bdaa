//! Translates an ML Program function into a [`Plan`]: checks every op is supported (failing at
//! prepare time, naming the op and where it is), reads op parameters from consts, builds conv
//! kernels once, fuses pad/activation into conv, and drops dead steps.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use coreml_format::{Argument, ConstValue, Function, Operation};
use inference_api::{Error, Result};

use super::ops::{PadMode, Pool2d, PoolKind, PoolPad, SliceSpec};
use super::plan::{BinOp, Kind, Plan, Step, UnOp};
use crate::ENGINE_NAME;

/// Loads the data of blob-backed consts (the model's weight store).
pub(crate) type Resolver<'a> = dyn Fn(&ConstValue) -> Result<ConstValue> + 'a;

pub(crate) use registry::SUPPORTED_OPS;

#[path = "op_act.rs"]
mod act;
#[path = "op_attention.rs"]
mod attention;
#[path = "op_classify.rs"]
mod classify;
#[path = "op_compress.rs"]
mod compress;
#[path = "op_compress_sparse.rs"]
mod compress_sparse;
#[path = "compile_conv.rs"]
mod conv;
#[path = "op_conv3d.rs"]
mod conv3d;
#[path = "op_conv_transpose.rs"]
mod conv_transpose;
#[path = "op_conv_transpose3d.rs"]
mod conv_transpose3d;
#[path = "op_einsum.rs"]
mod einsum;
#[path = "op_elementwise.rs"]
mod elementwise;
#[path = "func.rs"]
pub(crate) mod func;
#[path = "op_gather.rs"]
mod gather;
#[path = "op_layout.rs"]
mod layout;
#[path = "op_norm.rs"]
mod norm;
#[path = "op_pool_nd.rs"]
mod pool_nd;
#[path = "op_quant.rs"]
mod quant;
#[path = "op_recurrent.rs"]
mod recurrent;
#[path = "recurrent_cell.rs"]
pub(crate) mod recurrent_cell;
#[path = "op_reduce.rs"]
mod reduce;
#[path = "registry.rs"]
pub(crate) mod registry;
#[path = "op_resample.rs"]
mod resample;
#[path = "op_resize.rs"]
mod resize;
#[path = "op_select.rs"]
mod select;
#[path = "op_slice_update.rs"]
mod slice_update;
#[path = "op_tensor.rs"]
mod tensor_ops;

/// The plan under construction (shared by the op-family modules).
pub(crate) struct Builder<'a> {
    fname: &'a str,
    func: &'a Function,
    resolve: &'a Resolver<'a>,
    /// Resolved consts (and compile-time `constexpr_*` results) by variable name.
    consts: HashMap<String, Arc<ConstValue>>,
    slot_of: HashMap<String, usize>,
    slots: Vec<Option<Tensor>>,
    uses: HashMap<&'a str, usize>,
    skip: Vec<bool>,
    steps: Vec<Step>,
}

fn tensor_of(v: &ConstValue) -> std::result::Result<Tensor, String> {
    let data = v.to_f32_vec().ok_or_else(|| format!("a {} const is not numeric", v.dtype))?;
    Tensor::from_vec(data, v.shape.clone(), &Device::Cpu).map_err(|e| e.to_string())
}

/// The op's place in the program, for messages.
fn where_(fname: &str, i: usize, op: &Operation) -> String {
    format!(
        "function `{fname}` op #{i} `{}` (output `{}`)",
        op.op_type,
        op.output_name().unwrap_or("?")
    )
}

impl<'a> Builder<'a> {
    fn bad(&self, i: usize, op: &Operation, msg: impl std::fmt::Display) -> Error {
        Error::Compile(format!("{ENGINE_NAME}: ML Program {}: {msg}", where_(self.fname, i, op)))
    }

    fn unsupported(&self, i: usize, op: &Operation, msg: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!(
            "{ENGINE_NAME}: ML Program {}: {msg}; the ML Program executor cannot run this model \
             (run it with Core ML, or add the op to backend-candle's mlprogram module)",
            where_(self.fname, i, op)
        ))
    }

    /// The resolved const named `name`, if it is one.
    fn named_const(&mut self, name: &str) -> Result<Option<Arc<ConstValue>>> {
        if let Some(v) = self.consts.get(name) {
            return Ok(Some(v.clone()));
        }
        let Some(raw) = self.func.const_value(name) else { return Ok(None) };
        let v = Arc::new((self.resolve)(raw)?);
        self.consts.insert(name.to_string(), v.clone());
        Ok(Some(v))
    }

    /// Whether any of `inputs` of `op` is computed at run time (bound to a variable that is
    /// not a const).
    fn any_runtime(&mut self, op: &Operation, inputs: &[&str]) -> Result<bool> {
        for name in inputs {
            if let Some([Argument::Name(n)]) = op.inputs.get(*name).map(Vec::as_slice)
                && self.named_const(n)?.is_none()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The constant bound to input `input`: `Ok(None)` when absent, an error when computed at
    /// run time (parameters must be known at prepare time).
    fn param(&mut self, i: usize, op: &Operation, input: &str) -> Result<Option<Arc<ConstValue>>> {
        let Some(args) = op.inputs.get(input) else {
            // iOS16 constexpr ops carry their parameters as attributes.
            return match op.attributes.get(input) {
                Some(v) => Ok(Some(Arc::new((self.resolve)(v)?))),
                None => Ok(None),
            };
        };
        match args.as_slice() {
            [Argument::Value(v)] => Ok(Some(Arc::new((self.resolve)(v)?))),
            [Argument::Name(n)] => match self.named_const(n)? {
                Some(v) => Ok(Some(v)),
                None => Err(self.unsupported(
                    i,
                    op,
                    format!("input `{input}` is computed at run time; the executor needs a const"),
                )),
            },
            _ => Err(self.bad(i, op, format!("input `{input}` must have one binding"))),
        }
    }

    fn ints(&mut self, i: usize, op: &Operation, input: &str) -> Result<Option<Vec<i64>>> {
        match self.param(i, op, input)? {
            None => Ok(None),
            Some(v) => v
                .to_i64_vec()
                .map(Some)
                .ok_or_else(|| self.bad(i, op, format!("`{input}` is not an integer const"))),
        }
    }

    fn usizes(&mut self, i: usize, op: &Operation, input: &str) -> Result<Option<Vec<usize>>> {
        match self.ints(i, op, input)? {
            None => Ok(None),
            Some(v) => v
                .into_iter()
                .map(|x| usize::try_from(x).ok())
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.bad(i, op, format!("`{input}` has a negative value"))),
        }
    }

    fn scalar(&mut self, i: usize, op: &Operation, input: &str) -> Result<Option<f32>> {
        match self.param(i, op, input)? {
            None => Ok(None),
            Some(v) => v
                .scalar_f32()
                .map(Some)
                .ok_or_else(|| self.bad(i, op, format!("`{input}` is not a numeric scalar"))),
        }
    }

    fn flag(&mut self, i: usize, op: &Operation, input: &str) -> Result<bool> {
        Ok(match self.param(i, op, input)? {
            None => false,
            Some(v) => v.scalar_bool().unwrap_or(false),
        })
    }

    fn flags(&mut self, i: usize, op: &Operation, input: &str) -> Result<Vec<bool>> {
        Ok(self.param(i, op, input)?.and_then(|v| v.to_bool_vec()).unwrap_or_default())
    }

    fn string(&mut self, i: usize, op: &Operation, input: &str) -> Result<Option<String>> {
        Ok(self.param(i, op, input)?.and_then(|v| v.as_str().map(str::to_string)))
    }

    fn const_tensor(&mut self, i: usize, op: &Operation, input: &str) -> Result<Option<Tensor>> {
        match self.param(i, op, input)? {
            None => Ok(None),
            Some(v) => tensor_of(&v).map(Some).map_err(|e| self.bad(i, op, e)),
        }
    }

    fn new_slot(&mut self, t: Option<Tensor>) -> usize {
        self.slots.push(t);
        self.slots.len() - 1
    }

    /// The slot holding a variable (a function input, an op output, or a const made a tensor).
    fn slot_for(&mut self, i: usize, op: &Operation, name: &str) -> Result<usize> {
        if let Some(&s) = self.slot_of.get(name) {
            return Ok(s);
        }
        let v = self
            .named_const(name)?
            .ok_or_else(|| self.bad(i, op, format!("`{name}` is used before it is defined")))?;
        let t = tensor_of(&v).map_err(|e| self.bad(i, op, format!("const `{name}`: {e}")))?;
        let s = self.new_slot(Some(t));
        self.slot_of.insert(name.to_string(), s);
        Ok(s)
    }

    /// The slot of const `name` returned by function `fname`.
    fn const_output(&mut self, fname: &str, name: &str) -> Result<usize> {
        let v = self.named_const(name)?.ok_or_else(|| {
            Error::Compile(format!("{ENGINE_NAME}: `{fname}` returns `{name}`, not a const"))
        })?;
        let t = tensor_of(&v).map_err(|e| {
            Error::Compile(format!("{ENGINE_NAME}: `{fname}` returns const `{name}`: {e}"))
        })?;
        let s = self.new_slot(Some(t));
        self.slot_of.insert(name.to_string(), s);
        Ok(s)
    }

    fn arg_slot(&mut self, i: usize, op: &Operation, a: &Argument) -> Result<usize> {
        match a {
            Argument::Name(n) => self.slot_for(i, op, n),
            Argument::Value(v) => {
                let v = (self.resolve)(v)?;
                let t = tensor_of(&v).map_err(|e| self.bad(i, op, e))?;
                Ok(self.new_slot(Some(t)))
            }
        }
    }

    fn var(&mut self, i: usize, op: &Operation, input: &str) -> Result<usize> {
        match op.inputs.get(input).map(Vec::as_slice) {
            Some([a]) => self.arg_slot(i, op, a),
            _ => Err(self.bad(i, op, format!("needs exactly one `{input}`"))),
        }
    }

    fn output_slots(&mut self, op: &Operation) -> Vec<usize> {
        op.outputs
            .iter()
            .map(|o| {
                let s = self.new_slot(None);
                self.slot_of.insert(o.name.clone(), s);
                s
            })
            .collect()
    }

    fn push(&mut self, i: usize, op: &Operation, kind: Kind, inputs: Vec<usize>) {
        let outputs = self.output_slots(op);
        let origin = where_(self.fname, i, op);
        self.steps.push(Step { kind, inputs, outputs, origin, release: Vec::new() });
    }
}

/// Dispatches one op through the registry; an op type not in it fails here, naming it.
fn compile_op(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    if !op.blocks.is_empty() {
        return Err(b.unsupported(
            i,
            op,
            "ops with nested blocks (control flow) are not supported",
        ));
    }
    match registry::lookup(&op.op_type) {
        Some(entry) => (entry.compile)(b, i, op),
        None => Err(b.unsupported(i, op, format!("op type `{}` is not supported", op.op_type))),
    }
}

/// The ops translated to the plan's built-in step kinds (fused conv, candle fast paths).
fn core_op(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let binary = |k| Kind::Binary(k);
    let kind = match op.op_type.as_str() {
        "const" => return Ok(()),
        "conv" => return conv::compile_conv(b, i, op),
        "add" => binary(BinOp::Add),
        "sub" => binary(BinOp::Sub),
        "mul" => binary(BinOp::Mul),
        "real_div" => binary(BinOp::Div),
        "maximum" => binary(BinOp::Maximum),
        "minimum" => binary(BinOp::Minimum),
        "relu" | "relu6" | "sigmoid" | "silu" | "gelu" => match conv::fusable_activation(b, i, op)?
        {
            Some(a) => Kind::Act(a),
            None => return Err(b.unsupported(i, op, "gelu mode other than EXACT")),
        },
        "clip" => {
            let lo = b.scalar(i, op, "alpha")?.ok_or_else(|| b.bad(i, op, "no alpha"))?;
            let hi = b.scalar(i, op, "beta")?.ok_or_else(|| b.bad(i, op, "no beta"))?;
            Kind::Clip { lo, hi }
        }
        "tanh" => Kind::Unary(UnOp::Tanh),
        "exp" => Kind::Unary(UnOp::Exp),
        "sqrt" => Kind::Unary(UnOp::Sqrt),
        "abs" => Kind::Unary(UnOp::Abs),
        "identity" => Kind::Unary(UnOp::Identity),
        "linear" => {
            let w = b.param(i, op, "weight")?.ok_or_else(|| b.bad(i, op, "no weight"))?;
            let &[out, inp] = w.shape.as_slice() else {
                return Err(b.bad(i, op, format!("weight of shape {:?} is not 2-D", w.shape)));
            };
            let data = w.to_f32_vec().ok_or_else(|| b.bad(i, op, "weight is not numeric"))?;
            let bias = b.param(i, op, "bias")?.and_then(|v| v.to_f32_vec());
            let lin = super::kernel_ops::Linear::new(&data, out, inp, bias)
                .ok_or_else(|| b.bad(i, op, format!("bias does not have {out} values")))?;
            Kind::Linear(lin)
        }
        "matmul" => {
            Kind::MatMul { tx: b.flag(i, op, "transpose_x")?, ty: b.flag(i, op, "transpose_y")? }
        }
        "softmax" => Kind::Softmax {
            axis: b.ints(i, op, "axis")?.and_then(|v| v.first().copied()).unwrap_or(-1),
        },
        "reduce_mean" => {
            Kind::ReduceMean { axes: b.ints(i, op, "axes")?, keep: b.flag(i, op, "keep_dims")? }
        }
        "reshape" => Kind::Reshape {
            shape: b.ints(i, op, "shape")?.ok_or_else(|| b.bad(i, op, "no shape"))?,
        },
        "squeeze" => Kind::Squeeze { axes: b.ints(i, op, "axes")? },
        "expand_dims" => Kind::ExpandDims {
            axes: b.ints(i, op, "axes")?.ok_or_else(|| b.bad(i, op, "no axes"))?,
        },
        "transpose" => Kind::Transpose {
            perm: b.usizes(i, op, "perm")?.ok_or_else(|| b.bad(i, op, "no perm"))?,
        },
        "concat" => {
            if b.flag(i, op, "interleave")? {
                return Err(b.unsupported(i, op, "interleaved concat"));
            }
            let axis = b.ints(i, op, "axis")?.and_then(|v| v.first().copied()).unwrap_or(0);
            let args = op.inputs.get("values").cloned().unwrap_or_default();
            let inputs = args.iter().map(|a| b.arg_slot(i, op, a)).collect::<Result<Vec<_>>>()?;
            if inputs.is_empty() {
                return Err(b.bad(i, op, "no values"));
            }
            b.push(i, op, Kind::Concat { axis }, inputs);
            return Ok(());
        }
        "split" => Kind::Split {
            axis: b.ints(i, op, "axis")?.and_then(|v| v.first().copied()).unwrap_or(0),
            sizes: b.usizes(i, op, "split_sizes")?,
        },
        "slice_by_index" if b.any_runtime(op, &["begin", "end", "stride"])? => {
            return layout::slice_dynamic(b, i, op);
        }
        "slice_by_index" => Kind::Slice(SliceSpec {
            begin: b.ints(i, op, "begin")?.ok_or_else(|| b.bad(i, op, "no begin"))?,
            end: b.ints(i, op, "end")?.ok_or_else(|| b.bad(i, op, "no end"))?,
            stride: b.ints(i, op, "stride")?.unwrap_or_default(),
            begin_mask: b.flags(i, op, "begin_mask")?,
            end_mask: b.flags(i, op, "end_mask")?,
            squeeze_mask: b.flags(i, op, "squeeze_mask")?,
        }),
        "layer_norm" => Kind::LayerNorm {
            axes: b.ints(i, op, "axes")?.unwrap_or(vec![-1]),
            gamma: b.const_tensor(i, op, "gamma")?,
            beta: b.const_tensor(i, op, "beta")?,
            eps: b.scalar(i, op, "epsilon")?.unwrap_or(1e-5),
        },
        "batch_norm" => {
            let vec = |b: &mut Builder<'_>, n: &str| -> Result<Option<Vec<f32>>> {
                Ok(b.param(i, op, n)?.and_then(|v| v.to_f32_vec()))
            };
            let mean = vec(b, "mean")?.ok_or_else(|| b.bad(i, op, "no mean"))?;
            let var = vec(b, "variance")?.ok_or_else(|| b.bad(i, op, "no variance"))?;
            let gamma = vec(b, "gamma")?.unwrap_or_else(|| vec![1.0; mean.len()]);
            let beta = vec(b, "beta")?.unwrap_or_else(|| vec![0.0; mean.len()]);
            let eps = b.scalar(i, op, "epsilon")?.unwrap_or(1e-5);
            if [var.len(), gamma.len(), beta.len()].iter().any(|&l| l != mean.len()) {
                return Err(b.bad(i, op, "mean/variance/gamma/beta lengths differ"));
            }
            let scale: Vec<f32> =
                gamma.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
            let shift: Vec<f32> =
                beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
            let n = scale.len();
            let t = |v: Vec<f32>| Tensor::from_vec(v, n, &Device::Cpu);
            Kind::BatchNorm {
                scale: t(scale).map_err(|e| b.bad(i, op, e))?,
                shift: t(shift).map_err(|e| b.bad(i, op, e))?,
            }
        }
        "max_pool" | "avg_pool" => {
            let kind = if op.op_type == "max_pool" {
                PoolKind::Max
            } else {
                PoolKind::Avg { exclude_pad: b.flag(i, op, "exclude_padding_from_average")? }
            };
            let k = b.usizes(i, op, "kernel_sizes")?.unwrap_or_default();
            let &[kh, kw] = k.as_slice() else {
                return Err(b.unsupported(i, op, format!("only 2-D pooling; kernel {k:?}")));
            };
            let s = b.usizes(i, op, "strides")?.unwrap_or(vec![1, 1]);
            let &[sh, sw] = s.as_slice() else { return Err(b.bad(i, op, "strides")) };
            let pad = match b.string(i, op, "pad_type")?.as_deref() {
                None | Some("valid") => PoolPad::Valid,
                Some("same") => PoolPad::Same,
                Some("custom") => match b.usizes(i, op, "pad")?.as_deref() {
                    Some(&[t, bo, l, r]) => PoolPad::Explicit([t, bo, l, r]),
                    other => return Err(b.bad(i, op, format!("custom pad {other:?}"))),
                },
                Some(other) => return Err(b.unsupported(i, op, format!("pad_type `{other}`"))),
            };
            let ceil_mode = b.flag(i, op, "ceil_mode")?;
            Kind::Pool(Pool2d { kind, kernel: (kh, kw), stride: (sh, sw), pad, ceil_mode })
        }
        "pad" => {
            let pads = b.usizes(i, op, "pad")?.ok_or_else(|| b.bad(i, op, "no pad"))?;
            let mode = match b.string(i, op, "mode")?.as_deref() {
                None | Some("constant") => {
                    PadMode::Constant(b.scalar(i, op, "constant_val")?.unwrap_or(0.0))
                }
                Some("reflect") => PadMode::Reflect,
                Some("replicate") => PadMode::Replicate,
                Some(other) => return Err(b.unsupported(i, op, format!("pad mode `{other}`"))),
            };
            Kind::Pad { pads, mode }
        }
        other => {
            return Err(b.unsupported(i, op, format!("op type `{other}` is not supported")));
        }
    };
    let mut inputs = vec![b.var(i, op, "x")?];
    if matches!(kind, Kind::Binary(_) | Kind::MatMul { .. }) {
        inputs.push(b.var(i, op, "y")?);
    }
    b.push(i, op, kind, inputs);
    Ok(())
}

/// Compiles function `fname`; every unsupported op or non-const parameter is an error naming
/// where it is.
pub(crate) fn compile(fname: &str, func: &Function, resolve: &Resolver<'_>) -> Result<Plan> {
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for op in &func.block.operations {
        for a in op.inputs.values().flatten() {
            if let Argument::Name(n) = a {
                *uses.entry(n.as_str()).or_insert(0) += 1;
            }
        }
    }
    for o in &func.block.outputs {
        *uses.entry(o.as_str()).or_insert(0) += 1;
    }
    let mut b = Builder {
        fname,
        func,
        resolve,
        consts: HashMap::new(),
        slot_of: HashMap::new(),
        slots: Vec::new(),
        uses,
        skip: vec![false; func.block.operations.len()],
        steps: Vec::new(),
    };
    let mut inputs = Vec::new();
    for inp in &func.inputs {
        let s = b.new_slot(None);
        b.slot_of.insert(inp.name.clone(), s);
        inputs.push((inp.name.clone(), s));
    }
    for (i, op) in func.block.operations.iter().enumerate() {
        if !b.skip[i] {
            compile_op(&mut b, i, op)?;
        }
    }
    let mut outputs = Vec::new();
    for o in &func.block.outputs {
        let s = match b.slot_of.get(o).copied() {
            Some(s) => s,
            // A const (or decompressed weight) returned as it is.
            None if b.named_const(o)?.is_some() => b.const_output(fname, o)?,
            None => {
                return Err(Error::Compile(format!(
                    "{ENGINE_NAME}: `{fname}` returns `{o}`, which no step computes"
                )));
            }
        };
        outputs.push((o.clone(), s));
    }
    let Builder { slots, mut steps, .. } = b;
    // Drop steps whose results nobody reads (e.g. a pad folded into a conv), then free each
    // slot after its last reader.
    let mut needed = vec![false; slots.len()];
    outputs.iter().for_each(|(_, s)| needed[*s] = true);
    let mut keep = vec![false; steps.len()];
    for (k, st) in steps.iter().enumerate().rev() {
        if st.outputs.iter().any(|&o| needed[o]) {
            keep[k] = true;
            st.inputs.iter().for_each(|&s| needed[s] = true);
        }
    }
    let mut k = 0;
    steps.retain(|_| {
        k += 1;
        keep[k - 1]
    });
    let mut last = vec![None; slots.len()];
    for (k, st) in steps.iter().enumerate() {
        st.inputs.iter().chain(&st.outputs).for_each(|&s| last[s] = Some(k));
    }
    outputs.iter().for_each(|(_, s)| last[*s] = None);
    for (s, l) in last.iter().enumerate() {
        if let Some(k) = l {
            steps[*k].release.push(s);
        }
    }
    Ok(Plan { slots, inputs, outputs, steps })
}
