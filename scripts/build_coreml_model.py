#!/usr/bin/env python3
"""Build EfficientNet-Lite0 as a Core ML ML Program (.mlpackage) from the bundled weights.

No PyTorch, no download: the network is written with coremltools' MIL builder straight from
models/efficientnet-lite0/efficientnet-lite0.safetensors (read with numpy; every BatchNorm is
folded into its convolution, as the CPU engine does). This is how the macOS workflow gets the
packages `cargo xtask gates --quick` measures, since ../shared/fixtures is not in the repository.

    python3 -m venv .venv && .venv/bin/pip install "coremltools==9.0" "numpy<2.4"
    .venv/bin/python scripts/build_coreml_model.py --out target/gates-models
    cargo xtask gates --quick --model target/gates-models/efficientnet_lite0.mlpackage

writes efficientnet_lite0.mlpackage (fp16 compute) and efficientnet_lite0_fp32.mlpackage (the
name gates looks for beside a package), both macOS 13 / iOS 16 targets with an fp32 MultiArray
input `input` [1, 3, 224, 224] (normalized, NCHW) and output `logits` [1, 1000], like the
fixture packages. Saving works on any OS; check the result with the Rust tools:

    cargo run -p cli --bin infer -- inspect target/gates-models/efficientnet_lite0.mlpackage
    cargo run -p cli --bin infer -- parity models/efficientnet-lite0 \
        target/gates-models/efficientnet_lite0_fp32.mlpackage --n 8
"""

import argparse
import json
import os
import shutil
import struct
import sys

# Pinned: the versions this script was written and run against.
PINNED = {"coremltools": "9.0"}

BN_EPS = 1e-3
# Stride of each of the 16 MBConv blocks (stages of 1, 2, 2, 3, 3, 4, 1 blocks), as in
# crates/backend-candle/src/models/efficientnet_lite.rs.
STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path):
    """Every tensor of a .safetensors file as a float32 numpy array (header + raw bytes)."""
    import numpy as np

    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        sys.exit(f"{path}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        sys.exit(f"{path}: header length {n} exceeds the file")
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        kind = DTYPES.get(meta["dtype"])
        if kind is None:
            sys.exit(f"{path}: tensor `{name}` has dtype {meta['dtype']}, not supported here")
        start, end = meta["data_offsets"]
        arr = np.frombuffer(body[start:end], dtype=kind).reshape(meta["shape"])
        out[name] = arr.astype(np.float32)
    return out


def conv_bn(w, conv, bn):
    """The convolution's weight with the BatchNorm folded in, and the resulting bias."""
    weight = w[f"{conv}.weight"]
    gamma, beta = w[f"{bn}.weight"], w[f"{bn}.bias"]
    mean, var = w[f"{bn}.running_mean"], w[f"{bn}.running_var"]
    scale = gamma / (var + BN_EPS) ** 0.5
    return weight * scale[:, None, None, None], beta - mean * scale


def build_program(w):
    """The MIL program: stem, 16 MBConv blocks (ReLU6, no squeeze-excite), head, classifier."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    def conv(x, wb, stride, groups, name):
        weight, bias = wb
        return mb.conv(
            x=x,
            weight=weight,
            bias=bias,
            strides=[stride, stride],
            pad_type="same",  # TF SAME: the odd pixel of padding goes after, as the weights expect
            groups=groups,
            name=name,
        )

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(1, 3, 224, 224))],
        opset_version=ct.target.macOS13,
    )
    def prog(input):  # noqa: A002 - the feature name the runtime and fixtures use
        x = mb.relu6(x=conv(input, conv_bn(w, "_conv_stem", "_bn0"), 2, 1, "stem"), name="stem_act")
        channels = w["_conv_stem.weight"].shape[0]
        for i, stride in enumerate(STRIDES):
            b = f"_blocks.{i}"
            y = x
            if f"{b}._expand_conv.weight" in w:
                y = conv(y, conv_bn(w, f"{b}._expand_conv", f"{b}._bn0"), 1, 1, f"b{i}_expand")
                y = mb.relu6(x=y, name=f"b{i}_expand_act")
            dw = conv_bn(w, f"{b}._depthwise_conv", f"{b}._bn1")
            y = mb.relu6(x=conv(y, dw, stride, dw[0].shape[0], f"b{i}_dw"), name=f"b{i}_dw_act")
            proj = conv_bn(w, f"{b}._project_conv", f"{b}._bn2")
            y = conv(y, proj, 1, 1, f"b{i}_project")
            out_channels = proj[0].shape[0]
            if stride == 1 and out_channels == channels:
                y = mb.add(x=x, y=y, name=f"b{i}_residual")
            x, channels = y, out_channels
        x = mb.relu6(x=conv(x, conv_bn(w, "_conv_head", "_bn1"), 1, 1, "head"), name="head_act")
        x = mb.reduce_mean(x=x, axes=[2, 3], keep_dims=False, name="pool")
        return mb.linear(x=x, weight=w["_fc.weight"], bias=w["_fc.bias"], name="logits")

    return prog


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--weights",
        default=os.path.join(root, "models", "efficientnet-lite0", "efficientnet-lite0.safetensors"),
    )
    ap.add_argument("--out", default=os.path.join(root, "target", "gates-models"))
    ap.add_argument("--name", default="efficientnet_lite0")
    ap.add_argument("--precision", choices=["fp16", "fp32", "both"], default="both")
    args = ap.parse_args()

    try:
        import coremltools as ct
    except ImportError:
        sys.exit('coremltools is missing: pip install "coremltools==9.0" "numpy<2.4"')
    if ct.__version__ != PINNED["coremltools"]:
        print(f"note: written for coremltools {PINNED['coremltools']}, running {ct.__version__}")
    if not os.path.isfile(args.weights):
        sys.exit(f"{args.weights}: no such weights file (run from the repository, or pass --weights)")

    w = read_safetensors(args.weights)
    for key in ("_conv_stem.weight", "_conv_head.weight", "_fc.weight", "_fc.bias"):
        if key not in w:
            sys.exit(f"{args.weights}: no tensor `{key}`: not EfficientNet-Lite0 weights")
    os.makedirs(args.out, exist_ok=True)
    wanted = ["fp16", "fp32"] if args.precision == "both" else [args.precision]
    for precision in wanted:
        prog = build_program(w)
        model = ct.convert(
            prog,
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.macOS13,
        )
        model.short_description = (
            f"EfficientNet-Lite0 ({precision} compute), built by scripts/build_coreml_model.py "
            "from models/efficientnet-lite0 (Apache-2.0)"
        )
        stem = args.name if precision == "fp16" else f"{args.name}_fp32"
        path = os.path.join(args.out, f"{stem}.mlpackage")
        tmp = os.path.join(args.out, f".{stem}.partial.mlpackage")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)  # nothing half-written under the final name
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
