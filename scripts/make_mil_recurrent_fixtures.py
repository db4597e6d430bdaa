#!/usr/bin/env python3
"""Make ML Program packages for the iOS18 `gru` forms coremltools' op tests do not capture
(their `reset_after` test calls Core ML's predict directly, and is marked xfail): `reset_after`
with a separate `input_bias`, which is PyTorch's GRU, in both directions. Each package takes
`input` `[seq, batch, features]` (the initial state is a const) and returns the output sequence
as `output`; the reference is `torch.nn.GRU` in fp32.

`cargo test -p backend-candle --test op_packages` runs them with the other op packages.

    /work/venv/bin/python scripts/make_mil_recurrent_fixtures.py
"""

import os

import numpy as np

from fixture_io import save_package, save_tensors

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "crates", "backend-candle", "tests", "op_packages"
)


def make(name, reverse, seed):
    import coremltools as ct
    import torch
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    torch.manual_seed(seed)
    seq, batch, feat, hid = 5, 2, 3, 4
    gru = torch.nn.GRU(feat, hid)
    sd = {k: v.detach().numpy() for k, v in gru.state_dict().items()}
    # PyTorch's gate order is r, z, n; MIL's is r, o (= n), z.
    rzn_to_roz = lambda w: np.concatenate([w[:hid], w[2 * hid :], w[hid : 2 * hid]])
    x = torch.randn(seq, batch, feat)
    h0 = torch.randn(1, batch, hid)
    xs = torch.flip(x, [0]) if reverse else x
    y, _ = gru(xs, h0)
    y = y.detach().numpy()

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(seq, batch, feat), dtype=types.fp32)],
        opset_version=ct.target.iOS18,
    )
    def prog(input):
        out, _ = mb.gru(
            x=input,
            initial_h=h0.numpy()[0],
            weight_ih=rzn_to_roz(sd["weight_ih_l0"]),
            weight_hh=rzn_to_roz(sd["weight_hh_l0"]),
            input_bias=rzn_to_roz(sd["bias_ih_l0"]),
            bias=rzn_to_roz(sd["bias_hh_l0"]),
            reset_after=True,
            output_sequence=True,
            direction="reverse" if reverse else "forward",
        )
        return mb.identity(x=out, name="output")

    model = ct.convert(
        prog,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS18,
        compute_precision=ct.precision.FLOAT32,
        pass_pipeline=ct.PassPipeline.EMPTY,
    )
    save_package(model, os.path.join(OUT, name + ".mlpackage"))
    save_tensors({"input": x.numpy(), "output": y}, os.path.join(OUT, name + ".safetensors"))
    print(name, x.shape, "->", y.shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    make("gru_reset_after", False, 7)
    make("gru_reset_after_reverse", True, 8)


if __name__ == "__main__":
    main()
