#!/usr/bin/env python3
"""Make the image-input test packages: tiny convnets whose Core ML input is an *image*
(`ct.ImageType`) with a colour layout, scale and per-channel bias, plus PyTorch reference logits.

Core ML hands an image feature to the program as float planes in the model's colour layout
(B, G, R for a BGR model), multiplied by `scale` and offset by `bias` (coremltools writes the scale
and bias into the program as ops). Our API takes every image the same way on every engine: u8
`[height, width, channels]` in R, G, B order (or one gray channel). These fixtures check that the
CPU executor turns the one into the other exactly as Core ML does: the reference logits come from
PyTorch on planes built here with numpy, independently of our code.

Setup and run (Linux is fine; the packages are a few kilobytes and are committed):

    python3 -m venv target/zoo-venv
    target/zoo-venv/bin/pip install "coremltools==9.0" "torch<=2.7" "numpy<2.4" safetensors
    target/zoo-venv/bin/python scripts/make_image_fixtures.py \
        --out crates/backend-candle/tests/image_inputs

Each case writes `<case>.mlpackage` and `<case>.safetensors` with `image` (u8 [H,W,C], RGB order
or gray) and `logits` (f32 [1,10], PyTorch fp32).
"""

import argparse
import os
import sys

from fixture_io import save_package, save_tensors

CASES = {
    # name: (colour layout, channels, height, width, scale, bias)
    "bgr_scale_bias": ("BGR", 3, 20, 24, 1.0 / 255.0, [-0.406 / 0.225, -0.456 / 0.224, -0.485 / 0.229]),
    "rgb_scale_bias": ("RGB", 3, 17, 13, 2.0 / 255.0, [-1.0, -0.5, 0.25]),
    "gray_scale": ("G", 1, 16, 16, 1.0 / 127.5, [-1.0]),
}


def make_case(name, out_dir, seed):
    import coremltools as ct
    import numpy as np
    import torch

    layout, channels, h, w, scale, bias = CASES[name]
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    ).eval()

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)  # RGB order or gray
    # What Core ML feeds the program: planes in the model's layout, times scale, plus bias.
    planes = image.astype(np.float32).transpose(2, 0, 1)  # [C, H, W], R, G, B
    if layout == "BGR":
        planes = planes[::-1]
    planes = planes * np.float32(scale) + np.asarray(bias, np.float32)[:, None, None]
    with torch.no_grad():
        logits = net(torch.from_numpy(np.ascontiguousarray(planes))[None]).numpy()

    color = {"BGR": ct.colorlayout.BGR, "RGB": ct.colorlayout.RGB, "G": ct.colorlayout.GRAYSCALE}
    traced = torch.jit.trace(net, torch.zeros(1, channels, h, w))
    mlmodel = ct.convert(
        traced,
        inputs=[ct.ImageType(name="image", shape=(1, channels, h, w), scale=scale,
                             bias=bias if channels == 3 else bias[0],
                             color_layout=color[layout])],
        outputs=[ct.TensorType(name="logits")],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.macOS13,
    )
    save_package(mlmodel, os.path.join(out_dir, f"{name}.mlpackage"))
    save_tensors({"image": image, "logits": logits.astype(np.float32)},
                 os.path.join(out_dir, f"{name}.safetensors"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="crates/backend-candle/tests/image_inputs")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in CASES:
        print(f"image fixture: {name}", file=sys.stderr)
        make_case(name, args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
