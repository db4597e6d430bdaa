//! The MIL recurrent ops `rnn`, `gru` and `lstm` (iOS15-iOS18, with iOS18's `gru`
//! `reset_after` and `input_bias`): parameters read at prepare time, the weights packed once,
//! the recurrence itself in `recurrent_cell`.

use std::sync::Arc;

use coreml_format::Operation;
use inference_api::Result;

use super::Builder;
use super::func::{arg, tensor, values};
use super::recurrent_cell::{Act, Cell, DirWeights, Recurrent};

impl Builder<'_> {
    /// A named activation input, `default` when absent.
    fn recurrent_act(
        &mut self,
        i: usize,
        op: &Operation,
        input: &str,
        default: Act,
    ) -> Result<Act> {
        match self.string(i, op, input)? {
            None => Ok(default),
            Some(s) => Act::parse(&s).ok_or_else(|| {
                self.unsupported(i, op, format!("`{input}` `{s}` is not a recurrent activation"))
            }),
        }
    }

    /// An optional float const parameter, empty when absent.
    fn floats_or_empty(&mut self, i: usize, op: &Operation, input: &str) -> Result<Vec<f32>> {
        Ok(self.floats(i, op, input)?.unwrap_or_default())
    }

    /// The weights of one direction (`suffix` is "" or "_back").
    fn dir_weights(&mut self, i: usize, op: &Operation, suffix: &str) -> Result<DirWeights> {
        let need = |b: &mut Self, n: &str| -> Result<Vec<f32>> {
            b.floats(i, op, n)?.ok_or_else(|| b.bad(i, op, format!("no `{n}`")))
        };
        let w_ih = need(self, &format!("weight_ih{suffix}"))?;
        let w_hh = need(self, &format!("weight_hh{suffix}"))?;
        let bias = self.floats_or_empty(i, op, &format!("bias{suffix}"))?;
        let peephole = self.floats_or_empty(i, op, &format!("peephole{suffix}"))?;
        // iOS18 gru: `input_bias` is added to the input projection, `bias` to the recurrent
        // one; without it the one `bias` is the sum of both.
        let b_ih = self.floats_or_empty(i, op, "input_bias")?;
        Ok(DirWeights { w_ih, w_hh, b_ih, b_hh: bias, peephole })
    }
}

/// `rnn`, `gru` and `lstm`: outputs `[seq or 1, batch, dirs * H]`, `[batch, dirs * H]` and
/// (lstm) the final cell state.
pub(super) fn recurrent(b: &mut Builder<'_>, i: usize, op: &Operation) -> Result<()> {
    let direction = b.string(i, op, "direction")?.unwrap_or_else(|| "forward".into());
    let output_sequence = b.flag(i, op, "output_sequence")?;
    let is_lstm = op.op_type == "lstm";
    let (reverse, bidirectional) = match direction.as_str() {
        "forward" => (false, false),
        "reverse" => (true, false),
        "bidirectional" if is_lstm => (false, true),
        other => {
            return Err(b.bad(i, op, format!("direction `{other}` for {}", op.op_type)));
        }
    };
    let cell = match op.op_type.as_str() {
        "rnn" => Cell::Rnn { act: b.recurrent_act(i, op, "activation", Act::Tanh)? },
        "gru" => Cell::Gru {
            recurrent: b.recurrent_act(i, op, "recurrent_activation", Act::Sigmoid)?,
            act: b.recurrent_act(i, op, "activation", Act::Tanh)?,
            reset_after: b.flag(i, op, "reset_after")?,
        },
        _ => {
            let clip = b.scalar(i, op, "clip")?;
            if let Some(c) = clip.filter(|c| c.is_nan() || *c < 0.0) {
                return Err(b.bad(i, op, format!("clip {c} is not a non-negative number")));
            }
            Cell::Lstm {
                recurrent: b.recurrent_act(i, op, "recurrent_activation", Act::Sigmoid)?,
                cell: b.recurrent_act(i, op, "cell_activation", Act::Tanh)?,
                act: b.recurrent_act(i, op, "activation", Act::Tanh)?,
                clip,
            }
        }
    };
    let mut weights = vec![b.dir_weights(i, op, "")?];
    if bidirectional {
        weights.push(b.dir_weights(i, op, "_back")?);
    }
    let layer =
        Recurrent::new(cell, &weights, reverse, output_sequence).map_err(|e| b.bad(i, op, e))?;
    let layer = Arc::new(layer);
    let mut inputs = vec![b.var(i, op, "x")?];
    // `initial_h` / `initial_c` are required by MIL; a NeuralNetwork layer without state
    // inputs is translated without them (zeros).
    let has_h = op.inputs.contains_key("initial_h");
    if has_h {
        inputs.push(b.var(i, op, "initial_h")?);
    }
    let has_c = is_lstm && op.inputs.contains_key("initial_c");
    if has_c {
        inputs.push(b.var(i, op, "initial_c")?);
    }
    let name = op.op_type.clone();
    b.push_fn(i, op, inputs, move |a| {
        let x = arg(a, 0)?;
        let &[seq, batch, _] = x.dims() else {
            candle_core::bail!("{name}: x of shape {:?} is not [seq, batch, input]", x.dims())
        };
        let xv = values(x)?;
        let h0 = if has_h { Some(values(arg(a, 1)?)?) } else { None };
        let c0 = if has_c { Some(values(arg(a, 1 + usize::from(has_h))?)?) } else { None };
        let out = layer
            .run(&xv, (seq, batch), h0.as_deref(), c0.as_deref())
            .map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
        let width = layer.directions() * layer.hidden();
        let steps = if output_sequence { seq } else { 1 };
        let mut outs =
            vec![tensor(out.y, &[steps, batch, width])?, tensor(out.h, &[batch, width])?];
        if is_lstm {
            outs.push(tensor(out.c, &[batch, width])?);
        }
        Ok(outs)
    });
    Ok(())
}
