//! The ML Program plan lowered onto buffers: once a run through the interpreter has recorded
//! every value's shape, the plan's steps become kernel calls that read and write slices of a
//! few buffers kept between runs (reused by liveness, reshapes aliasing their input), so a
//! steady-state run makes no candle tensors and no heap allocations. Plans with an op this
//! lowering does not know stay on the interpreter.

use std::sync::Arc;

use candle_core::{Layout, Shape};
use kernels::{Activation, BinaryOp, Conv2d, Strided};

use super::kernel_ops::{self, Linear};
use super::ops;
use super::plan::{Kind, Plan, UnOp};

/// Where a step's operand lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// The function's `i`-th input, read from the caller's tensor.
    Input(usize),
    /// A constant, extracted once.
    Const(usize),
    /// An arena buffer.
    Buf(usize),
}

/// A value: where it lives and its dimensions.
#[derive(Debug, Clone)]
struct Val {
    src: Src,
    dims: Vec<usize>,
}

impl Val {
    fn len(&self) -> usize {
        self.dims.iter().product()
    }
}

/// What a lowered step computes.
#[derive(Debug, Clone)]
enum Op {
    Conv {
        conv: Arc<Conv2d>,
        n: usize,
        h: usize,
        w: usize,
    },
    /// `conv(x) + residual`, accumulated into the residual's buffer (which is the output).
    ConvAdd {
        conv: Arc<Conv2d>,
        n: usize,
        h: usize,
        w: usize,
    },
    Linear {
        lin: Linear,
        m: usize,
    },
    MatMul {
        nb: usize,
        m: usize,
        n: usize,
        k: usize,
        a: [usize; 3],
        b: [usize; 3],
    },
    Binary {
        op: BinaryOp,
        dims: Vec<(usize, usize, usize)>,
    },
    Act(Activation),
    Clip {
        lo: f32,
        hi: f32,
    },
    Map(fn(f32) -> f32),
    RoundF16,
    MeanRows {
        len: usize,
    },
    Softmax {
        outer: usize,
        len: usize,
        inner: usize,
    },
    LayerNorm {
        len: usize,
        gamma: Option<Vec<f32>>,
        beta: Option<Vec<f32>>,
        eps: f32,
    },
    Transpose {
        brci: [usize; 4],
    },
    /// Per-channel `x * scale + shift` over `[n, c, inner]`.
    ChannelAffine {
        c: usize,
        inner: usize,
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    /// Inputs laid side by side along an axis: `outer` blocks, each input giving `chunk[i]`.
    Concat {
        outer: usize,
        chunks: Vec<usize>,
    },
    /// One part of a split: from each of `outer` rows of `row` values, `chunk` values at
    /// `offset`.
    Part {
        outer: usize,
        row: usize,
        offset: usize,
        chunk: usize,
    },
    /// A step the lowering has no kernel call for, run by the interpreter on candle tensors
    /// made from its operands (of these dimensions; this allocates).
    Interp {
        dims: Vec<Vec<usize>>,
    },
}

/// One lowered step.
#[derive(Debug, Clone)]
struct Step {
    op: Op,
    args: Vec<Src>,
    /// The buffers written and how many values of each (one, but for an interpreted step
    /// with several outputs).
    outs: Vec<(usize, usize)>,
    /// Index of the plan step (for error messages).
    origin: usize,
    profile: Option<&'static str>,
}

/// A plan lowered for one set of input shapes.
#[derive(Debug)]
pub(crate) struct Direct {
    /// The input dimensions this lowering is for, in the plan's input order.
    pub(crate) input_dims: Vec<Vec<usize>>,
    steps: Vec<Step>,
    consts: Vec<Vec<f32>>,
    /// The plan slot each constant came from (an interpreted step reads the plan's tensor).
    const_slots: Vec<usize>,
    /// Each arena buffer's length.
    buf_lens: Vec<usize>,
    /// The plan's outputs (in its order).
    outputs: Vec<Val>,
}

/// Why a lowered run did not finish.
#[derive(Debug)]
pub(crate) enum RunError {
    /// An interpreted step's output did not have the recorded shape (its shape depends on the
    /// values): the plan must go back to the interpreter.
    Shape(String),
    /// The run failed (or was stopped); the message says where.
    Failed(String),
}

/// The arena: buffers a [`Direct`] run reads and writes, kept between runs.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    bufs: Vec<Vec<f32>>,
}

/// Buffer assignment by liveness: a value's buffer returns to the free list when the last slot
/// that refers to it dies.
#[derive(Default)]
struct Assign {
    lens: Vec<usize>,
    refs: Vec<usize>,
    free: Vec<usize>,
}

impl Assign {
    /// A free buffer for `len` values: the smallest that holds them, else the largest grown,
    /// else a new one.
    fn take(&mut self, len: usize) -> usize {
        let fit = self
            .free
            .iter()
            .enumerate()
            .filter(|&(_, &b)| self.lens[b] >= len)
            .min_by_key(|&(_, &b)| self.lens[b])
            .or_else(|| self.free.iter().enumerate().max_by_key(|&(_, &b)| self.lens[b]))
            .map(|(i, _)| i);
        let b = match fit {
            Some(i) => self.free.swap_remove(i),
            None => {
                self.lens.push(0);
                self.refs.push(0);
                self.lens.len() - 1
            }
        };
        self.lens[b] = self.lens[b].max(len);
        self.refs[b] = 1;
        b
    }

    fn retain(&mut self, src: Src) {
        if let Src::Buf(b) = src {
            self.refs[b] += 1;
        }
    }

    fn release(&mut self, src: Src) {
        if let Src::Buf(b) = src {
            self.refs[b] -= 1;
            if self.refs[b] == 0 {
                self.free.push(b);
            }
        }
    }
}

/// Why a plan could not be lowered (the interpreter keeps running it).
type Why = String;

fn trailing(axes: &[usize], rank: usize) -> Option<usize> {
    let mut ax = axes.to_vec();
    ax.sort_unstable();
    ax.dedup();
    let first = rank.checked_sub(ax.len())?;
    (!ax.is_empty() && ax.iter().enumerate().all(|(i, &a)| a == first + i)).then_some(first)
}

fn axes_of(axes: &[i64], rank: usize) -> Result<Vec<usize>, Why> {
    axes.iter().map(|&a| ops::axis(a, rank).map_err(|e| e.to_string())).collect()
}

/// The values of a candle tensor as f32s.
fn values(t: &candle_core::Tensor) -> Result<Vec<f32>, Why> {
    super::compile::func::values(t).map_err(|e| e.to_string())
}

impl Direct {
    /// Lowers `plan` for the shapes a run recorded (`shapes[slot]`); `Err` names the first step
    /// this lowering cannot take.
    pub(crate) fn build(plan: &Plan, shapes: &[Option<Vec<usize>>]) -> Result<Direct, Why> {
        let shape = |slot: usize| -> Result<Vec<usize>, Why> {
            shapes.get(slot).cloned().flatten().ok_or_else(|| format!("no shape for slot {slot}"))
        };
        let mut vals: Vec<Option<Val>> = vec![None; plan.slots.len()];
        let mut consts: Vec<Vec<f32>> = Vec::new();
        let mut const_slots: Vec<usize> = Vec::new();
        let mut input_dims = Vec::new();
        for (i, (_, slot)) in plan.inputs.iter().enumerate() {
            let dims = shape(*slot)?;
            input_dims.push(dims.clone());
            vals[*slot] = Some(Val { src: Src::Input(i), dims });
        }
        let mut a = Assign::default();
        let mut steps: Vec<Step> = Vec::new();
        for (si, step) in plan.steps.iter().enumerate() {
            let what = || format!("{} ({})", step.origin, step.profile_kind().unwrap_or("conv"));
            let out_slot = *step.outputs.first().ok_or_else(|| format!("{}: no output", what()))?;
            let out_dims = shape(out_slot)?;
            let mut args: Vec<Val> = Vec::with_capacity(step.inputs.len());
            for &s in &step.inputs {
                if vals[s].is_none() {
                    let t =
                        plan.slots.get(s).and_then(Option::as_ref).ok_or_else(|| {
                            format!("{}: input slot {s} has no value", step.origin)
                        })?;
                    consts.push(values(t)?);
                    const_slots.push(s);
                    vals[s] =
                        Some(Val { src: Src::Const(consts.len() - 1), dims: t.dims().into() });
                }
                args.extend(vals[s].clone());
            }
            let x = args.first().ok_or_else(|| format!("{}: no input", step.origin))?;
            let rank = x.dims.len();
            let srcs: Vec<Src> = args.iter().map(|v| v.src).collect();
            if let Kind::Split { axis, .. } = &step.kind {
                // One copying step per part.
                let ax = ops::axis(*axis, rank).map_err(|e| e.to_string())?;
                let inner: usize = x.dims[ax + 1..].iter().product();
                let (outer, row) = (x.dims[..ax].iter().product(), x.dims[ax] * inner);
                let mut offset = 0;
                for &slot in &step.outputs {
                    let dims = shape(slot)?;
                    let chunk =
                        dims.get(ax).ok_or_else(|| format!("{}: part rank", what()))? * inner;
                    let len = outer * chunk;
                    let b = a.take(len);
                    let op = Op::Part { outer, row, offset, chunk };
                    let profile = step.profile_kind();
                    steps.push(Step {
                        op,
                        args: srcs.clone(),
                        outs: vec![(b, len)],
                        origin: si,
                        profile,
                    });
                    vals[slot] = Some(Val { src: Src::Buf(b), dims });
                    offset += chunk;
                }
                release(plan, si, &vals, &mut a);
                continue;
            }
            let same = x.len() == out_dims.iter().product::<usize>();
            let alias = |vals: &mut Vec<Option<Val>>, a: &mut Assign, src: Src| {
                a.retain(src);
                vals[out_slot] = Some(Val { src, dims: out_dims.clone() });
            };
            let op = match &step.kind {
                _ if step.outputs.len() != 1 => {
                    Op::Interp { dims: args.iter().map(|v| v.dims.clone()).collect() }
                }
                Kind::Reshape { .. }
                | Kind::Squeeze { .. }
                | Kind::ExpandDims { .. }
                | Kind::Unary(UnOp::Identity)
                | Kind::Cast { fp16: false }
                    if same =>
                {
                    alias(&mut vals, &mut a, x.src);
                    release(plan, si, &vals, &mut a);
                    continue;
                }
                Kind::Conv(c) => {
                    let &[n, _, h, w] = x.dims.as_slice() else {
                        return Err(format!("{}: conv input {:?}", what(), x.dims));
                    };
                    Op::Conv { conv: c.0.clone(), n, h, w }
                }
                Kind::Linear(l) if x.dims.last() == Some(&l.inputs()) => {
                    Op::Linear { lin: l.clone(), m: x.len() / l.inputs().max(1) }
                }
                Kind::MatMul { tx, ty }
                    if rank >= 2 && args.get(1).is_some_and(|y| y.dims.len() >= 2) =>
                {
                    let y = &args[1];
                    let (batch, m, k, n) = kernel_ops::geometry(&x.dims, &y.dims, *tx, *ty)
                        .map_err(|e| e.to_string())?;
                    let la = Layout::contiguous(Shape::from(x.dims.as_slice()));
                    let lb = Layout::contiguous(Shape::from(y.dims.as_slice()));
                    let (Some((ab, ar, ac)), Some((bb, br, bc))) = (
                        kernel_ops::operand(&la, &batch, *tx),
                        kernel_ops::operand(&lb, &batch, *ty),
                    ) else {
                        return Err(format!("{}: matmul batch strides", what()));
                    };
                    let nb = batch.iter().product();
                    Op::MatMul { nb, m, n, k, a: [ab, ar, ac], b: [bb, br, bc] }
                }
                Kind::Binary(op) if args.len() == 2 => {
                    let out_shape = Shape::from(out_dims.as_slice());
                    let stride = |v: &Val| -> Result<Vec<usize>, Why> {
                        let l = Layout::contiguous(Shape::from(v.dims.as_slice()));
                        Ok(l.broadcast_as(&out_shape).map_err(|e| e.to_string())?.stride().to_vec())
                    };
                    let (sa, sb) = (stride(x)?, stride(&args[1])?);
                    let dims = kernel_ops::collapse(&out_dims, &sa, &sb);
                    let op = kernel_ops::kernel_binop(*op);
                    // A residual add of a convolution's fresh output: the convolution
                    // accumulates straight into the other operand's buffer when that dies here.
                    if op == BinaryOp::Add
                        && let Some((at, residual)) =
                            fuse_add(plan, si, &steps, &args, &out_dims, &a)
                        && let Op::Conv { conv, n, h, w } = &steps[at].op
                    {
                        let fused = Op::ConvAdd { conv: conv.clone(), n: *n, h: *h, w: *w };
                        let Src::Buf(rb) = residual.src else {
                            return Err(format!("{}: residual not in a buffer", what()));
                        };
                        let conv_step = &mut steps[at];
                        conv_step.op = fused;
                        conv_step.args.push(residual.src);
                        conv_step.outs = vec![(rb, residual.len())];
                        // The sum lives in the residual's buffer; the conv's own buffer frees
                        // with its slot below.
                        alias(&mut vals, &mut a, residual.src);
                        release(plan, si, &vals, &mut a);
                        continue;
                    }
                    Op::Binary { op, dims }
                }
                Kind::Act(act) if same => Op::Act(*act),
                Kind::Clip { lo, hi } if same => Op::Clip { lo: *lo, hi: *hi },
                Kind::Unary(u) if same => Op::Map(match u {
                    UnOp::Tanh => f32::tanh,
                    UnOp::Exp => f32::exp,
                    UnOp::Sqrt => f32::sqrt,
                    UnOp::Abs => f32::abs,
                    UnOp::Identity => |v| v,
                }),
                Kind::Cast { fp16: true } if same => Op::RoundF16,
                Kind::ReduceMean { axes, .. } => {
                    let ax = match axes {
                        Some(ax) => axes_of(ax, rank)?,
                        None => (0..rank).collect(),
                    };
                    let first = trailing(&ax, rank).ok_or_else(|| format!("{}: axes", what()))?;
                    Op::MeanRows { len: x.dims[first..].iter().product() }
                }
                Kind::Softmax { axis } if same => {
                    let ax = ops::axis(*axis, rank).map_err(|e| e.to_string())?;
                    let (outer, len, inner) = (
                        x.dims[..ax].iter().product(),
                        x.dims[ax],
                        x.dims[ax + 1..].iter().product(),
                    );
                    Op::Softmax { outer, len, inner }
                }
                Kind::LayerNorm { axes, gamma, beta, eps } if same => {
                    let first = trailing(&axes_of(axes, rank)?, rank)
                        .ok_or_else(|| format!("{}: axes", what()))?;
                    let flat = |t: &Option<candle_core::Tensor>| t.as_ref().map(values).transpose();
                    let len = x.dims[first..].iter().product();
                    Op::LayerNorm { len, gamma: flat(gamma)?, beta: flat(beta)?, eps: *eps }
                }
                // A permute that keeps the order of every axis longer than 1 moves nothing.
                Kind::Transpose { perm }
                    if perm.len() == rank
                        && perm
                            .iter()
                            .filter(|&&p| x.dims.get(p).is_some_and(|&d| d > 1))
                            .is_sorted() =>
                {
                    alias(&mut vals, &mut a, x.src);
                    release(plan, si, &vals, &mut a);
                    continue;
                }
                Kind::Transpose { perm } if perm.len() == rank => {
                    let brci = kernel_ops::as_batched_transpose(&x.dims, perm)
                        .ok_or_else(|| format!("{}: permute {perm:?} of {:?}", what(), x.dims))?;
                    Op::Transpose { brci }
                }
                Kind::BatchNorm { scale, shift } if same && rank >= 2 => {
                    let (scale, shift) = (values(scale)?, values(shift)?);
                    let c = x.dims[1];
                    if scale.len() != c || shift.len() != c {
                        return Err(format!("{}: {} channels", what(), c));
                    }
                    Op::ChannelAffine { c, inner: x.dims[2..].iter().product(), scale, shift }
                }
                Kind::Concat { axis } => {
                    let ax = ops::axis(*axis, rank).map_err(|e| e.to_string())?;
                    let inner: usize = x.dims[ax + 1..].iter().product();
                    let chunks =
                        args.iter().map(|v| v.dims.get(ax).map_or(0, |d| d * inner)).collect();
                    Op::Concat { outer: x.dims[..ax].iter().product(), chunks }
                }
                _ => Op::Interp { dims: args.iter().map(|v| v.dims.clone()).collect() },
            };
            let mut outs = Vec::with_capacity(step.outputs.len());
            for &slot in &step.outputs {
                let dims = shape(slot)?;
                let len = dims.iter().product();
                let b = a.take(len);
                outs.push((b, len));
                vals[slot] = Some(Val { src: Src::Buf(b), dims });
            }
            steps.push(Step { op, args: srcs, outs, origin: si, profile: step.profile_kind() });
            release(plan, si, &vals, &mut a);
        }
        let outputs = plan
            .outputs
            .iter()
            .map(|(name, slot)| {
                vals.get(*slot)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| format!("output `{name}` not computed"))
            })
            .collect::<Result<Vec<_>, Why>>()?;
        Ok(Direct { input_dims, steps, consts, const_slots, buf_lens: a.lens, outputs })
    }

    /// The dimensions of the plan's outputs.
    pub(crate) fn output_dims(&self) -> impl Iterator<Item = &[usize]> {
        self.outputs.iter().map(|v| v.dims.as_slice())
    }

    /// Runs on `inputs` (the plan's inputs, in order, with [`Direct::input_dims`]); each
    /// output goes to `write(i, values)`. `stop` is polled before every step.
    pub(crate) fn run(
        &self,
        plan: &Plan,
        arena: &mut Arena,
        inputs: &[&[f32]],
        stop: &dyn Fn() -> bool,
        write: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), RunError> {
        if arena.bufs.len() != self.buf_lens.len() {
            arena.bufs = self.buf_lens.iter().map(|&n| vec![0f32; n]).collect();
        }
        for (b, &n) in arena.bufs.iter_mut().zip(&self.buf_lens) {
            if b.len() != n {
                *b = vec![0f32; n];
            }
        }
        for step in &self.steps {
            let origin = &plan.steps[step.origin].origin;
            if stop() {
                return Err(RunError::Failed(format!(
                    "stopped early before {origin}: the call was cancelled or its deadline passed"
                )));
            }
            let t = step.profile.and_then(|_| kernels::profile::start());
            if let Op::Interp { dims } = &step.op {
                self.interpret(plan, step, dims, arena, inputs)?;
            } else if let &[(b, len)] = step.outs.as_slice() {
                let mut out = std::mem::take(&mut arena.bufs[b]);
                let done = self.step(step, arena, inputs, &mut out[..len]);
                arena.bufs[b] = out;
                done.map_err(|e| RunError::Failed(format!("{origin}: {e}")))?;
            }
            if let Some(kind) = step.profile {
                kernels::profile::record(kind, t);
            }
        }
        for (i, v) in self.outputs.iter().enumerate() {
            write(i, &self.read(v.src, arena, inputs)[..v.len()]);
        }
        Ok(())
    }

    /// Runs an [`Op::Interp`] step through the interpreter: candle tensors made from its
    /// operands (a constant is the plan's own tensor), outputs copied into their buffers.
    fn interpret(
        &self,
        plan: &Plan,
        step: &Step,
        dims: &[Vec<usize>],
        arena: &mut Arena,
        inputs: &[&[f32]],
    ) -> Result<(), RunError> {
        let origin = &plan.steps[step.origin].origin;
        let failed = |e: candle_core::Error| RunError::Failed(format!("{origin}: {e}"));
        let mut tensors = Vec::with_capacity(step.args.len());
        for (&src, d) in step.args.iter().zip(dims) {
            let t = match src {
                Src::Const(i) => plan.slots[self.const_slots[i]].clone(),
                _ => {
                    let n = d.iter().product();
                    let v = &self.read(src, arena, inputs)[..n];
                    Some(
                        candle_core::Tensor::from_slice(v, d.as_slice(), &candle_core::Device::Cpu)
                            .map_err(failed)?,
                    )
                }
            };
            tensors.push(t.ok_or_else(|| RunError::Failed(format!("{origin}: empty constant")))?);
        }
        let refs: Vec<&candle_core::Tensor> = tensors.iter().collect();
        let outs = plan.steps[step.origin].run(&refs).map_err(failed)?;
        if outs.len() != step.outs.len() {
            return Err(RunError::Shape(format!("{origin}: {} outputs", outs.len())));
        }
        for (t, &(b, len)) in outs.iter().zip(&step.outs) {
            if t.elem_count() != len {
                return Err(RunError::Shape(format!(
                    "{origin}: output of {:?}, recorded {len} values",
                    t.dims()
                )));
            }
            let v = t
                .to_dtype(candle_core::DType::F32)
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                .map_err(failed)?;
            arena.bufs[b][..len].copy_from_slice(&v);
        }
        Ok(())
    }

    fn read<'a>(&'a self, src: Src, arena: &'a Arena, inputs: &[&'a [f32]]) -> &'a [f32] {
        match src {
            Src::Input(i) => inputs[i],
            Src::Const(i) => &self.consts[i],
            Src::Buf(b) => &arena.bufs[b],
        }
    }

    fn step(
        &self,
        step: &Step,
        arena: &Arena,
        inputs: &[&[f32]],
        out: &mut [f32],
    ) -> Result<(), String> {
        let arg = |i: usize| self.read(step.args[i], arena, inputs);
        let x = arg(0);
        let ok = |ok: bool, what: &str| {
            if ok { Ok(()) } else { Err(format!("{what}: lengths do not match")) }
        };
        match &step.op {
            Op::Conv { conv, n, h, w } => {
                let need = n * conv.in_channels() * h * w;
                conv.forward_into(&x[..need], *n, *h, *w, out)
            }
            Op::ConvAdd { conv, n, h, w } => {
                let need = n * conv.in_channels() * h * w;
                conv.forward_add(&x[..need], *n, *h, *w, out)
            }
            Op::Linear { lin, m } => {
                ok(lin.forward_into(&x[..m * lin.inputs()], *m, out), "linear")
            }
            Op::MatMul { nb, m, n, k, a, b } => {
                let sa = Strided { data: x, batch: a[0], row: a[1], col: a[2] };
                let sb = Strided { data: arg(1), batch: b[0], row: b[1], col: b[2] };
                ok(kernels::matmul_strided(*nb, *m, *n, *k, sa, sb, None, out), "matmul")
            }
            Op::Binary { op, dims } => {
                ok(kernels::binary_into(*op, dims, x, arg(1), out), "binary")
            }
            Op::Act(act) => ok(kernels::activation_into(&x[..out.len()], *act, out), "activation"),
            Op::Clip { lo, hi } => {
                out.iter_mut().zip(x).for_each(|(o, v)| *o = v.max(*lo).min(*hi));
                Ok(())
            }
            Op::Map(f) => {
                out.iter_mut().zip(x).for_each(|(o, v)| *o = f(*v));
                Ok(())
            }
            Op::RoundF16 => ok(kernels::round_f16(&x[..out.len()], out), "cast"),
            Op::MeanRows { len } => {
                ok(kernels::mean_rows_into(&x[..out.len() * len], *len, out), "reduce_mean")
            }
            Op::Softmax { outer, len, inner } => {
                ok(kernels::softmax(&x[..out.len()], out, *outer, *len, *inner), "softmax")
            }
            Op::LayerNorm { len, gamma, beta, eps } => ok(
                kernels::layer_norm(
                    &x[..out.len()],
                    out,
                    *len,
                    gamma.as_deref(),
                    beta.as_deref(),
                    *eps,
                ),
                "layer_norm",
            ),
            Op::Transpose { brci } => kernels::transpose_batched(&x[..out.len()], *brci, out),
            Op::ChannelAffine { c, inner, scale, shift } => {
                for (i, (o, v)) in out.chunks_mut(*inner).zip(x.chunks(*inner)).enumerate() {
                    let (s, t) = (scale[i % c], shift[i % c]);
                    o.iter_mut().zip(v).for_each(|(o, v)| *o = v * s + t);
                }
                Ok(())
            }
            Op::Part { outer, row, offset, chunk } => {
                for (o, out) in out.chunks_mut(*chunk).take(*outer).enumerate() {
                    out.copy_from_slice(&x[o * row + offset..][..*chunk]);
                }
                Ok(())
            }
            Op::Interp { .. } => Err("an interpreted step has no kernel call".into()),
            Op::Concat { outer, chunks } => {
                let row: usize = chunks.iter().sum();
                let mut at = 0;
                for (i, &chunk) in chunks.iter().enumerate() {
                    let src = arg(i);
                    for o in 0..*outer {
                        out[o * row + at..][..chunk].copy_from_slice(&src[o * chunk..][..chunk]);
                    }
                    at += chunk;
                }
                Ok(())
            }
        }
    }
}

/// Releases the slots plan step `si` frees.
fn release(plan: &Plan, si: usize, vals: &[Option<Val>], a: &mut Assign) {
    for &r in &plan.steps[si].release {
        if let Some(v) = &vals[r] {
            a.release(v.src);
        }
    }
}

/// When plan step `si` (an add of `args`) can be folded into the convolution that made one of
/// its operands: that convolution's index in `steps` and the other operand (the residual).
/// It can when the convolution was the last lowered step, has no fused activation, its output
/// dies at this add, and the residual is an arena buffer of the output's shape that dies here
/// too, is referred to by nothing else and is not the convolution's input.
fn fuse_add(
    plan: &Plan,
    si: usize,
    steps: &[Step],
    args: &[Val],
    out_dims: &[usize],
    a: &Assign,
) -> Option<(usize, Val)> {
    let last = steps.len().checked_sub(1)?;
    let conv_step = &steps[last];
    let Op::Conv { conv, .. } = &conv_step.op else { return None };
    if conv.activation() != Activation::None || conv.is_depthwise() {
        return None;
    }
    let dying = &plan.steps[si].release;
    let dies = |v: &Val| {
        plan.steps[si].inputs.iter().zip(args).any(|(s, a)| a.src == v.src && dying.contains(s))
    };
    let &[(conv_out, _)] = conv_step.outs.as_slice() else { return None };
    let conv_src = Src::Buf(conv_out);
    let (c, r) = match args {
        [p, q] if p.src == conv_src => (p, q),
        [p, q] if q.src == conv_src => (q, p),
        _ => return None,
    };
    let Src::Buf(rb) = r.src else { return None };
    let ok = c.dims == out_dims
        && r.dims == out_dims
        && dies(c)
        && dies(r)
        && a.refs[rb] == 1
        && a.refs[conv_out] == 1
        && !conv_step.args.contains(&r.src);
    ok.then(|| (last, r.clone()))
}

#[cfg(test)]
impl Direct {
    /// The lowered steps' kinds, in order.
    pub(crate) fn op_names(&self) -> Vec<&'static str> {
        self.steps
            .iter()
            .map(|s| match s.op {
                Op::Conv { .. } => "conv",
                Op::ConvAdd { .. } => "conv+add",
                Op::Linear { .. } => "linear",
                Op::MatMul { .. } => "matmul",
                Op::Binary { .. } => "binary",
                Op::Act(_) => "act",
                Op::Clip { .. } => "clip",
                Op::Map(_) => "map",
                Op::RoundF16 => "round_f16",
                Op::MeanRows { .. } => "mean",
                Op::Softmax { .. } => "softmax",
                Op::LayerNorm { .. } => "layer_norm",
                Op::Transpose { .. } => "transpose",
                Op::ChannelAffine { .. } => "batch_norm",
                Op::Concat { .. } => "concat",
                Op::Part { .. } => "part",
                Op::Interp { .. } => "interp",
            })
            .collect()
    }

    /// How many buffers the arena holds.
    pub(crate) fn buffers(&self) -> usize {
        self.buf_lens.len()
    }
}
