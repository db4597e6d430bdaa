#!/usr/bin/env python3
"""Make the classifier test packages: small random-weight PyTorch networks converted with
`classifier_config=ct.ClassifierConfig(labels)`, so `main` ends in a `classify` op and the model
description names `predictedFeatureName` / `predictedProbabilitiesName`, plus PyTorch reference
probabilities.

- `classifier_string_image`: an `ImageType` input (BGR, scale and per-channel bias) and five
  string labels.
- `classifier_int64`: a tensor input and four int64 labels.
- `flexible_batch`: not a classifier; a tensor input whose batch dimension is a `RangeDim`
  (1..8), for `LoadedModel::run_batch` (references for a batch of 1 and of 3).

Setup and run (Linux is fine; the packages are a few kilobytes and are committed):

    python3 -m venv target/zoo-venv
    target/zoo-venv/bin/pip install "coremltools==9.0" "torch<=2.7" "numpy<2.4" safetensors
    target/zoo-venv/bin/python scripts/make_classifier_fixtures.py \
        --out crates/backend-candle/tests/classifier_packages

Each case writes `<case>.mlpackage`, `<case>.safetensors` (the input as `image` (u8 [H, W, C], RGB
order) or `input` (f32), and `probs`, PyTorch fp32) and `<case>.labels.txt` (the labels given to
the converter, one a line: the ground truth the spec's labels are checked against).
"""

import argparse
import os
import sys

from fixture_io import save_package, save_tensors

STRING_LABELS = ["tabby cat", "golden retriever", "red fox", "zebra", "café au lait"]
INT_LABELS = [7, 3, 100, 42]


def net(torch, in_ch, classes):
    """A small convnet ending in softmax, so the classify op gets probabilities."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(in_ch, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, classes),
        nn.Softmax(dim=-1),
    ).eval()


def seeded(torch, module, seed):
    torch.manual_seed(seed)
    for p in module.parameters():
        torch.nn.init.uniform_(p, -1.0, 1.0)
    return module


def convert(ct, traced, inputs, **kw):
    return ct.convert(
        traced,
        inputs=inputs,
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.macOS13,
        **kw,
    )


def write_labels(labels, path):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("".join(f"{x}\n" for x in labels))
    os.replace(path + ".tmp", path)


def string_image(out_dir, seed):
    import coremltools as ct
    import numpy as np
    import torch

    h, w = 18, 22
    scale, bias = 1.0 / 255.0, [-0.406 / 0.225, -0.456 / 0.224, -0.485 / 0.229]
    model = seeded(torch, net(torch, 3, len(STRING_LABELS)), seed)
    image = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    # What Core ML hands the program: planes in the model's layout (B, G, R), scaled, biased.
    planes = image.astype(np.float32).transpose(2, 0, 1)[::-1]
    planes = planes * np.float32(scale) + np.asarray(bias, np.float32)[:, None, None]
    with torch.no_grad():
        probs = model(torch.from_numpy(np.ascontiguousarray(planes))[None]).numpy()
    traced = torch.jit.trace(model, torch.zeros(1, 3, h, w))
    mlmodel = convert(
        ct,
        traced,
        [ct.ImageType(name="image", shape=(1, 3, h, w), scale=scale, bias=bias,
                      color_layout=ct.colorlayout.BGR)],
        classifier_config=ct.ClassifierConfig(STRING_LABELS),
    )
    name = "classifier_string_image"
    save_package(mlmodel, os.path.join(out_dir, f"{name}.mlpackage"))
    save_tensors({"image": image, "probs": probs.astype(np.float32)},
                 os.path.join(out_dir, f"{name}.safetensors"))
    write_labels(STRING_LABELS, os.path.join(out_dir, f"{name}.labels.txt"))


def int64_tensor(out_dir, seed):
    import coremltools as ct
    import torch

    model = seeded(torch, net(torch, 2, len(INT_LABELS)), seed + 1)
    x = torch.randn(1, 2, 9, 7, generator=torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        probs = model(x)
    traced = torch.jit.trace(model, x)
    mlmodel = convert(
        ct,
        traced,
        [ct.TensorType(name="input", shape=tuple(x.shape))],
        classifier_config=ct.ClassifierConfig(INT_LABELS),
    )
    name = "classifier_int64"
    save_package(mlmodel, os.path.join(out_dir, f"{name}.mlpackage"))
    save_tensors({"input": x, "probs": probs}, os.path.join(out_dir, f"{name}.safetensors"))
    write_labels(INT_LABELS, os.path.join(out_dir, f"{name}.labels.txt"))


def flexible_batch(out_dir, seed):
    import coremltools as ct
    import torch

    model = seeded(torch, net(torch, 3, 6), seed + 3)
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(seed + 4))
    with torch.no_grad():
        probs = model(x)
    traced = torch.jit.trace(model, x[:1])
    batch = ct.RangeDim(lower_bound=1, upper_bound=8, default=1)
    mlmodel = convert(
        ct,
        traced,
        [ct.TensorType(name="input", shape=(batch, 3, 12, 12))],
        outputs=[ct.TensorType(name="probs")],
    )
    name = "flexible_batch"
    save_package(mlmodel, os.path.join(out_dir, f"{name}.mlpackage"))
    save_tensors({"input": x, "probs": probs}, os.path.join(out_dir, f"{name}.safetensors"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="crates/backend-candle/tests/classifier_packages")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for make in (string_image, int64_tensor, flexible_batch):
        print(f"classifier fixture: {make.__name__}", file=sys.stderr)
        make(args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
