#!/usr/bin/env python3
"""Make the recurrent NeuralNetwork test models: `simpleRecurrent`, `gru`, `uniDirectionalLSTM`,
`biDirectionalLSTM` and `copy` layers built with coremltools' NeuralNetworkBuilder (today's
converter emits ML Program `lstm` / `gru` / `rnn` ops instead, so published `.mlmodel`s are the
only source of these layers), each with a numpy reference.

The reference is float64 numpy written here from NeuralNetwork.proto's definitions of the layers
(there is no Core ML on Linux to run them): inputs `[Seq, Batch, C, 1, 1]`, the gate equations of
the spec, `reverseInput` emitting outputs in processing order, a bidirectional layer's backward
output at the time step it read (`[yf_1, yb_3], [yf_2, yb_2], [yf_3, yb_1]` in the spec's
example), `forgetBias` adding 1 to the forget-gate bias, the cell state clipped to
`cellClipThreshold`. The builder writes recurrent activations as empty messages; coremltools' own
MIL op tests, which run the same models on the NeuralNetwork backend, expect the standard
parameters from them (hard sigmoid `0.2 x + 0.5`), and so does this reference.

`cargo test -p backend-candle --test nn_recurrent` runs every `<case>.mlmodel` in
`crates/backend-candle/tests/nn_recurrent/` against `<case>.safetensors` (`in.<name>` inputs,
`out.<name>` reference outputs).

    /work/venv/bin/python scripts/make_nn_recurrent_fixtures.py
"""

import os

import numpy as np

from fixture_io import save_tensors

SEED = 41
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "crates", "backend-candle", "tests", "nn_recurrent"
)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACTS = {
    "SIGMOID": sigmoid,
    "TANH": np.tanh,
    "RELU": lambda x: np.maximum(x, 0.0),
    "LINEAR": lambda x: x,
    "SIGMOID_HARD": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "SCALED_TANH": np.tanh,
}


def order(seq, reverse):
    return list(range(seq - 1, -1, -1)) if reverse else list(range(seq))


def run(step, x, h, c, reverse, align_to_time=False):
    """Runs `step` over x `[S, B, I]`; returns outputs `[S, B, H]` (processing order, or at the
    time step read when `align_to_time`), the last h and c."""
    seq = x.shape[0]
    ys = np.zeros((seq,) + h.shape)
    for k, t in enumerate(order(seq, reverse)):
        h, c = step(x[t], h, c)
        ys[t if align_to_time else k] = h
    return ys, h, c


def rnn_step(W, R, b, act):
    def step(x, h, c):
        return ACTS[act](x @ W.T + h @ R.T + b), c

    return step


def gru_step(W, R, b, inner, act):
    (W_z, W_r, W_o), (R_z, R_r, R_o), (b_z, b_r, b_o) = W, R, b

    def step(x, h, c):
        z = ACTS[inner](x @ W_z.T + h @ R_z.T + b_z)
        r = ACTS[inner](x @ W_r.T + h @ R_r.T + b_r)
        o = ACTS[act](x @ W_o.T + (h * r) @ R_o.T + b_o)
        return (1 - z) * o + z * h, c

    return step


def lstm_step(W, R, b, p, acts, clip):
    (W_i, W_f, W_o, W_z), (R_i, R_f, R_o, R_z), (b_i, b_f, b_o, b_z), (p_i, p_f, p_o) = W, R, b, p
    f_, g_, h_ = (ACTS[a] for a in acts)

    def step(x, h, c):
        i = f_(x @ W_i.T + h @ R_i.T + p_i * c + b_i)
        f = f_(x @ W_f.T + h @ R_f.T + p_f * c + b_f)
        z = g_(x @ W_z.T + h @ R_z.T + b_z)
        c = np.clip(c * f + i * z, -clip, clip)
        o = f_(x @ W_o.T + h @ R_o.T + p_o * c + b_o)
        return o * h_(c), c

    return step


class Case:
    def __init__(self, rng, seq, batch, inp, hid):
        from coremltools.models import datatypes
        from coremltools.models.neural_network import NeuralNetworkBuilder

        self.rng, self.seq, self.batch, self.inp, self.hid = rng, seq, batch, inp, hid
        self.datatypes, self.Builder = datatypes, NeuralNetworkBuilder
        self.inputs, self.outputs = {}, {}

    def mats(self, n, rows, cols):
        return [self.rng.uniform(-0.6, 0.6, (rows, cols)) for _ in range(n)]

    def vecs(self, n, size):
        return [self.rng.uniform(-0.5, 0.5, size) for _ in range(n)]

    def x(self):
        return self.rng.uniform(-1, 1, (self.seq, self.batch, self.inp))

    def state(self, hid=None):
        return self.rng.uniform(-0.8, 0.8, (self.batch, hid or self.hid))

    def save(self, name, build):
        """`build(builder)` adds the layers; inputs and outputs are in self.inputs/outputs as
        numpy arrays without the trailing `1, 1` axes."""
        dt = self.datatypes
        # states are [1, Batch, H, 1, 1] as the spec's inputs
        five = lambda a: (a[None] if a.ndim == 2 else a).reshape(
            ((1,) if a.ndim == 2 else ()) + a.shape + (1, 1)
        ).astype(np.float32)
        ins = {k: five(v) for k, v in self.inputs.items()}
        outs = {k: five(v) for k, v in self.outputs.items()}
        builder = self.Builder(
            [(k, dt.Array(*v.shape)) for k, v in ins.items()],
            [(k, dt.Array(*v.shape)) for k, v in outs.items()],
            disable_rank5_shape_mapping=True,
        )
        build(builder)
        import coremltools as ct

        model = ct.models.MLModel(builder.spec, skip_model_load=True)
        path = os.path.join(OUT, name)
        model.save(path + ".tmp.mlmodel")
        os.replace(path + ".tmp.mlmodel", path + ".mlmodel")
        tensors = {f"in.{k}": v for k, v in ins.items()}
        tensors.update({f"out.{k}": v for k, v in outs.items()})
        save_tensors(tensors, path + ".safetensors")
        print(name, {k: v.shape for k, v in ins.items()}, "->", {k: v.shape for k, v in outs.items()})


def no_seq(ys, output_all):
    return ys if output_all else ys[-1:]


def make_rnn(rng):
    for name, act, reverse, output_all, bias, state in [
        ("simple_rnn", "TANH", False, True, True, True),
        ("simple_rnn_reverse_relu", "RELU", True, False, False, False),
    ]:
        c = Case(rng, 6, 2, 3, 4)
        x = c.x()
        h0 = c.state() if state else np.zeros((c.batch, c.hid))
        (W,), (R,) = c.mats(1, 4, 3), c.mats(1, 4, 4)
        b = c.vecs(1, 4)[0] if bias else np.zeros(4)
        ys, h, _ = run(rnn_step(W, R, b, act), x, h0, None, reverse)
        c.inputs = {"x": x, **({"h0": h0} if state else {})}
        c.outputs = {"y": no_seq(ys, output_all), "h": h[None]}
        c.save(
            name,
            lambda bl: bl.add_simple_rnn(
                "rnn", R, W, b if bias else None, 4, 3, act,
                list(c.inputs), ["y", "h"], output_all=output_all, reverse_input=reverse,
            ),
        )


def make_gru(rng):
    for name, inner, act, reverse, output_all, bias in [
        ("gru", "SIGMOID_HARD", "TANH", False, True, True),
        ("gru_reverse", "SIGMOID", "TANH", True, False, False),
    ]:
        c = Case(rng, 5, 3, 4, 3)
        x, h0 = c.x(), c.state()
        W, R = c.mats(3, 3, 4), c.mats(3, 3, 3)
        b = c.vecs(3, 3) if bias else [np.zeros(3)] * 3
        ys, h, _ = run(gru_step(W, R, b, inner, act), x, h0, None, reverse)
        c.inputs = {"x": x, "h0": h0}
        c.outputs = {"y": no_seq(ys, output_all), "h": h[None]}
        c.save(
            name,
            lambda bl: bl.add_gru(
                "gru", R, W, b if bias else None, 3, 4, ["x", "h0"], ["y", "h"],
                activation=act, inner_activation=inner, output_all=output_all,
                reverse_input=reverse,
            ),
        )


def make_lstm(rng):
    # unidirectional: peepholes, forget bias, state inputs, a copy of the output
    c = Case(rng, 5, 2, 3, 4)
    x, h0, c0 = c.x(), c.state(), c.state()
    W, R, b, p = c.mats(4, 4, 3), c.mats(4, 4, 4), c.vecs(4, 4), c.vecs(3, 4)
    bf = [b[0], b[1] + 1.0, b[2], b[3]]
    acts = ("SIGMOID", "TANH", "TANH")
    ys, h, cs = run(lstm_step(W, R, bf, p, acts, 50000.0), x, h0, c0, False)
    c.inputs = {"x": x, "h0": h0, "c0": c0}
    c.outputs = {"y": ys, "y_copy": ys, "h": h[None], "c": cs[None]}

    def build(bl):
        bl.add_unilstm(
            "lstm", R, W, b, 4, 3, ["x", "h0", "c0"], ["y", "h", "c"],
            inner_activation=acts[0], cell_state_update_activation=acts[1],
            output_activation=acts[2], peep=p, output_all=True, forget_bias=True,
        )
        bl.add_copy("copy", "y", "y_copy")

    c.save("lstm_peephole_copy", build)

    # reverse, hard sigmoid gates, a tight cell clip, no state inputs, last output only
    c = Case(rng, 4, 1, 2, 3)
    x = c.x()
    W, R, b = c.mats(4, 3, 2), c.mats(4, 3, 3), c.vecs(4, 3)
    acts = ("SIGMOID_HARD", "TANH", "SCALED_TANH")
    zeros = np.zeros((1, 3))
    ys, h, cs = run(lstm_step(W, R, b, [np.zeros(3)] * 3, acts, 0.3), x, zeros, zeros, True)
    c.inputs = {"x": x}
    c.outputs = {"y": ys[-1:], "h": h[None], "c": cs[None]}
    c.save(
        "lstm_reverse_clip",
        lambda bl: bl.add_unilstm(
            "lstm", R, W, b, 3, 2, ["x"], ["y", "h", "c"],
            inner_activation=acts[0], cell_state_update_activation=acts[1],
            output_activation=acts[2], output_all=False, cell_clip_threshold=0.3,
            reverse_input=True,
        ),
    )

    # bidirectional with all four state inputs and outputs
    for name, output_all in [("bilstm", True), ("bilstm_last", False)]:
        c = Case(rng, 4, 2, 3, 2)
        x = c.x()
        states = [c.state() for _ in range(4)]
        Wf, Rf, bf, pf = c.mats(4, 2, 3), c.mats(4, 2, 2), c.vecs(4, 2), c.vecs(3, 2)
        Wb, Rb, bb, pb = c.mats(4, 2, 3), c.mats(4, 2, 2), c.vecs(4, 2), c.vecs(3, 2)
        acts = ("SIGMOID", "TANH", "TANH")
        yf, hf, cf = run(lstm_step(Wf, Rf, bf, pf, acts, 50000.0), x, states[0], states[1], False)
        yb, hb, cb = run(
            lstm_step(Wb, Rb, bb, pb, acts, 50000.0), x, states[2], states[3], True, align_to_time=True
        )
        y = np.concatenate([yf, yb], axis=2)
        if not output_all:
            y = np.concatenate([yf[-1:], yb[:1]], axis=2)
        c.inputs = dict(zip(["x", "hf0", "cf0", "hb0", "cb0"], [x] + states))
        c.outputs = {"y": y, "hf": hf[None], "cf": cf[None], "hb": hb[None], "cb": cb[None]}
        c.save(
            name,
            lambda bl: bl.add_bidirlstm(
                "bilstm", Rf, Wf, bf, Rb, Wb, bb, 2, 3, list(c.inputs), list(c.outputs),
                peep=pf, peep_back=pb, output_all=output_all,
            ),
        )


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    make_rnn(rng)
    make_gru(rng)
    make_lstm(rng)


if __name__ == "__main__":
    main()
