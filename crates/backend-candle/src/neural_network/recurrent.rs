//! Recurrent NeuralNetwork layers (`simpleRecurrent`, `gru`, `uniDirectionalLSTM`,
//! `biDirectionalLSTM`) as the MIL `rnn` / `gru` / `lstm` ops, so both formats run the same
//! cell code; and `copy`.
//!
//! The layers read `[seq, batch, input, 1, 1]` (or `[batch, input, 1, 1]`, one step, in the
//! rank-5 mapping) and state inputs `[1, batch, hidden, 1, 1]`; outputs keep that layout.

use coreml_format::Argument;
use coreml_format::proto::{self as pb, NeuralNetworkLayer as Layer};
use inference_api::Result;

use super::{Emitter, boolean, float, floats, ints, name, string};

/// The MIL name of a recurrent activation. The recurrent layers use the activations' standard
/// parameters (hard sigmoid 0.2, 0.5; scaled tanh 1, 1; linear 1, 0); coremltools writes them
/// as empty messages (all zero), which Core ML reads as the defaults.
fn act_name(e: &Emitter, a: Option<&pb::ActivationParams>) -> Result<&'static str> {
    use pb::activation_params::NonlinearityType as N;
    let default = |got: (f32, f32), want: (f32, f32)| got == (0.0, 0.0) || got == want;
    let kind = a.and_then(|a| a.nonlinearity_type.as_ref());
    let name = match kind {
        Some(N::Sigmoid(_)) => Some("sigmoid"),
        Some(N::Tanh(_)) => Some("tanh"),
        Some(N::ReLu(_)) => Some("relu"),
        Some(N::Linear(p)) if default((p.alpha, p.beta), (1.0, 0.0)) => Some("linear"),
        Some(N::SigmoidHard(p)) if default((p.alpha, p.beta), (0.2, 0.5)) => Some("sigmoid_hard"),
        Some(N::ScaledTanh(p)) if default((p.alpha, p.beta), (1.0, 1.0)) => Some("scaled_tanh"),
        _ => None,
    };
    name.ok_or_else(|| {
        e.unsupported(
            "a recurrent activation other than sigmoid, tanh, relu, or linear / hard sigmoid / \
             scaled tanh with their default parameters",
        )
    })
}

/// The activations of a layer (`n` of them).
fn acts(e: &Emitter, list: &[pb::ActivationParams], n: usize) -> Result<Vec<&'static str>> {
    if list.len() != n {
        return Err(e.bad(format!("{} activations, expected {n}", list.len())));
    }
    list.iter().map(|a| act_name(e, Some(a))).collect()
}

/// The gate matrices `ws` (each `rows x cols`) stacked into one `[n * rows, cols]` const.
fn stack(
    e: &Emitter,
    ws: &[(Option<&pb::WeightParams>, &str)],
    rows: usize,
    cols: usize,
) -> Result<Vec<f32>> {
    let mut v = Vec::with_capacity(ws.len() * rows * cols);
    for (w, what) in ws {
        v.extend(e.weights(*w, what, rows * cols, rows)?);
    }
    Ok(v)
}

/// The layer's sequence input as `[seq, batch, input]`, and its rank (5 or 4).
fn seq_input(e: &mut Emitter, l: &Layer, input: usize) -> Result<(String, usize)> {
    let (x, rank) = e.input(l, 0)?;
    let input = i64::try_from(input).unwrap_or(i64::MAX);
    match rank {
        Some(5) => Ok((e.reshape(&x, &[0, 0, input]), 5)),
        Some(4) => Ok((e.reshape(&x, &[1, -1, input]), 4)),
        r => Err(e.unsupported(format!("a recurrent input of rank {r:?} (expected 5 or 4)"))),
    }
}

/// State input `k` as `[batch, hidden]`.
fn state_input(e: &mut Emitter, l: &Layer, k: usize, hidden: usize) -> Result<String> {
    let (v, _) = e.input(l, k)?;
    Ok(e.reshape(&v, &[-1, i64::try_from(hidden).unwrap_or(i64::MAX)]))
}

/// Binds the MIL outputs back in the layer's layout: the sequence output first, then states.
fn bind_outputs(e: &mut Emitter, l: &Layer, rank: usize, outs: &[String]) -> Result<()> {
    if l.output.len() > outs.len() || l.output.is_empty() {
        return Err(e.bad(format!("{} outputs, expected 1 to {}", l.output.len(), outs.len())));
    }
    for (k, o) in outs.iter().enumerate().take(l.output.len()) {
        let shape: &[i64] = match (k, rank) {
            (0, 5) => &[0, 0, -1, 1, 1],
            (_, 5) => &[1, 0, -1, 1, 1],
            _ => &[0, -1, 1, 1],
        };
        let v = if (k, rank) == (0, 4) {
            // [1, batch, hidden] -> [batch, hidden, 1, 1]
            let sq = e.op("squeeze", vec![("x", name(o)), ("axes", ints(&[0]))], Some(2));
            e.reshape(&sq, shape)
        } else if k > 0 && rank == 5 {
            let ex = e.op("expand_dims", vec![("x", name(o)), ("axes", ints(&[0]))], Some(3));
            e.reshape(&ex, shape)
        } else {
            e.reshape(o, shape)
        };
        e.bind(l, k, v)?;
    }
    Ok(())
}

type Inputs = Vec<(&'static str, Vec<Argument>)>;

/// Emits `op_type` with `inputs` and binds its `n` outputs.
fn emit(
    e: &mut Emitter,
    l: &Layer,
    op_type: &str,
    inputs: Inputs,
    n: usize,
    rank: usize,
) -> Result<()> {
    let outs = e.op_n(op_type, inputs, n, Some(3));
    bind_outputs(e, l, rank, &outs)
}

/// `simpleRecurrent`: the MIL `rnn`.
pub(super) fn simple_recurrent(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::SimpleRecurrentLayerParams,
) -> Result<()> {
    let (inp, hid) = (p.input_vector_size as usize, p.output_vector_size as usize);
    let (x, rank) = seq_input(e, l, inp)?;
    let mut inputs: Inputs = vec![
        ("x", name(&x)),
        (
            "weight_ih",
            floats(
                stack(e, &[(p.weight_matrix.as_ref(), "weightMatrix")], hid, inp)?,
                vec![hid, inp],
            ),
        ),
        (
            "weight_hh",
            floats(
                stack(e, &[(p.recursion_matrix.as_ref(), "recursionMatrix")], hid, hid)?,
                vec![hid, hid],
            ),
        ),
        ("activation", string(act_name(e, p.activation.as_ref())?)),
        ("output_sequence", boolean(p.sequence_output)),
        ("direction", string(if p.reverse_input { "reverse" } else { "forward" })),
    ];
    if p.has_bias_vector {
        inputs.push((
            "bias",
            floats(e.weights(p.bias_vector.as_ref(), "biasVector", hid, hid)?, vec![hid]),
        ));
    }
    match l.input.len() {
        1 => {}
        2 => inputs.push(("initial_h", name(&state_input(e, l, 1, hid)?))),
        n => return Err(e.bad(format!("{n} inputs, expected 1 or 2"))),
    }
    emit(e, l, "rnn", inputs, 2, rank)
}

/// `gru`: the MIL `gru` (gates reset, output, update).
pub(super) fn gru(e: &mut Emitter, l: &Layer, p: &pb::GruLayerParams) -> Result<()> {
    let (inp, hid) = (p.input_vector_size as usize, p.output_vector_size as usize);
    let (x, rank) = seq_input(e, l, inp)?;
    let a = acts(e, &p.activations, 2)?;
    let w_ih = stack(
        e,
        &[
            (p.reset_gate_weight_matrix.as_ref(), "resetGateWeightMatrix"),
            (p.output_gate_weight_matrix.as_ref(), "outputGateWeightMatrix"),
            (p.update_gate_weight_matrix.as_ref(), "updateGateWeightMatrix"),
        ],
        hid,
        inp,
    )?;
    let w_hh = stack(
        e,
        &[
            (p.reset_gate_recursion_matrix.as_ref(), "resetGateRecursionMatrix"),
            (p.output_gate_recursion_matrix.as_ref(), "outputGateRecursionMatrix"),
            (p.update_gate_recursion_matrix.as_ref(), "updateGateRecursionMatrix"),
        ],
        hid,
        hid,
    )?;
    let mut inputs: Inputs = vec![
        ("x", name(&x)),
        ("weight_ih", floats(w_ih, vec![3 * hid, inp])),
        ("weight_hh", floats(w_hh, vec![3 * hid, hid])),
        ("recurrent_activation", string(a[0])),
        ("activation", string(a[1])),
        ("output_sequence", boolean(p.sequence_output)),
        ("direction", string(if p.reverse_input { "reverse" } else { "forward" })),
    ];
    if p.has_bias_vectors {
        let b = stack(
            e,
            &[
                (p.reset_gate_bias_vector.as_ref(), "resetGateBiasVector"),
                (p.output_gate_bias_vector.as_ref(), "outputGateBiasVector"),
                (p.update_gate_bias_vector.as_ref(), "updateGateBiasVector"),
            ],
            hid,
            1,
        )?;
        inputs.push(("bias", floats(b, vec![3 * hid])));
    }
    match l.input.len() {
        1 => {}
        2 => inputs.push(("initial_h", name(&state_input(e, l, 1, hid)?))),
        n => return Err(e.bad(format!("{n} inputs, expected 1 or 2"))),
    }
    emit(e, l, "gru", inputs, 2, rank)
}

/// One LSTM direction's weights, bias and peepholes as MIL inputs (gates i, f, o, z).
fn lstm_weights(
    e: &Emitter,
    w: Option<&pb::LstmWeightParams>,
    params: &pb::LstmParams,
    (inp, hid): (usize, usize),
    suffix: &'static [&'static str; 4],
) -> Result<Inputs> {
    let w = w.ok_or_else(|| e.bad("no weightParams"))?;
    let w_ih = stack(
        e,
        &[
            (w.input_gate_weight_matrix.as_ref(), "inputGateWeightMatrix"),
            (w.forget_gate_weight_matrix.as_ref(), "forgetGateWeightMatrix"),
            (w.output_gate_weight_matrix.as_ref(), "outputGateWeightMatrix"),
            (w.block_input_weight_matrix.as_ref(), "blockInputWeightMatrix"),
        ],
        hid,
        inp,
    )?;
    let w_hh = stack(
        e,
        &[
            (w.input_gate_recursion_matrix.as_ref(), "inputGateRecursionMatrix"),
            (w.forget_gate_recursion_matrix.as_ref(), "forgetGateRecursionMatrix"),
            (w.output_gate_recursion_matrix.as_ref(), "outputGateRecursionMatrix"),
            (w.block_input_recursion_matrix.as_ref(), "blockInputRecursionMatrix"),
        ],
        hid,
        hid,
    )?;
    let mut bias = if params.has_bias_vectors {
        stack(
            e,
            &[
                (w.input_gate_bias_vector.as_ref(), "inputGateBiasVector"),
                (w.forget_gate_bias_vector.as_ref(), "forgetGateBiasVector"),
                (w.output_gate_bias_vector.as_ref(), "outputGateBiasVector"),
                (w.block_input_bias_vector.as_ref(), "blockInputBiasVector"),
            ],
            hid,
            1,
        )?
    } else {
        vec![0.0; 4 * hid]
    };
    if params.forget_bias {
        bias[hid..2 * hid].iter_mut().for_each(|b| *b += 1.0);
    }
    let mut inputs: Inputs = vec![
        (suffix[0], floats(w_ih, vec![4 * hid, inp])),
        (suffix[1], floats(w_hh, vec![4 * hid, hid])),
        (suffix[2], floats(bias, vec![4 * hid])),
    ];
    if params.has_peephole_vectors {
        let p = stack(
            e,
            &[
                (w.input_gate_peephole_vector.as_ref(), "inputGatePeepholeVector"),
                (w.forget_gate_peephole_vector.as_ref(), "forgetGatePeepholeVector"),
                (w.output_gate_peephole_vector.as_ref(), "outputGatePeepholeVector"),
            ],
            hid,
            1,
        )?;
        inputs.push((suffix[3], floats(p, vec![3 * hid])));
    }
    Ok(inputs)
}

const FWD: &[&str; 4] = &["weight_ih", "weight_hh", "bias", "peephole"];
const BACK: &[&str; 4] = &["weight_ih_back", "weight_hh_back", "bias_back", "peephole_back"];

/// The LSTM options both directions share.
fn lstm_common(
    e: &Emitter,
    p: Option<&pb::LstmParams>,
    a: &[&'static str],
) -> Result<(pb::LstmParams, Inputs)> {
    let p = p.cloned().unwrap_or_default();
    if p.coupled_input_and_forget_gate {
        return Err(e.unsupported("coupledInputAndForgetGate"));
    }
    let clip = if p.cell_clip_threshold == 0.0 { 50.0 } else { p.cell_clip_threshold };
    let inputs: Inputs = vec![
        ("recurrent_activation", string(a[0])),
        ("cell_activation", string(a[1])),
        ("activation", string(a[2])),
        ("output_sequence", boolean(p.sequence_output)),
        ("clip", float(clip)),
    ];
    Ok((p, inputs))
}

/// `uniDirectionalLSTM`: the MIL `lstm`, forward or reverse.
pub(super) fn uni_lstm(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::UniDirectionalLstmLayerParams,
) -> Result<()> {
    let (inp, hid) = (p.input_vector_size as usize, p.output_vector_size as usize);
    let (x, rank) = seq_input(e, l, inp)?;
    let a = acts(e, &p.activations, 3)?;
    let (params, mut inputs) = lstm_common(e, p.params.as_ref(), &a)?;
    inputs.extend(lstm_weights(e, p.weight_params.as_ref(), &params, (inp, hid), FWD)?);
    inputs.push(("x", name(&x)));
    inputs.push(("direction", string(if p.reverse_input { "reverse" } else { "forward" })));
    match l.input.len() {
        1 => {}
        3 => {
            inputs.push(("initial_h", name(&state_input(e, l, 1, hid)?)));
            inputs.push(("initial_c", name(&state_input(e, l, 2, hid)?)));
        }
        n => return Err(e.unsupported(format!("{n} inputs (expected x, or x with h and c)"))),
    }
    emit(e, l, "lstm", inputs, 3, rank)
}

/// `biDirectionalLSTM`: the MIL `lstm` with direction `bidirectional`; outputs `y`, then the
/// forward and backward `h` and `c`.
pub(super) fn bi_lstm(
    e: &mut Emitter,
    l: &Layer,
    p: &pb::BiDirectionalLstmLayerParams,
) -> Result<()> {
    let (inp, hid) = (p.input_vector_size as usize, p.output_vector_size as usize);
    let (x, rank) = seq_input(e, l, inp)?;
    let a = acts(e, &p.activations_forward_lstm, 3)?;
    if acts(e, &p.activations_backward_lstm, 3)? != a {
        return Err(e.unsupported("different activations in the two directions"));
    }
    let (params, mut inputs) = lstm_common(e, p.params.as_ref(), &a)?;
    let [wf, wb] = p.weight_params.as_slice() else {
        return Err(e.bad(format!("{} weightParams, expected 2", p.weight_params.len())));
    };
    inputs.extend(lstm_weights(e, Some(wf), &params, (inp, hid), FWD)?);
    inputs.extend(lstm_weights(e, Some(wb), &params, (inp, hid), BACK)?);
    inputs.push(("x", name(&x)));
    inputs.push(("direction", string("bidirectional")));
    match l.input.len() {
        1 => {}
        5 => {
            for (k, which) in [(1, "initial_h"), (2, "initial_c")] {
                let f = state_input(e, l, k, hid)?;
                let b = state_input(e, l, k + 2, hid)?;
                let both = e.op(
                    "concat",
                    vec![
                        ("values", vec![Argument::Name(f), Argument::Name(b)]),
                        ("axis", super::int(1)),
                    ],
                    Some(2),
                );
                inputs.push((which, name(&both)));
            }
        }
        n => return Err(e.unsupported(format!("{n} inputs (expected x, or x with 4 states)"))),
    }
    let outs = e.op_n("lstm", inputs, 3, Some(3));
    let hid_i = i64::try_from(hid).unwrap_or(i64::MAX);
    let mut all = vec![outs[0].clone()];
    let halves: Vec<Vec<String>> = outs[1..]
        .iter()
        .map(|s| {
            e.op_n(
                "split",
                vec![
                    ("x", name(s)),
                    ("axis", super::int(1)),
                    ("split_sizes", ints(&[hid_i, hid_i])),
                ],
                2,
                Some(2),
            )
        })
        .collect();
    // y, h_f, c_f, h_b, c_b
    all.extend([
        halves[0][0].clone(),
        halves[1][0].clone(),
        halves[0][1].clone(),
        halves[1][1].clone(),
    ]);
    bind_outputs(e, l, rank, &all)
}

/// `copy`: the input unchanged.
pub(super) fn copy(e: &mut Emitter, l: &Layer, _p: &pb::CopyLayerParams) -> Result<()> {
    let (x, rank) = e.input(l, 0)?;
    let y = e.op("identity", vec![("x", name(&x))], rank);
    e.out(l, y)
}
