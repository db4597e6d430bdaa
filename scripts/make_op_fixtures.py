#!/usr/bin/env python3
"""Make small op-level test packages: PyTorch modules converted by coremltools to ML Programs,
each with a seeded input and PyTorch's output, for ops whose semantics are easy to get subtly
wrong (transposed convolutions with output padding, groups and dilation; 1-D variants; 3-D
convolution and pooling; einsum), and
packages with flexible input shapes (RangeDim, EnumeratedShapes) checked at two sizes each.

`cargo test -p backend-candle --test op_packages` runs every `<case>.mlpackage` in the folder on
the CPU executor and compares with `<case>.safetensors` (`input`, `output`, f32).

    python3 -m venv target/zoo-venv
    target/zoo-venv/bin/pip install "coremltools==9.0" "torch<=2.7" "numpy<2.4" safetensors
    target/zoo-venv/bin/python scripts/make_op_fixtures.py

Packages are fp32 (compute_precision FLOAT32) and a few kilobytes each; they are committed.
`--only NAME...` remakes just those cases (package folders carry fresh identifiers each run).
"""

import argparse
import os
import sys

from fixture_io import save_package, save_tensors


def cases(torch):
    nn = torch.nn
    return {
        # name: (module, input shape)
        "conv_transpose2d_s2_outpad_groups": (
            nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
            (1, 4, 5, 7),
        ),
        "conv_transpose2d_dilated_asym": (
            nn.ConvTranspose2d(3, 5, (2, 3), stride=(1, 3), padding=(0, 1), dilation=(2, 1)),
            (2, 3, 4, 4),
        ),
        "conv_transpose2d_plain_nobias": (
            nn.ConvTranspose2d(2, 3, 4, stride=4, bias=False),
            (1, 2, 3, 3),
        ),
        "conv1d_groups_dilated_same": (
            nn.Conv1d(4, 6, 3, stride=1, padding="same", dilation=2, groups=2),
            (1, 4, 11),
        ),
        "conv1d_strided": (
            nn.Conv1d(3, 5, 4, stride=2, padding=1),
            (2, 3, 13),
        ),
        "conv_transpose1d_s3": (
            nn.ConvTranspose1d(3, 4, 5, stride=3, padding=2, output_padding=1),
            (1, 3, 9),
        ),
        # 3-D convolution and pooling, 1-D pooling.
        "conv3d_groups_strided": (
            nn.Conv3d(4, 6, (3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1),
                      groups=2),
            (1, 4, 6, 7, 8),
        ),
        "conv3d_same": (nn.Conv3d(2, 3, 3, padding="same"), (2, 2, 4, 5, 5)),
        "max_pool3d_ceil": (nn.MaxPool3d((2, 3, 2), stride=(2, 2, 1), ceil_mode=True),
                            (1, 3, 5, 7, 6)),
        "avg_pool3d_pad": (nn.AvgPool3d(3, stride=2, padding=1, count_include_pad=False),
                           (1, 2, 5, 6, 7)),
        "avg_pool3d_pad_counted": (nn.AvgPool3d(2, stride=1, padding=1, count_include_pad=True),
                                   (1, 2, 3, 4, 4)),
        "max_pool1d": (nn.MaxPool1d(3, stride=2, padding=1), (2, 3, 11)),
        "avg_pool1d": (nn.AvgPool1d(4, stride=3), (1, 2, 13)),
        # einsum: the MIL op (nchw,nwhu->nchu) and equations coremltools lowers to matmuls.
        "einsum_nchw_nwhu": (Einsum(torch, "nchw,nwhu->nchu", (2, 5, 4, 3)), (2, 3, 4, 5)),
        "einsum_bhqd_bhkd": (Einsum(torch, "bhqd,bhkd->bhqk", (2, 3, 6, 5)), (2, 3, 4, 5)),
        "einsum_nchw_nhcq": (Einsum(torch, "nchw,nhcq->nchq", (2, 4, 3, 6)), (2, 3, 4, 5)),
    }


def Einsum(torch, equation, other_shape):
    """`torch.einsum(equation, input, weight)` with a parameter as the second operand."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(*other_shape))

        def forward(self, x):
            return torch.einsum(equation, x, self.weight)

    return M()


def make(name, module, shape, out_dir, seed):
    import coremltools as ct
    import torch

    torch.manual_seed(seed)
    for p in module.parameters():
        torch.nn.init.uniform_(p, -1.0, 1.0)
    module = module.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        y = module(x)
    traced = torch.jit.trace(module, x)
    mlmodel = ct.convert(
        traced,
        inputs=[ct.TensorType(name="input", shape=tuple(x.shape))],
        outputs=[ct.TensorType(name="output")],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.macOS13,
    )
    save_package(mlmodel, os.path.join(out_dir, f"{name}.mlpackage"))
    save_tensors({"input": x, "output": y}, os.path.join(out_dir, f"{name}.safetensors"))


def flexible_cases(torch, ct):
    """Packages with flexible input shapes (a RangeDim and EnumeratedShapes), each checked at two
    sizes: the reference at the default size in `<case>.safetensors`, another in
    `<case>.alt.safetensors`. Fully convolutional, so the output's shape follows the input's."""
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    rng = ct.RangeDim(lower_bound=8, upper_bound=64, default=16)
    return {
        "flexible_range_hw": (
            net,
            ct.TensorType(name="input", shape=(1, 3, rng, ct.RangeDim(8, 64, default=16))),
            [(1, 3, 16, 16), (1, 3, 24, 40)],
        ),
        "flexible_enumerated": (
            nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)),
            ct.TensorType(name="input",
                          shape=ct.EnumeratedShapes(shapes=[(1, 3, 16, 16), (1, 3, 32, 48)],
                                                    default=(1, 3, 16, 16))),
            [(1, 3, 16, 16), (1, 3, 32, 48)],
        ),
    }


def make_flexible(name, module, input_type, sizes, out_dir, seed):
    import coremltools as ct
    import torch

    torch.manual_seed(seed)
    for p in module.parameters():
        torch.nn.init.uniform_(p, -1.0, 1.0)
    module = module.eval()
    traced = torch.jit.trace(module, torch.zeros(*sizes[0]))
    mlmodel = ct.convert(
        traced,
        inputs=[input_type],
        outputs=[ct.TensorType(name="output")],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.macOS13,
    )
    save_package(mlmodel, os.path.join(out_dir, f"{name}.mlpackage"))
    for k, shape in enumerate(sizes):
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 10 + k))
        with torch.no_grad():
            y = module(x)
        suffix = "" if k == 0 else ".alt"
        save_tensors({"input": x, "output": y}, os.path.join(out_dir, f"{name}{suffix}.safetensors"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="crates/backend-candle/tests/op_packages")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="make only these cases (default: all)")
    args = parser.parse_args()
    import torch

    wanted = (lambda name: not args.only or name in args.only)
    os.makedirs(args.out, exist_ok=True)
    for name, (module, shape) in cases(torch).items():
        if not wanted(name):
            continue
        print(f"op fixture: {name}", file=sys.stderr)
        make(name, module, shape, args.out, args.seed)
    import coremltools as ct

    for name, (module, input_type, sizes) in flexible_cases(torch, ct).items():
        if not wanted(name):
            continue
        print(f"op fixture: {name}", file=sys.stderr)
        make_flexible(name, module, input_type, sizes, args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
