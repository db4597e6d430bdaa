//! The ML Program plan lowered onto buffers: once a run through the interpreter has recorded
//! every value's shape, the plan's steps become kernel calls that read and write slices of a
//! few buffers kept between runs (chosen by liveness; reshapes alias their input; a residual
//! add folds into the convolution before it), so a steady-state run makes no candle tensors
//! and no heap allocations. A step with no kernel call here runs through the interpreter in
//! place (that step allocates); running it is in `direct_run.rs`.

use std::sync::Arc;

use candle_core::{Layout, Shape};
use kernels::{Activation, BinaryOp, Conv2d, InvertedResidual};

use super::kernel_ops::{self, Linear};
use super::ops;
use super::plan::{Kind, Plan, UnOp};

#[path = "direct_run.rs"]
mod run;

pub(crate) use run::{Arena, RunError};

/// Where a step's operand lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// The function's `i`-th input, read from the caller's tensor.
    Input(usize),
    /// Constant `i` of [`Direct::consts`].
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
    /// A convolution of `n` images of `h x w`.
    Conv {
        conv: Arc<Conv2d>,
        n: usize,
        h: usize,
        w: usize,
    },
    /// `act(conv(x) + residual)`, accumulated into the residual's buffer (which is the
    /// output); `act` is an activation step folded in after the add.
    ConvAdd {
        conv: Arc<Conv2d>,
        n: usize,
        h: usize,
        w: usize,
        act: Activation,
    },
    /// An inverted-residual block (expand, depthwise and maybe project) on `n` images of
    /// `h x w`, run by the banded kernel; with a residual, `block` adds its input.
    Block {
        block: InvertedResidual,
        n: usize,
        h: usize,
        w: usize,
    },
    /// `m` rows through a linear layer.
    Linear {
        lin: Linear,
        m: usize,
    },
    /// `nb` products `m x k` by `k x n`, operands at `[batch, row, col]` strides.
    MatMul {
        nb: usize,
        m: usize,
        n: usize,
        k: usize,
        a: [usize; 3],
        b: [usize; 3],
    },
    /// A broadcast binary op over `(size, stride a, stride b)` dimensions.
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
    /// Any other permute of `dims` (`kernels::permute_into`).
    Permute {
        dims: Vec<usize>,
        perm: Vec<usize>,
    },
    /// A 2-D max pool of `[n, c, h, w]` values of `dims`.
    MaxPool {
        pool: ops::Pool2d,
        dims: Vec<usize>,
    },
    /// Per-channel `x * scale + shift` over `[n, c, inner]`.
    ChannelAffine {
        c: usize,
        inner: usize,
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    /// Inputs laid side by side along an axis: `outer` blocks, input `i` giving `chunks[i]`.
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
    /// A step with no kernel call here, run by the interpreter on candle tensors made from its
    /// operands (of these dimensions; this allocates).
    Interp {
        dims: Vec<Vec<usize>>,
    },
}

/// One lowered step.
#[derive(Debug, Clone)]
struct Step {
    op: Op,
    args: Vec<Src>,
    /// The buffers written and how many values of each (one, but for an interpreted step with
    /// several outputs).
    outs: Vec<(usize, usize)>,
    /// Index of the plan step (for error messages and interpreted steps).
    origin: usize,
    profile: Option<&'static str>,
}

/// A plan lowered for one set of input shapes.
#[derive(Debug)]
pub(crate) struct Direct {
    /// The input dimensions this lowering is for, in the plan's input order.
    pub(crate) input_dims: Vec<Vec<usize>>,
    steps: Vec<Step>,
    /// Constants' values (empty for one only interpreted steps read).
    consts: Vec<Vec<f32>>,
    /// The plan slot each constant came from (an interpreted step reads the plan's tensor).
    const_slots: Vec<usize>,
    /// Each arena buffer's length.
    buf_lens: Vec<usize>,
    /// The plan's outputs (in its order).
    outputs: Vec<Val>,
}

/// Why a plan could not be lowered (the interpreter keeps running it).
type Why = String;

/// Buffer assignment by liveness: a buffer returns to the free list when the last slot that
/// refers to it dies.
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
        let lens = &self.lens;
        let fit = self
            .free
            .iter()
            .enumerate()
            .filter(|&(_, &b)| lens[b] >= len)
            .min_by_key(|&(_, &b)| lens[b])
            .or_else(|| self.free.iter().enumerate().max_by_key(|&(_, &b)| lens[b]))
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

    /// A new buffer for `len` values (never one on the free list).
    fn fresh(&mut self, len: usize) -> usize {
        self.lens.push(len);
        self.refs.push(1);
        self.lens.len() - 1
    }

    fn retain(&mut self, src: Src) {
        if let Src::Buf(b) = src {
            self.refs[b] += 1;
        }
    }

    fn release(&mut self, src: Src) {
        if let Src::Buf(b) = src
            && let Some(r) = self.refs.get_mut(b)
        {
            *r = r.saturating_sub(1);
            if *r == 0 {
                self.free.push(b);
            }
        }
    }
}

/// How one plan step lowers.
enum Lowered {
    /// Its output is its first input's values under other dimensions.
    Alias,
    /// A kernel call (or [`Op::Interp`]).
    Op(Op),
}

fn axes_of(axes: &[i64], rank: usize) -> Option<Vec<usize>> {
    axes.iter().map(|&a| ops::axis(a, rank).ok()).collect()
}

/// The values of a candle tensor as f32s.
fn values(t: &candle_core::Tensor) -> Option<Vec<f32>> {
    super::compile::func::values(t).ok()
}

/// How a step of `kind` on `args` giving `out` (dimensions) lowers; `None` when it has no
/// kernel call here (it is then interpreted).
fn lower(kind: &Kind, args: &[Val], out: &[usize]) -> Option<Lowered> {
    let x = args.first()?;
    let (d, rank) = (x.dims.as_slice(), x.dims.len());
    let same = x.len() == out.iter().product::<usize>();
    let op = match kind {
        Kind::Reshape { .. }
        | Kind::Squeeze { .. }
        | Kind::ExpandDims { .. }
        | Kind::Unary(UnOp::Identity)
        | Kind::Cast { fp16: false }
            if same =>
        {
            return Some(Lowered::Alias);
        }
        // A permute that keeps the order of every axis longer than 1 moves nothing.
        Kind::Transpose { perm }
            if same
                && perm.len() == rank
                && perm.iter().filter(|&&p| d.get(p).is_some_and(|&n| n > 1)).is_sorted() =>
        {
            return Some(Lowered::Alias);
        }
        Kind::Transpose { perm } if perm.len() == rank => {
            match kernel_ops::as_batched_transpose(d, perm) {
                Some(brci) => Op::Transpose { brci },
                None => Op::Permute { dims: d.to_vec(), perm: perm.clone() },
            }
        }
        Kind::Pool(pool) if pool.kind == ops::PoolKind::Max && rank == 4 => {
            Op::MaxPool { pool: *pool, dims: d.to_vec() }
        }
        Kind::Conv(c) => {
            let &[n, _, h, w] = d else { return None };
            Op::Conv { conv: c.0.clone(), n, h, w }
        }
        Kind::Linear(l) if d.last() == Some(&l.inputs()) => {
            Op::Linear { lin: l.clone(), m: x.len() / l.inputs().max(1) }
        }
        Kind::MatMul { tx, ty } if rank >= 2 && args.get(1)?.dims.len() >= 2 => {
            let y = &args[1].dims;
            let (batch, m, k, n) = kernel_ops::geometry(d, y, *tx, *ty).ok()?;
            let la = Layout::contiguous(Shape::from(d));
            let lb = Layout::contiguous(Shape::from(y.as_slice()));
            let (ab, ar, ac) = kernel_ops::operand(&la, &batch, *tx)?;
            let (bb, br, bc) = kernel_ops::operand(&lb, &batch, *ty)?;
            let nb = batch.iter().product();
            Op::MatMul { nb, m, n, k, a: [ab, ar, ac], b: [bb, br, bc] }
        }
        Kind::Binary(op) if args.len() == 2 => {
            let out_shape = Shape::from(out);
            let stride = |v: &Val| {
                let l = Layout::contiguous(Shape::from(v.dims.as_slice()));
                l.broadcast_as(&out_shape).ok().map(|l| l.stride().to_vec())
            };
            let (sa, sb) = (stride(x)?, stride(&args[1])?);
            let dims = kernel_ops::collapse(out, &sa, &sb);
            Op::Binary { op: kernel_ops::kernel_binop(*op), dims }
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
            let first = ops::trailing(&ax, rank)?;
            Op::MeanRows { len: d[first..].iter().product() }
        }
        Kind::Softmax { axis } if same => {
            let ax = ops::axis(*axis, rank).ok()?;
            let (outer, inner) = (d[..ax].iter().product(), d[ax + 1..].iter().product());
            Op::Softmax { outer, len: d[ax], inner }
        }
        Kind::LayerNorm { axes, gamma, beta, eps } if same => {
            let first = ops::trailing(&axes_of(axes, rank)?, rank)?;
            let flat = |t: &Option<candle_core::Tensor>| match t {
                Some(t) => values(t).map(Some),
                None => Some(None),
            };
            let len = d[first..].iter().product();
            Op::LayerNorm { len, gamma: flat(gamma)?, beta: flat(beta)?, eps: *eps }
        }
        Kind::BatchNorm { scale, shift } if same && rank >= 2 => {
            let (scale, shift, c) = (values(scale)?, values(shift)?, d[1]);
            if scale.len() != c || shift.len() != c {
                return None;
            }
            Op::ChannelAffine { c, inner: d[2..].iter().product(), scale, shift }
        }
        Kind::Concat { axis } => {
            let ax = ops::axis(*axis, rank).ok()?;
            let inner: usize = d[ax + 1..].iter().product();
            let chunks: Vec<usize> =
                args.iter().map(|v| v.dims.get(ax).map(|n| n * inner)).collect::<Option<_>>()?;
            let outer: usize = d[..ax].iter().product();
            if args.iter().any(|v| v.len() != outer * v.dims[ax] * inner) {
                return None;
            }
            Op::Concat { outer, chunks }
        }
        _ => return None,
    };
    Some(Lowered::Op(op))
}

impl Direct {
    /// Lowers `plan` for the shapes a run recorded (`shapes[slot]`); `Err` says why it cannot
    /// be (a value with no recorded shape).
    pub(crate) fn build(plan: &Plan, shapes: &[Option<Vec<usize>>]) -> Result<Direct, Why> {
        let shape = |slot: usize| -> Result<Vec<usize>, Why> {
            shapes.get(slot).cloned().flatten().ok_or_else(|| format!("no shape for slot {slot}"))
        };
        let mut vals: Vec<Option<Val>> = vec![None; plan.slots.len()];
        let (mut consts, mut const_slots) = (Vec::new(), Vec::new());
        let mut input_dims = Vec::new();
        for (i, (_, slot)) in plan.inputs.iter().enumerate() {
            let dims = shape(*slot)?;
            input_dims.push(dims.clone());
            vals[*slot] = Some(Val { src: Src::Input(i), dims });
        }
        let mut a = Assign::default();
        let mut steps: Vec<Step> = Vec::new();
        for (si, step) in plan.steps.iter().enumerate() {
            let mut args: Vec<Val> = Vec::with_capacity(step.inputs.len());
            for &s in &step.inputs {
                if vals[s].is_none() {
                    let t =
                        plan.slots.get(s).and_then(Option::as_ref).ok_or_else(|| {
                            format!("{}: input slot {s} has no value", step.origin)
                        })?;
                    consts.push(Vec::new());
                    const_slots.push(s);
                    vals[s] =
                        Some(Val { src: Src::Const(consts.len() - 1), dims: t.dims().into() });
                }
                args.extend(vals[s].clone());
            }
            let srcs: Vec<Src> = args.iter().map(|v| v.src).collect();
            let profile = step.profile_kind();
            if let (Kind::Split { axis, .. }, Some(x)) = (&step.kind, args.first()) {
                // One copying step per part.
                let rank = x.dims.len();
                let ax = ops::axis(*axis, rank).map_err(|e| e.to_string())?;
                let inner: usize = x.dims[ax + 1..].iter().product();
                let (outer, row) = (x.dims[..ax].iter().product(), x.dims[ax] * inner);
                let mut offset = 0;
                for &slot in &step.outputs {
                    let dims = shape(slot)?;
                    let chunk = dims.get(ax).ok_or("split: part of lower rank")? * inner;
                    let len = outer * chunk;
                    let b = a.take(len);
                    let op = Op::Part { outer, row, offset, chunk };
                    let outs = vec![(b, len)];
                    steps.push(Step { op, args: srcs.clone(), outs, origin: si, profile });
                    vals[slot] = Some(Val { src: Src::Buf(b), dims });
                    offset += chunk;
                }
                release(plan, si, &vals, &mut a);
                continue;
            }
            let out_dims = match step.outputs.as_slice() {
                [one] => Some(shape(*one)?),
                _ => None,
            };
            let lowered = out_dims.as_ref().and_then(|out| lower(&step.kind, &args, out));
            let op = match lowered {
                Some(Lowered::Alias) => {
                    let (src, dims) = (srcs[0], out_dims.unwrap_or_default());
                    a.retain(src);
                    vals[step.outputs[0]] = Some(Val { src, dims });
                    release(plan, si, &vals, &mut a);
                    continue;
                }
                Some(Lowered::Op(Op::Binary { op: BinaryOp::Add, .. }))
                    if fold_add(plan, si, &mut steps, &args, &mut vals, &mut a) =>
                {
                    release(plan, si, &vals, &mut a);
                    continue;
                }
                Some(Lowered::Op(Op::Act(act)))
                    if fold_act(plan, si, act, &mut steps, &args, &mut vals, &mut a) =>
                {
                    release(plan, si, &vals, &mut a);
                    continue;
                }
                Some(Lowered::Op(op)) => op,
                None => Op::Interp { dims: args.iter().map(|v| v.dims.clone()).collect() },
            };
            if !matches!(op, Op::Interp { .. }) {
                for v in &args {
                    fill_const(plan, v.src, &mut consts, &const_slots)?;
                }
            }
            let mut outs = Vec::with_capacity(step.outputs.len());
            for &slot in &step.outputs {
                let dims = shape(slot)?;
                let len = dims.iter().product();
                let b = a.take(len);
                outs.push((b, len));
                vals[slot] = Some(Val { src: Src::Buf(b), dims });
            }
            steps.push(Step { op, args: srcs, outs, origin: si, profile });
            fuse_block(plan, &mut steps, &mut vals, &mut a);
            release(plan, si, &vals, &mut a);
        }
        let outputs = plan
            .outputs
            .iter()
            .map(|(name, slot)| {
                vals.get(*slot).cloned().flatten().ok_or(format!("output `{name}` not computed"))
            })
            .collect::<Result<Vec<_>, Why>>()?;
        for v in &outputs {
            fill_const(plan, v.src, &mut consts, &const_slots)?;
        }
        Ok(Direct { input_dims, steps, consts, const_slots, buf_lens: a.lens, outputs })
    }

    /// The dimensions of the plan's outputs.
    pub(crate) fn output_dims(&self) -> impl Iterator<Item = &[usize]> {
        self.outputs.iter().map(|v| v.dims.as_slice())
    }
}

/// Extracts the values of constant `src` (when it is one) the first time a kernel call or an
/// output reads them; a constant only interpreted steps read stays a plan tensor.
fn fill_const(plan: &Plan, src: Src, consts: &mut [Vec<f32>], slots: &[usize]) -> Result<(), Why> {
    if let Src::Const(i) = src
        && consts[i].is_empty()
    {
        let t = plan.slots[slots[i]].as_ref().ok_or("a constant vanished")?;
        consts[i] = values(t).ok_or("a constant is not numeric")?;
    }
    Ok(())
}

/// Releases the slots plan step `si` frees.
fn release(plan: &Plan, si: usize, vals: &[Option<Val>], a: &mut Assign) {
    for &r in &plan.steps[si].release {
        if let Some(v) = &vals[r] {
            a.release(v.src);
        }
    }
}

/// Folds plan step `si`, an add of `args`, into the convolution lowered just before it when
/// that is safe: the convolution has no fused activation and is not depthwise, its output dies
/// at this add, and the other operand (the residual) is a buffer of the output's shape that
/// dies here too, is referred to by nothing else and is not the convolution's input. The
/// convolution then accumulates into the residual's buffer, which becomes the add's output.
fn fold_add(
    plan: &Plan,
    si: usize,
    steps: &mut [Step],
    args: &[Val],
    vals: &mut [Option<Val>],
    a: &mut Assign,
) -> bool {
    let step = &plan.steps[si];
    let (Some(conv_step), Some(&out_slot)) = (steps.last_mut(), step.outputs.first()) else {
        return false;
    };
    let dies = |v: &Val| {
        step.inputs.iter().zip(args).any(|(s, x)| x.src == v.src && step.release.contains(s))
    };
    if let Op::Block { block, n, h, w } = &conv_step.op {
        // `block(x) + x`, the block's output dying here: the banded kernel adds the residual.
        let &[(out, _)] = conv_step.outs.as_slice() else { return false };
        let (x, y) = (conv_step.args[0], Src::Buf(out));
        let y = match args {
            [p, q] if p.src == y && q.src == x && p.dims == q.dims => p,
            [p, q] if q.src == y && p.src == x && p.dims == q.dims => q,
            _ => return false,
        };
        if !dies(y) || a.refs[out] != 1 {
            return false;
        }
        let Some(block) = block.with_residual() else { return false };
        conv_step.op = Op::Block { block, n: *n, h: *h, w: *w };
        a.retain(y.src);
        vals[out_slot] = Some(Val { src: y.src, dims: y.dims.clone() });
        return true;
    }
    let Op::Conv { conv, n, h, w } = &conv_step.op else { return false };
    let &[(conv_out, _)] = conv_step.outs.as_slice() else { return false };
    if conv.activation() != Activation::None || conv.is_depthwise() {
        return false;
    }
    let conv_src = Src::Buf(conv_out);
    let (c, r) = match args {
        [p, q] if p.src == conv_src => (p, q),
        [p, q] if q.src == conv_src => (q, p),
        _ => return false,
    };
    let Src::Buf(rb) = r.src else { return false };
    let safe = c.dims == r.dims
        && dies(c)
        && dies(r)
        && a.refs[rb] == 1
        && a.refs[conv_out] == 1
        && !conv_step.args.contains(&r.src);
    if !safe {
        return false;
    }
    conv_step.op = Op::ConvAdd { conv: conv.clone(), n: *n, h: *h, w: *w, act: Activation::None };
    conv_step.args.push(r.src);
    conv_step.outs = vec![(rb, r.len())];
    // The sum lives in the residual's buffer; the conv's own buffer frees with its slot.
    a.retain(r.src);
    vals[out_slot] = Some(Val { src: r.src, dims: r.dims.clone() });
    true
}

/// Folds plan step `si`, activation `act` of `args`, into the convolution-and-add lowered just
/// before it when that step's sum is the activation's only operand, dies here and is referred to
/// by nothing else: the convolution's epilogue then applies `act` to the sum in place, and the
/// sum's buffer becomes the activation's output.
#[allow(clippy::too_many_arguments)]
fn fold_act(
    plan: &Plan,
    si: usize,
    act: Activation,
    steps: &mut [Step],
    args: &[Val],
    vals: &mut [Option<Val>],
    a: &mut Assign,
) -> bool {
    let step = &plan.steps[si];
    let (Some(conv_step), Some(&out_slot), [x], &[x_slot]) =
        (steps.last_mut(), step.outputs.first(), args, step.inputs.as_slice())
    else {
        return false;
    };
    let Op::ConvAdd { act: folded @ Activation::None, .. } = &mut conv_step.op else {
        return false;
    };
    let &[(sum, _)] = conv_step.outs.as_slice() else { return false };
    if x.src != Src::Buf(sum) || !step.release.contains(&x_slot) || a.refs[sum] != 1 {
        return false;
    }
    *folded = act;
    a.retain(x.src);
    vals[out_slot] = Some(Val { src: x.src, dims: x.dims.clone() });
    true
}

/// Grows inverted-residual blocks out of the last lowered steps: a 1x1 expansion then a
/// depthwise convolution become one [`Op::Block`] (when the banded kernel runs them and pays at
/// this size), and a 1x1 projection right after such a block joins it. Each step must read
/// only the previous one's fresh output, which dies there. The block writes the last step's
/// buffer, or a fresh one when that was its input's (free again once the expansion read it).
fn fuse_block(plan: &Plan, steps: &mut Vec<Step>, vals: &mut [Option<Val>], a: &mut Assign) {
    let [.., prev, last] = steps.as_slice() else { return };
    if !crate::models::fusion_enabled() {
        return;
    }
    let (&[(po, _)], &[(lo, len)]) = (prev.outs.as_slice(), last.outs.as_slice()) else {
        return;
    };
    let Op::Conv { conv: cl, .. } = &last.op else { return };
    let producer = &plan.steps[prev.origin];
    let chained = last.args == [Src::Buf(po)]
        && producer.outputs.iter().all(|o| plan.steps[last.origin].release.contains(o))
        && prev.args.len() == 1;
    let out_slot = plan.steps[last.origin].outputs.first().copied();
    let owned = out_slot.is_some_and(|o| vals[o].as_ref().is_some_and(|v| v.src == Src::Buf(lo)));
    let (Some(out_slot), true) = (out_slot, chained && owned) else { return };
    let (block, n, h, w) = match &prev.op {
        Op::Conv { conv, n, h, w } => {
            (InvertedResidual::new(conv.clone(), cl.clone(), None, false), *n, *h, *w)
        }
        Op::Block { block, n, h, w } => (block.with_project(cl.clone()), *n, *h, *w),
        _ => return,
    };
    let Some(block) = block else { return };
    if !block.pays(h, w) {
        return;
    }
    let mut out = lo;
    if prev.args[0] == Src::Buf(lo) {
        out = a.fresh(len);
        a.release(Src::Buf(lo));
        if let Some(v) = vals[out_slot].as_mut() {
            v.src = Src::Buf(out);
        }
    }
    let fused = Step {
        op: Op::Block { block, n, h, w },
        args: prev.args.clone(),
        outs: vec![(out, len)],
        origin: last.origin,
        profile: None,
    };
    steps.truncate(steps.len() - 2);
    steps.push(fused);
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
                Op::Block { .. } => "block",
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
                Op::Permute { .. } => "permute",
                Op::MaxPool { .. } => "max_pool",
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
