#!/usr/bin/env python3
"""Make the model zoo: timm architectures with seeded random weights, each as a Core ML package,
an ONNX export of the same weights, and a PyTorch reference (input + logits).

The zoo is how we check the CPU engine on models it was not written for: `cargo xtask bench-peers
--zoo target/zoo` runs our ML Program executor on every `.mlpackage` beside ONNX Runtime on the
`.onnx` of the same weights, and checks our logits against PyTorch's. Nothing in `cargo test`
needs it (the files are large and PyTorch is a few GB); the script is what is committed.

Setup (Linux is fine: saving packages works without a Mac; only MLModel.predict needs macOS):

    python3 -m venv target/zoo-venv
    target/zoo-venv/bin/pip install "coremltools==9.0" "torch<=2.7" "timm==1.0.31" "numpy<2.4" \
        safetensors onnx
    target/zoo-venv/bin/python scripts/make_zoo.py --out target/zoo

Each model lands in `OUT/<name>/` as `<name>.mlpackage`, `<name>.onnx` and `reference.safetensors`
(`input` [1,3,H,W] randn, `logits` [1,1000] from PyTorch fp32), and `OUT/zoo.json` lists them.
Weights are random (model hubs are offline here), seeded, with BatchNorm statistics and layer
scales moved off their initial values so that every branch changes the answer.
"""

import argparse
import json
import os
import sys

from fixture_io import save_package, save_tensors

# The families the CPU engine must run (issue 9's zoo and issue 10's common families): a modern
# ConvNet, a RegNet (grouped convolutions), a mobile hybrid (MobileViT), a plain ViT (DeiT), a
# hard-swish network (MobileNetV3), a ResNet and an EfficientNet with SiLU and squeeze-excite.
DEFAULT_MODELS = [
    "convnext_atto",
    "regnetx_002",
    "mobilevit_xxs",
    "deit_tiny_patch16_224",
    "mobilenetv3_large_100",
    "resnet18",
    "efficientnet_b0",
]

PINNED = {"coremltools": "9.0", "timm": "1.0.31"}


def check_versions():
    import coremltools
    import timm

    found = {"coremltools": coremltools.__version__, "timm": timm.__version__}
    for name, want in PINNED.items():
        if found[name] != want:
            print(f"warning: {name} {found[name]} installed, the zoo was defined with {want}",
                  file=sys.stderr)


def perturb(model, torch, gen):
    """Move BatchNorm statistics and layer-scale parameters off their init values."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                if module.weight is not None:
                    module.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                    module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
        for name, param in model.named_parameters():
            # timm names layer scales `gamma`, `ls1.gamma`, `layer_scale.*`: small init values
            # that would make whole branches vanish.
            if "gamma" in name or "layer_scale" in name:
                param.copy_(torch.rand(param.shape, generator=gen) * 0.5 + 0.25)


def make_one(name, out_dir, seed, fp16):
    import coremltools as ct
    import timm
    import torch

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=1000)
    perturb(model, torch, gen)
    model.eval()
    if hasattr(timm.utils, "reparameterize_model"):
        model = timm.utils.reparameterize_model(model)
    _, h, w = model.default_cfg["input_size"]
    x = torch.randn(1, 3, h, w, generator=gen)
    with torch.no_grad():
        logits = model(x)

    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    paths = {
        "mlpackage": os.path.join(folder, f"{name}.mlpackage"),
        "onnx": os.path.join(folder, f"{name}.onnx"),
        "reference": os.path.join(folder, "reference.safetensors"),
    }

    # Write each file under a temporary name and rename it into place, so an interrupted run
    # leaves no half-written file that looks complete.
    save_tensors({"input": x, "logits": logits}, paths["reference"])

    tmp_onnx = paths["onnx"] + ".tmp"
    torch.onnx.export(model, (x,), tmp_onnx, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamo=False)
    os.replace(tmp_onnx, paths["onnx"])

    traced = torch.jit.trace(model, x)
    precision = ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32
    mlmodel = ct.convert(
        traced,
        inputs=[ct.TensorType(name="input", shape=tuple(x.shape))],
        outputs=[ct.TensorType(name="logits")],
        convert_to="mlprogram",
        compute_precision=precision,
        minimum_deployment_target=ct.target.macOS13,
    )
    save_package(mlmodel, paths["mlpackage"])

    params = sum(p.numel() for p in model.parameters())
    return {
        "name": name,
        "input_shape": list(x.shape),
        "params": params,
        "precision": "fp16" if fp16 else "fp32",
        "seed": seed,
        **{k: os.path.relpath(v, out_dir) for k, v in paths.items()},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="target/zoo", help="output folder (default target/zoo)")
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS,
                        help="timm model names (default: the seven zoo families)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fp16", action="store_true",
                        help="fp16 compute precision in the packages (default fp32, for parity)")
    args = parser.parse_args()
    check_versions()
    os.makedirs(args.out, exist_ok=True)
    entries, failed = [], []
    for name in args.models:
        print(f"zoo: {name}", file=sys.stderr)
        try:
            entries.append(make_one(name, args.out, args.seed, args.fp16))
        except Exception as err:  # one architecture failing should not lose the others
            print(f"zoo: {name} failed: {err}", file=sys.stderr)
            failed.append(name)
    index = os.path.join(args.out, "zoo.json")
    with open(index + ".tmp", "w") as f:
        json.dump({"schema_version": 1, "models": entries}, f, indent=2)
    os.replace(index + ".tmp", index)
    print(f"zoo: {len(entries)} models in {args.out} (index {index})", file=sys.stderr)
    if failed:
        print(f"zoo: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
