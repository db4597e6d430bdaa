//! Running a lowered plan ([`Direct`]): each step's kernel call on slices of the arena's
//! buffers, interpreted steps through candle tensors, outputs handed to the caller.

use kernels::Strided;

use super::{Direct, Op, Src, Step};
use crate::mlprogram::plan::Plan;

/// Why a lowered run did not finish.
#[derive(Debug)]
pub(crate) enum RunError {
    /// An interpreted step's output did not have the recorded shape (its shape depends on the
    /// values): the plan must go back to the interpreter.
    Shape(String),
    /// The run failed (or was stopped); the message says where.
    Failed(String),
}

/// The buffers a [`Direct`] run reads and writes, kept between runs.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    bufs: Vec<Vec<f32>>,
}

/// The first `n` values of `x`, or an error naming the shortfall.
fn head(x: &[f32], n: usize) -> Result<&[f32], String> {
    x.get(..n).ok_or_else(|| format!("operand holds {} values, the step reads {n}", x.len()))
}

impl Direct {
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
        if arena.bufs.len() != self.buf_lens.len()
            || arena.bufs.iter().zip(&self.buf_lens).any(|(b, &n)| b.len() != n)
        {
            arena.bufs = self.buf_lens.iter().map(|&n| vec![0f32; n]).collect();
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
                // The output buffer is never one of the step's operands (the lowering took it
                // from the free list before releasing them), so it can be taken out meanwhile.
                let mut out = std::mem::take(&mut arena.bufs[b]);
                let done = match out.get_mut(..len) {
                    Some(o) => self.step(step, arena, inputs, o),
                    None => Err(format!("output buffer holds fewer than {len} values")),
                };
                arena.bufs[b] = out;
                done.map_err(|e| RunError::Failed(format!("{origin}: {e}")))?;
            }
            if let Some(kind) = step.profile {
                kernels::profile::record(kind, t);
            }
        }
        for (i, v) in self.outputs.iter().enumerate() {
            let values =
                head(self.read(v.src, arena, inputs), v.len()).map_err(RunError::Failed)?;
            write(i, values);
        }
        Ok(())
    }

    fn read<'a>(&'a self, src: Src, arena: &'a Arena, inputs: &[&'a [f32]]) -> &'a [f32] {
        let v = match src {
            Src::Input(i) => inputs.get(i).copied(),
            Src::Const(i) => self.consts.get(i).map(Vec::as_slice),
            Src::Buf(b) => arena.bufs.get(b).map(Vec::as_slice),
        };
        v.unwrap_or(&[])
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
        let failed = |e: String| RunError::Failed(format!("{origin}: {e}"));
        let mut tensors = Vec::with_capacity(step.args.len());
        for (&src, d) in step.args.iter().zip(dims) {
            let t = match src {
                // The plan's tensor, under the dimensions an alias may have given it.
                Src::Const(i) => self
                    .const_slots
                    .get(i)
                    .and_then(|&s| plan.slots[s].as_ref())
                    .ok_or_else(|| failed("a constant vanished".into()))?
                    .reshape(d.as_slice())
                    .map_err(|e| failed(e.to_string()))?,
                _ => {
                    let v = head(self.read(src, arena, inputs), d.iter().product());
                    let cpu = &candle_core::Device::Cpu;
                    candle_core::Tensor::from_slice(v.map_err(failed)?, d.as_slice(), cpu)
                        .map_err(|e| failed(e.to_string()))?
                }
            };
            tensors.push(t);
        }
        let refs: Vec<&candle_core::Tensor> = tensors.iter().collect();
        let outs = plan.steps[step.origin].run(&refs).map_err(|e| failed(e.to_string()))?;
        if outs.len() != step.outs.len() {
            return Err(RunError::Shape(format!("{origin}: {} outputs", outs.len())));
        }
        for (t, &(b, len)) in outs.iter().zip(&step.outs) {
            if t.elem_count() != len {
                return Err(RunError::Shape(format!(
                    "{origin}: an output of {:?}, where the first run had {len} values",
                    t.dims()
                )));
            }
            let v = t
                .to_dtype(candle_core::DType::F32)
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                .map_err(|e| failed(e.to_string()))?;
            let dst = arena.bufs.get_mut(b).and_then(|o| o.get_mut(..len));
            dst.ok_or_else(|| failed("output buffer too small".into()))?.copy_from_slice(&v);
        }
        Ok(())
    }

    /// One step's kernel call into `out` (exactly its output's values).
    fn step(
        &self,
        step: &Step,
        arena: &Arena,
        inputs: &[&[f32]],
        out: &mut [f32],
    ) -> Result<(), String> {
        let arg = |i: usize| step.args.get(i).map_or(&[][..], |&s| self.read(s, arena, inputs));
        let x = arg(0);
        let n_out = out.len();
        let ok = |ok: bool, what: &str| {
            if ok { Ok(()) } else { Err(format!("{what}: operand lengths do not match")) }
        };
        match &step.op {
            Op::Conv { conv, n, h, w } => {
                conv.forward_into(head(x, n * conv.in_channels() * h * w)?, *n, *h, *w, out)
            }
            Op::ConvAdd { conv, n, h, w, act } => {
                let x = head(x, n * conv.in_channels() * h * w)?;
                conv.forward_add_act(x, *n, *h, *w, out, *act)
            }
            Op::Block { block, n, h, w } => {
                block.forward_into(head(x, n * block.in_channels() * h * w)?, *n, *h, *w, out)
            }
            Op::Linear { lin, m } => {
                ok(lin.forward_into(head(x, m * lin.inputs())?, *m, out), "linear")
            }
            Op::MatMul { nb, m, n, k, a, b } => {
                let sa = Strided { data: x, batch: a[0], row: a[1], col: a[2] };
                let sb = Strided { data: arg(1), batch: b[0], row: b[1], col: b[2] };
                ok(kernels::matmul_strided(*nb, *m, *n, *k, sa, sb, None, out), "matmul")
            }
            Op::Binary { op, dims } => {
                ok(kernels::binary_into(*op, dims, x, arg(1), out), "binary")
            }
            Op::Act(act) => ok(kernels::activation_into(head(x, n_out)?, *act, out), "activation"),
            Op::Clip { lo, hi } => {
                out.iter_mut().zip(head(x, n_out)?).for_each(|(o, v)| *o = v.max(*lo).min(*hi));
                Ok(())
            }
            Op::Map(f) => {
                out.iter_mut().zip(head(x, n_out)?).for_each(|(o, v)| *o = f(*v));
                Ok(())
            }
            Op::RoundF16 => ok(kernels::round_f16(head(x, n_out)?, out), "cast"),
            Op::MeanRows { len } => {
                ok(kernels::mean_rows_into(head(x, n_out * len)?, *len, out), "reduce_mean")
            }
            Op::Softmax { outer, len, inner } => {
                ok(kernels::softmax(head(x, n_out)?, out, *outer, *len, *inner), "softmax")
            }
            Op::LayerNorm { len, gamma, beta, eps } => {
                let (g, b) = (gamma.as_deref(), beta.as_deref());
                ok(kernels::layer_norm(head(x, n_out)?, out, *len, g, b, *eps), "layer_norm")
            }
            Op::Transpose { brci } => kernels::transpose_batched(head(x, n_out)?, *brci, out),
            Op::Permute { dims, perm } => kernels::permute_into(head(x, n_out)?, dims, perm, out),
            Op::MaxPool { pool, dims } => pool
                .max_pool_into(head(x, dims.iter().product())?, dims, out)
                .unwrap_or_else(|| Err("max pool: the output does not match the input".into())),
            Op::ChannelAffine { c, inner, scale, shift } => {
                let x = head(x, n_out)?;
                let inner = (*inner).max(1);
                for (i, (o, v)) in out.chunks_mut(inner).zip(x.chunks(inner)).enumerate() {
                    let (s, t) = (scale[i % c], shift[i % c]);
                    o.iter_mut().zip(v).for_each(|(o, v)| *o = v * s + t);
                }
                Ok(())
            }
            Op::Concat { outer, chunks } => {
                let row: usize = chunks.iter().sum();
                if n_out != outer * row {
                    return Err("concat: output length".into());
                }
                let mut at = 0;
                for (i, &chunk) in chunks.iter().enumerate() {
                    let src = head(arg(i), outer * chunk)?;
                    for (o, part) in src.chunks_exact(chunk.max(1)).enumerate().take(*outer) {
                        out[o * row + at..][..chunk].copy_from_slice(&part[..chunk]);
                    }
                    at += chunk;
                }
                Ok(())
            }
            Op::Part { outer, row, offset, chunk } => {
                let x = head(x, outer * row)?;
                if n_out != outer * chunk || offset + chunk > *row {
                    return Err("split: part length".into());
                }
                for (o, dst) in out.chunks_mut((*chunk).max(1)).enumerate().take(*outer) {
                    dst.copy_from_slice(&x[o * row + offset..][..*chunk]);
                }
                Ok(())
            }
            Op::Interp { .. } => Err("an interpreted step has no kernel call".into()),
        }
    }
}
