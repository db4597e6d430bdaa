#!/usr/bin/env python3
"""Make the small zoo that `cargo test` runs: reduced-width versions of the architectures the CPU
engine must run, each an ML Program converted by coremltools with a PyTorch reference, small
enough to commit (tens to hundreds of kilobytes each).

Cases: MobileNetV3 (hard-swish, squeeze-excite), ConvNeXt, RegNetX (grouped convs), a ViT/DeiT,
a BERT-style encoder (int32 token ids, embedding lookups), a segmentation head (bilinear
upsampling), a detector-style FPN neck (nearest upsampling, three outputs), a 4-bit palettized and
an int8-quantized model, and fp16 versions of two of them. The compressed models are compressed from weights that already lie on
the compression grid, so PyTorch's fp32 output stays the exact reference.

`cargo test -p backend-candle --test small_zoo` runs every `<case>.mlpackage` in the folder
against `<case>.safetensors`, which holds the inputs as `in.<name>` and PyTorch's outputs as
`out.<name>`.

    python3 -m venv target/zoo-venv
    target/zoo-venv/bin/pip install "coremltools==9.0" "torch<=2.7" "timm==1.0.31" "numpy<2.4" \
        safetensors
    target/zoo-venv/bin/python scripts/make_small_zoo.py
"""

import argparse
import os
import sys

from fixture_io import save_package, save_tensors

SEED = 11


def perturb_bn(model, torch, gen):
    """BatchNorm statistics and layer scales off their init values, so every branch counts."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
        for name, p in model.named_parameters():
            if "gamma" in name or "layer_scale" in name:
                p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + 0.25)


def mobilenetv3_small(timm):
    """timm's MobileNetV3-Small 0.5 with its 1024-wide head conv cut to 128 (size, not ops)."""
    import torch

    m = timm.create_model("mobilenetv3_small_050", num_classes=10)
    m.conv_head = torch.nn.Conv2d(m.conv_head.in_channels, 128, 1)
    m.classifier = torch.nn.Linear(128, 10)
    return m


def timm_models(timm):
    from timm.models.regnet import RegNet, RegNetCfg

    return {
        "mobilenetv3_small": (mobilenetv3_small(timm), (1, 3, 64, 64)),
        "convnext_tiny_width": (
            timm.create_model("convnext_atto", dims=(16, 32, 48, 64), depths=(1, 1, 2, 1),
                              num_classes=10),
            (1, 3, 64, 64),
        ),
        "regnetx_tiny_width": (
            RegNet(RegNetCfg(depth=8, w0=8, wa=8.0, wm=2.0, group_size=8), num_classes=10),
            (1, 3, 64, 64),
        ),
        "deit_tiny_width": (
            timm.create_model("deit_tiny_patch16_224", img_size=64, embed_dim=48, depth=2,
                              num_heads=3, num_classes=10),
            (1, 3, 64, 64),
        ),
    }


def custom_models(torch):
    nn, F = torch.nn, torch.nn.functional

    class Encoder(nn.Module):
        """BERT-style: token + position embeddings, two pre-norm attention blocks, mean pool."""

        def __init__(self, vocab=100, d=32, heads=4, layers=2, seq=16):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(torch.randn(1, seq, d) * 0.1)
            self.heads = heads
            self.blocks = nn.ModuleList()
            for _ in range(layers):
                self.blocks.append(nn.ModuleDict({
                    "ln1": nn.LayerNorm(d), "qkv": nn.Linear(d, 3 * d), "proj": nn.Linear(d, d),
                    "ln2": nn.LayerNorm(d), "fc1": nn.Linear(d, 2 * d), "fc2": nn.Linear(2 * d, d),
                }))
            self.head = nn.Linear(d, 10)

        def forward(self, ids):
            x = self.tok(ids) + self.pos
            b, n, d = x.shape
            h = self.heads
            for blk in self.blocks:
                q, k, v = blk["qkv"](blk["ln1"](x)).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
                att = torch.softmax(q @ k.transpose(-2, -1) * (d // h) ** -0.5, dim=-1)
                x = x + blk["proj"]((att @ v).transpose(1, 2).reshape(b, n, d))
                x = x + blk["fc2"](F.gelu(blk["fc1"](blk["ln2"](x))))
            return self.head(x.mean(dim=1))

    class SegHead(nn.Module):
        """Two stride-2 stages, a 1x1 classifier, bilinear upsampling back to the input size."""

        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(
                nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 24, 3, 2, 1), nn.BatchNorm2d(24), nn.ReLU(),
            )
            self.cls = nn.Conv2d(24, 5, 1)

        def forward(self, x):
            y = self.cls(self.enc(x))
            return F.interpolate(y, scale_factor=4.0, mode="bilinear", align_corners=False)

    class Neck(nn.Module):
        """FPN: three backbone scales, lateral 1x1, top-down nearest x2 + add, 3x3 outputs."""

        def __init__(self, c=16):
            super().__init__()
            self.s1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
            self.s2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
            self.s3 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
            self.lat = nn.ModuleList([nn.Conv2d(ch, c, 1) for ch in (8, 16, 32)])
            self.out = nn.ModuleList([nn.Conv2d(c, c, 3, 1, 1) for _ in range(3)])

        def forward(self, x):
            f1 = self.s1(x)
            f2 = self.s2(f1)
            f3 = self.s3(f2)
            p3 = self.lat[2](f3)
            p2 = self.lat[1](f2) + F.interpolate(p3, scale_factor=2.0, mode="nearest")
            p1 = self.lat[0](f1) + F.interpolate(p2, scale_factor=2.0, mode="nearest")
            return self.out[0](p1), self.out[1](p2), self.out[2](p3)

    return {
        "bert_style_encoder": (Encoder(), (1, 16)),
        "segmentation_head": (SegHead(), (1, 3, 48, 64)),
        "fpn_neck": (Neck(), (1, 3, 64, 64)),
    }


def snap_palette(torch, model, nbits=4):
    """Every conv/linear weight onto 2^nbits values (a per-tensor uniform grid)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.weight.numel() >= 64:
                w = m.weight
                lo, hi = w.min(), w.max()
                levels = torch.linspace(lo.item(), hi.item(), 2 ** nbits)
                idx = torch.argmin((w.reshape(-1, 1) - levels.reshape(1, -1)).abs(), dim=1)
                w.copy_(levels[idx].reshape(w.shape))


def snap_int8(torch, model):
    """Every conv/linear weight onto a symmetric per-output-channel int8 grid."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.weight.numel() >= 64:
                w = m.weight
                flat = w.reshape(w.shape[0], -1)
                scale = flat.abs().max(dim=1).values.clamp(min=1e-8) / 127.0
                q = torch.round(flat / scale[:, None]).clamp(-127, 127)
                w.copy_((q * scale[:, None]).reshape(w.shape))


def convert(torch, ct, model, example, out_names, int_input, fp16=False):
    traced = torch.jit.trace(model, example)
    if int_input:
        inputs = [ct.TensorType(name="input", shape=tuple(example.shape), dtype=__import__("numpy").int32)]
    else:
        inputs = [ct.TensorType(name="input", shape=tuple(example.shape))]
    return ct.convert(
        traced,
        inputs=inputs,
        outputs=[ct.TensorType(name=n) for n in out_names],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.macOS13,
    )


def save(ct, mlmodel, name, tensors, out_dir):
    target = os.path.join(out_dir, f"{name}.mlpackage")
    save_package(mlmodel, target)
    save_tensors(tensors, os.path.join(out_dir, f"{name}.safetensors"))
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(target) for f in fs)
    print(f"small zoo: {name}: {size / 1024:.0f} KiB", file=sys.stderr)


def make(name, model, shape, out_dir, compress=None):
    import coremltools as ct
    import torch

    gen = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    perturb_bn(model, torch, gen)
    model = model.eval()
    if compress == "palettize":
        snap_palette(torch, model)
    elif compress == "int8":
        snap_int8(torch, model)
    int_input = name.startswith("bert")
    if int_input:
        x = torch.randint(0, 100, shape, generator=gen, dtype=torch.int32)
        example = x.long()
    else:
        x = torch.randn(*shape, generator=gen)
        example = x
    with torch.no_grad():
        ys = model(example)
    ys = ys if isinstance(ys, tuple) else (ys,)
    out_names = ["output"] if len(ys) == 1 else [f"output{i}" for i in range(len(ys))]
    mlmodel = convert(torch, ct, model, example, out_names, int_input, fp16=name.endswith("_fp16"))
    if compress == "palettize":
        cfg = ct.optimize.coreml.OptimizationConfig(
            global_config=ct.optimize.coreml.OpPalettizerConfig(mode="unique", weight_threshold=64))
        mlmodel = ct.optimize.coreml.palettize_weights(mlmodel, cfg)
    elif compress == "int8":
        cfg = ct.optimize.coreml.OptimizationConfig(
            global_config=ct.optimize.coreml.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", weight_threshold=64))
        mlmodel = ct.optimize.coreml.linear_quantize_weights(mlmodel, cfg)
    tensors = {"in.input": x}
    tensors.update({f"out.{n}": y for n, y in zip(out_names, ys)})
    save(ct, mlmodel, name, tensors, out_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="crates/backend-candle/tests/small_zoo")
    args = parser.parse_args()
    import timm
    import torch

    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(SEED)
    for name, (model, shape) in timm_models(timm).items():
        make(name, model, shape, args.out)
    torch.manual_seed(SEED)
    for name, (model, shape) in custom_models(torch).items():
        make(name, model, shape, args.out)
    torch.manual_seed(SEED)
    pal, _ = timm_models(timm)["convnext_tiny_width"]
    make("convnext_palettized_4bit", pal, (1, 3, 64, 64), args.out, compress="palettize")
    # fp16 packages (fp16 weights and compute, as coremltools converts by default): checked
    # against the FP16 tolerance of inference_api::tolerance.
    for base in ("convnext_tiny_width", "deit_tiny_width"):
        torch.manual_seed(SEED)
        model, shape = timm_models(timm)[base]
        make(f"{base}_fp16", model, shape, args.out)
    q8, _ = custom_models(torch)["segmentation_head"]
    make("segmentation_int8", q8, (1, 3, 48, 64), args.out, compress="int8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
