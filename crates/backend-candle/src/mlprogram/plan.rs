//! The executable form of an ML Program function: value slots (consts filled at prepare time),
//! a list of steps, and the interpreter loop that runs them.

use candle_core::{Result, Tensor};

use super::ops::{self, PadMode, Pool2d, SliceSpec};
use crate::conv_op::ConvOp;
use kernels::Activation;

/// Element-wise binary ops with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

/// Element-wise unary ops candle computes directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    Tanh,
    Exp,
    Sqrt,
    Abs,
    /// `identity`.
    Identity,
}

/// What one step computes.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Conv(ConvOp),
    Linear(super::kernel_ops::Linear),
    MatMul {
        tx: bool,
        ty: bool,
    },
    Binary(BinOp),
    Act(Activation),
    Clip {
        lo: f32,
        hi: f32,
    },
    Unary(UnOp),
    /// `cast` to a float type: rounded to the nearest fp16 when `fp16`, else only widened.
    Cast {
        fp16: bool,
    },
    Softmax {
        axis: i64,
    },
    ReduceMean {
        axes: Option<Vec<i64>>,
        keep: bool,
    },
    Reshape {
        shape: Vec<i64>,
    },
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    ExpandDims {
        axes: Vec<i64>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: i64,
    },
    Split {
        axis: i64,
        sizes: Option<Vec<usize>>,
    },
    Slice(SliceSpec),
    LayerNorm {
        axes: Vec<i64>,
        gamma: Option<Tensor>,
        beta: Option<Tensor>,
        eps: f32,
    },
    BatchNorm {
        scale: Tensor,
        shift: Tensor,
    },
    Pool(Pool2d),
    Pad {
        pads: Vec<usize>,
        mode: PadMode,
    },
    /// An op from the registry's op-family modules (see `registry.rs`).
    Func(super::compile::func::FuncOp),
}

/// One op ready to run: what it does, which slots it reads and writes, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) kind: Kind,
    pub(crate) inputs: Vec<usize>,
    pub(crate) outputs: Vec<usize>,
    /// `op #i `type` (output `name`)`, for run-time error messages.
    pub(crate) origin: String,
    /// Slots no later step reads: freed after this step.
    pub(crate) release: Vec<usize>,
}

/// A compiled function.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Initial slot contents: consts filled, everything else empty.
    pub(crate) slots: Vec<Option<Tensor>>,
    /// Function inputs by name and slot.
    pub(crate) inputs: Vec<(String, usize)>,
    /// Block outputs by name and slot.
    pub(crate) outputs: Vec<(String, usize)>,
    pub(crate) steps: Vec<Step>,
}

fn get(slots: &[Option<Tensor>], i: usize) -> Result<&Tensor> {
    slots
        .get(i)
        .and_then(Option::as_ref)
        .ok_or_else(|| candle_core::Error::Msg(format!("value slot {i} is empty")))
}

fn reshape_to(x: &Tensor, shape: &[i64]) -> Result<Tensor> {
    let dims = x.dims();
    let mut out: Vec<usize> = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if i < dims.len() => out.push(dims[i]),
            s if s > 0 => out.push(s as usize),
            s => candle_core::bail!("reshape: bad target dimension {s} in {shape:?}"),
        }
    }
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        if known == 0 || !x.elem_count().is_multiple_of(known) {
            candle_core::bail!("reshape: cannot reshape {dims:?} to {shape:?}")
        }
        out[i] = x.elem_count() / known;
    }
    x.reshape(out)
}

impl Step {
    /// The profile row this step's time goes to (`INFER_PROFILE`); `None` for convolutions,
    /// whose kernels record their own rows.
    pub(crate) fn profile_kind(&self) -> Option<&'static str> {
        Some(match &self.kind {
            Kind::Conv(_) => return None,
            Kind::Linear(_) => "mil linear",
            Kind::MatMul { .. } => "mil matmul",
            Kind::Binary(_) => "mil binary",
            Kind::Act(_) | Kind::Clip { .. } => "mil activation",
            Kind::Unary(_) => "mil unary",
            Kind::Cast { .. } => "cast",
            Kind::Softmax { .. } => "mil softmax",
            Kind::ReduceMean { .. } => "mil reduce_mean",
            Kind::Reshape { .. } | Kind::Squeeze { .. } | Kind::ExpandDims { .. } => "mil reshape",
            Kind::Transpose { .. } => "mil transpose",
            Kind::Concat { .. } | Kind::Split { .. } | Kind::Slice(_) => "mil concat/split/slice",
            Kind::LayerNorm { .. } => "mil layer_norm",
            Kind::BatchNorm { .. } => "mil batch_norm",
            Kind::Pool(_) => "mil pool",
            Kind::Pad { .. } => "mil pad",
            Kind::Func(f) => f.profile_kind(),
        })
    }

    pub(crate) fn run(&self, args: &[&Tensor]) -> Result<Vec<Tensor>> {
        if let Kind::Func(f) = &self.kind {
            return f.call(args);
        }
        let x = args.first().copied().ok_or_else(|| candle_core::Error::Msg("no input".into()))?;
        let arg = |i: usize| {
            args.get(i).copied().ok_or_else(|| candle_core::Error::Msg(format!("no input {i}")))
        };
        let one = |t: Tensor| Ok(vec![t]);
        match &self.kind {
            Kind::Conv(op) => one(x.contiguous()?.apply_op1_no_bwd(op)?),
            Kind::Linear(op) => one(op.forward(x)?),
            Kind::MatMul { tx, ty } => {
                let y = arg(1)?;
                one(match super::kernel_ops::matmul(x, y, *tx, *ty)? {
                    Some(t) => t,
                    None => ops::matmul(x, y, *tx, *ty)?,
                })
            }
            Kind::Binary(op) => {
                let y = arg(1)?;
                if let Some(t) = super::kernel_ops::binary(x, y, *op)? {
                    return one(t);
                }
                one(match op {
                    BinOp::Add => x.broadcast_add(y)?,
                    BinOp::Sub => x.broadcast_sub(y)?,
                    BinOp::Mul => x.broadcast_mul(y)?,
                    BinOp::Div => x.broadcast_div(y)?,
                    BinOp::Maximum => x.broadcast_maximum(y)?,
                    BinOp::Minimum => x.broadcast_minimum(y)?,
                })
            }
            Kind::Act(a) => one(ops::activation(x, *a)?),
            Kind::Clip { lo, hi } => one(x.clamp(*lo, *hi)?),
            Kind::Unary(u) => one(match u {
                UnOp::Tanh => x.tanh()?,
                UnOp::Exp => x.exp()?,
                UnOp::Sqrt => x.sqrt()?,
                UnOp::Abs => x.abs()?,
                UnOp::Identity => x.clone(),
            }),
            Kind::Cast { fp16: true } => one(super::kernel_ops::round_f16(x)?),
            Kind::Cast { fp16: false } => one(match x.dtype() {
                candle_core::DType::F32 => x.clone(),
                _ => x.to_dtype(candle_core::DType::F32)?,
            }),
            Kind::Softmax { axis } => one(ops::softmax(x, *axis)?),
            Kind::ReduceMean { axes, keep } => one(ops::reduce_mean(x, axes.as_deref(), *keep)?),
            Kind::Reshape { shape } => one(reshape_to(x, shape)?),
            Kind::Squeeze { axes } => {
                let rank = x.rank();
                let mut ax: Vec<usize> = match axes {
                    Some(a) => a.iter().map(|&a| ops::axis(a, rank)).collect::<Result<_>>()?,
                    None => (0..rank).filter(|&d| x.dims()[d] == 1).collect(),
                };
                ax.sort_unstable();
                let mut y = x.clone();
                for &a in ax.iter().rev() {
                    y = y.squeeze(a)?;
                }
                one(y)
            }
            Kind::ExpandDims { axes } => {
                let out_rank = x.rank() + axes.len();
                let mut ax: Vec<usize> =
                    axes.iter().map(|&a| ops::axis(a, out_rank)).collect::<Result<_>>()?;
                ax.sort_unstable();
                let mut y = x.clone();
                for &a in &ax {
                    y = y.unsqueeze(a)?;
                }
                one(y)
            }
            Kind::Transpose { perm } => match super::kernel_ops::permute(x, perm)? {
                Some(t) => one(t),
                None => one(x.permute(perm.as_slice())?.contiguous()?),
            },
            Kind::Concat { axis } => {
                let a = ops::axis(*axis, x.rank())?;
                one(Tensor::cat(args, a)?)
            }
            Kind::Split { axis, sizes } => {
                ops::split(x, *axis, sizes.as_deref(), self.outputs.len())
            }
            Kind::Slice(s) => one(ops::slice_by_index(x, s)?),
            Kind::LayerNorm { axes, gamma, beta, eps } => {
                one(ops::layer_norm(x, axes, gamma.as_ref(), beta.as_ref(), *eps)?)
            }
            Kind::BatchNorm { scale, shift } => {
                let mut shape = vec![1usize; x.rank()];
                if let Some(c) = shape.get_mut(1) {
                    *c = scale.elem_count();
                }
                let s = scale.reshape(shape.as_slice())?;
                let b = shift.reshape(shape.as_slice())?;
                one(x.broadcast_mul(&s)?.broadcast_add(&b)?)
            }
            Kind::Pool(p) => one(p.forward(x)?),
            Kind::Pad { pads, mode } => one(ops::pad(x, pads, *mode)?),
            Kind::Func(f) => f.call(args),
        }
    }
}

impl Plan {
    /// Runs the plan on the function inputs (in [`Plan::inputs`] order); returns the block
    /// outputs in [`Plan::outputs`] order. `stop` is polled before every op; when it answers
    /// true the run ends early with an error. With `shapes` (one entry per slot), every value
    /// the run holds has its dimensions recorded there.
    pub(crate) fn run(
        &self,
        inputs: Vec<Tensor>,
        stop: &dyn Fn() -> bool,
        mut shapes: Option<&mut Vec<Option<Vec<usize>>>>,
    ) -> std::result::Result<Vec<Tensor>, String> {
        let mut slots = self.slots.clone();
        if let Some(rec) = shapes.as_deref_mut() {
            rec.clear();
            rec.extend(slots.iter().map(|t| t.as_ref().map(|t| t.dims().to_vec())));
        }
        for ((_, slot), t) in self.inputs.iter().zip(inputs) {
            if let Some(rec) = shapes.as_deref_mut().and_then(|s| s.get_mut(*slot)) {
                *rec = Some(t.dims().to_vec());
            }
            slots[*slot] = Some(t);
        }
        for step in &self.steps {
            if stop() {
                return Err(format!(
                    "stopped early before {}: the call was cancelled or its deadline passed",
                    step.origin
                ));
            }
            let t = step.profile_kind().and_then(|_| kernels::profile::start());
            let outs = {
                let outs = step
                    .inputs
                    .iter()
                    .map(|&i| get(&slots, i))
                    .collect::<Result<Vec<_>>>()
                    .and_then(|args| step.run(&args))
                    .map_err(|e| format!("{}: {e}", step.origin))?;
                if outs.len() != step.outputs.len() {
                    return Err(format!(
                        "{}: produced {} values for {} outputs",
                        step.origin,
                        outs.len(),
                        step.outputs.len()
                    ));
                }
                outs
            };
            if let Some(kind) = step.profile_kind() {
                kernels::profile::record(kind, t);
            }
            for (&slot, t) in step.outputs.iter().zip(outs) {
                if let Some(rec) = shapes.as_deref_mut().and_then(|s| s.get_mut(slot)) {
                    *rec = Some(t.dims().to_vec());
                }
                slots[slot] = Some(t);
            }
            for &r in &step.release {
                slots[r] = None;
            }
        }
        self.outputs
            .iter()
            .map(|(name, slot)| {
                get(&slots, *slot).cloned().map_err(|_| format!("output `{name}` was not computed"))
            })
            .collect()
    }
}
