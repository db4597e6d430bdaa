#!/usr/bin/env python3
"""Make the legacy NeuralNetwork test models: small PyTorch networks with random weights converted
by coremltools with `convert_to="neuralnetwork"` (the `.mlmodel` kind most published Core ML models
are), each with PyTorch's reference outputs.

Cases:
- whole networks: a reduced MobileNetV2 (ReLU6 as `clip`), a reduced ResNet (BasicBlocks), a
  reduced MobileNetV3 (hard-swish as thresholdedReLU * sigmoidHard, squeeze-excite; fp32 only
  with `--only mobilenetv3_reduced`, to keep the committed set small);
- a classifier with an image input (`ct.ImageType`, BGR, scale and per-channel bias, written by
  the converter as the NeuralNetwork's preprocessing scaler) and string class labels
  (`neuralNetworkClassifier`); its reference is PyTorch's softmax on planes built here;
- compressed weights: the MobileNetV3 with fp16 weights (`quantize_weights(nbits=16)`) and with
  8-bit linear weights (`quantize_weights(nbits=8)`); BatchNorm is made the identity (the
  converter folds it into the conv weights) and the PyTorch weights are put on the fp16 /
  per-channel 8-bit grid, so PyTorch's fp32 output stays the exact reference; likewise the
  ResNet with 4-bit look-up-table weights (`quantize_weights(nbits=4, "linear_lut")`);
- `legacy_layers`: layers of the original rank-5 spec that today's converter no longer emits
  (scale, bias, unary, multi-input average/max/min, l2normalize, lrn, softmax, reduce, slice,
  split, flatten, innerProduct on a flattened blob, reshape, permute, loadConstant, every
  activation with parameters), built with the NeuralNetworkBuilder; its reference is numpy
  written from NeuralNetwork.proto's definitions, as there is no Core ML on Linux to run it;
  and `legacy_mean_image`, a BGR image input whose preprocessing subtracts a mean image;
- single-layer-family models: deconvolution, grouped and dilated convs, padding modes, pooling
  (ceil mode, padding), upsampling (nearest, bilinear both alignments), activations, softmax,
  concat/split, permute/reshape, reductions, matmul.

`cargo test -p backend-candle --test nn_models` runs every `<case>.mlmodel` in the folder against
`<case>.safetensors`, which holds the inputs as `in.<name>` and PyTorch's outputs as `out.<name>`.
Each `.mlmodel`'s layer types are printed as it is made.

    /work/venv/bin/python scripts/make_nn_fixtures.py            # or any venv with
    # pip install "coremltools==9.0" "torch<=2.7" "timm==1.0.31" "numpy<2.4" safetensors

`--zoo DIR` instead writes full-size timm MobileNetV2 and ResNet-18 `.mlmodel`s (random weights,
not committed) with references, for a run through `infer run` / `infer classify`.
"""

import argparse
import collections
import os
import sys
import tempfile

from fixture_io import save_tensors

SEED = 23


def perturb_bn(model, torch, gen):
    """BatchNorm statistics off their init values, so every normalization counts."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def identity_bn(model, torch):
    """BatchNorm layers that change nothing (gamma / sqrt(var + eps) == 1, no shift)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)
                m.weight.fill_(1.0)
                m.bias.zero_()


def save_mlmodel(mlmodel, target):
    """Saves a `.mlmodel` under a temporary name and renames it into place."""
    import coremltools as ct

    folder = os.path.dirname(os.path.abspath(target))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        staged = os.path.join(tmp, os.path.basename(target))
        if hasattr(mlmodel, "save"):
            mlmodel.save(staged)
        else:
            ct.utils.save_spec(mlmodel, staged)
        os.replace(staged, target)


def layer_types(spec):
    kind = spec.WhichOneof("Type")
    nn = getattr(spec, kind)
    return collections.Counter(layer.WhichOneof("layer") for layer in nn.layers)


def reduced_models(torch, timm):
    nn = torch.nn

    def mobilenetv2():
        m = timm.create_model("mobilenetv2_035", num_classes=10)
        m.conv_head = nn.Conv2d(m.conv_head.in_channels, 96, 1, bias=False)
        m.bn2 = timm.layers.BatchNormAct2d(96, act_layer=nn.ReLU6)
        m.classifier = nn.Linear(96, 10)
        return m

    def mobilenetv3():
        m = timm.create_model("mobilenetv3_small_050", num_classes=10)
        m.conv_head = nn.Conv2d(m.conv_head.in_channels, 96, 1)
        m.classifier = nn.Linear(96, 10)
        return m

    def resnet():
        from timm.models.resnet import BasicBlock, ResNet

        m = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10, channels=(16, 24, 32, 48))
        return m

    return {
        "mobilenetv2_reduced": (mobilenetv2(), (1, 3, 64, 64)),
        "resnet_reduced": (resnet(), (1, 3, 64, 64)),
        "mobilenetv3_reduced": (mobilenetv3(), (1, 3, 64, 64)),
    }


def layer_models(torch):
    """Small networks, each exercising one family of layers."""
    nn, F = torch.nn, torch.nn.functional

    class Seq(nn.Module):
        def __init__(self, fn, *mods):
            super().__init__()
            self.mods = nn.ModuleList(mods)
            self.fn = fn

        def forward(self, x):
            return self.fn(self.mods, x)

    def convs(m, x):
        a = m[0](x)  # grouped
        b = m[1](x)  # dilated, padded
        c = m[2](a)  # depthwise, stride 2
        d = m[3](c)  # deconvolution, stride 2
        e = m[4](x)  # deconvolution, padding + output padding
        return torch.cat([a + b, d[:, :, : a.shape[2], : a.shape[3]]], 1), e

    def pads(m, x):
        return torch.cat(
            [
                F.pad(x, (1, 2, 2, 1), mode="reflect"),
                F.pad(x, (1, 2, 2, 1), mode="replicate"),
                F.pad(x, (1, 2, 2, 1), mode="constant", value=0.5),
            ],
            1,
        )

    def pools(m, x):
        a = F.max_pool2d(x, 3, 2, padding=1)
        b = F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False)
        c = F.avg_pool2d(x, 2, 2)
        d = F.max_pool2d(x, 3, 2, ceil_mode=True)
        return a, b, c, d

    def ups(m, x):
        a = F.interpolate(x, scale_factor=2, mode="nearest")
        b = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        c = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return a, b, c

    def acts(m, x):
        return torch.cat(
            [
                F.elu(x, 0.7),
                F.leaky_relu(x, 0.2),
                m[0](x),  # PReLU
                F.softplus(x),
                torch.tanh(x),
                torch.sigmoid(x),
                F.hardsigmoid(x),
                F.hardswish(x),
                F.gelu(x),
                F.relu6(x * 4),
                F.silu(x),
                torch.clamp(x, -0.3, 0.4),
            ],
            1,
        )

    def shapes(m, x):
        a, b = torch.split(x, [3, 5], 1)
        y = torch.cat([b, a * 2.0], 1).permute(0, 2, 3, 1)  # [1, H, W, C]
        y = y.reshape(1, -1, 8)
        z = F.softmax(m[0](y), -1)  # linear over the last axis
        s = x.mean((2, 3), keepdim=True) + x.amax(1, keepdim=True)
        t = x.sum(1) - x.mean(-1, keepdim=True)
        return z, s, t

    def matmuls(m, x):
        q = x.reshape(1, 8, -1)  # [1, 8, HW]
        att = F.softmax(torch.matmul(q.transpose(1, 2), q) * 0.1, -1)  # [1, HW, HW]
        y = torch.matmul(q, att)
        return (y.reshape(x.shape) - x) / (x.abs() + 1.0)

    return {
        "layers_conv": (
            Seq(
                convs,
                nn.Conv2d(8, 12, 3, padding=1, groups=4),
                nn.Conv2d(8, 12, 3, padding=2, dilation=2),
                nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12),
                nn.ConvTranspose2d(12, 6, 4, stride=2, padding=1),
                nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1),
            ),
            (1, 8, 12, 12),
        ),
        "layers_pad": (Seq(pads), (1, 8, 10, 10)),
        "layers_pool": (Seq(pools), (1, 8, 14, 14)),  # 14: the ceil-mode pool rounds up
        "layers_upsample": (Seq(ups), (1, 8, 6, 7)),
        "layers_activation": (Seq(acts, nn.PReLU(8)), (1, 8, 6, 6)),
        "layers_shape": (Seq(shapes, nn.Linear(8, 6)), (1, 8, 5, 6)),
        "layers_matmul": (Seq(matmuls), (1, 8, 4, 5)),
    }


def snap(torch, model, how):
    """Weights put on the grid a compressed model stores, so PyTorch stays the exact reference:
    fp16 rounding, or 256 levels per output channel between its min and max, and 256 levels
    over each bias vector (what `quantize_weights(nbits=8, "linear")` stores)."""
    with torch.no_grad():
        for mod in model.modules():
            if not isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                continue
            w = mod.weight
            if how == "lut4":
                # 16 evenly spaced levels over the whole tensor (and over each bias): what
                # `quantize_weights(nbits=4, "linear_lut")` stores as its look-up table.
                for t in [w] + ([mod.bias] if mod.bias is not None else []):
                    lo, hi = t.min(), t.max()
                    scale = (hi - lo).clamp_min(1e-8) / 15.0
                    t.copy_(lo + torch.round((t - lo) / scale) * scale)
                continue
            if how == "fp16":
                w.copy_(w.half().float())
                if mod.bias is not None:
                    mod.bias.copy_(mod.bias.half().float())
                continue
            flat = w.reshape(w.shape[0], -1)
            lo = flat.min(1, keepdim=True).values
            hi = flat.max(1, keepdim=True).values
            scale = (hi - lo).clamp_min(1e-8) / 255.0
            q = torch.round((flat - lo) / scale)
            w.copy_((lo + q * scale).reshape(w.shape))
            if mod.bias is not None:
                # Biases are quantized too, with one scale for the whole vector.
                b = mod.bias
                lo, hi = b.min(), b.max()
                scale = (hi - lo).clamp_min(1e-8) / 255.0
                b.copy_(lo + torch.round((b - lo) / scale) * scale)


def convert(torch, ct, model, example, **kw):
    traced = torch.jit.trace(model, example)
    inputs = kw.pop("inputs", None) or [ct.TensorType(name="x", shape=example.shape)]
    return ct.convert(traced, inputs=inputs, convert_to="neuralnetwork", **kw)


def write(ct, mlmodel, name, inputs, outputs, out_dir):
    """Saves `<name>.mlmodel` and `<name>.safetensors`; output names from the spec's order."""
    spec = mlmodel.get_spec() if hasattr(mlmodel, "get_spec") else mlmodel
    names = [o.name for o in spec.description.output]
    tensors = {f"in.{k}": v for k, v in inputs.items()}
    for n, v in zip(names, outputs):
        tensors[f"out.{n}"] = v
    save_mlmodel(mlmodel, os.path.join(out_dir, f"{name}.mlmodel"))
    save_tensors(tensors, os.path.join(out_dir, f"{name}.safetensors"))
    print(f"{name}: {dict(layer_types(spec))}", flush=True)


def make_plain(name, model, shape, out_dir, compress=None):
    import coremltools as ct
    import numpy as np
    import torch

    gen = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    model = model.eval()
    if compress:
        # BatchNorm as the identity: the converter folds it into the conv weights, which must
        # stay on the grid they were put on.
        identity_bn(model, torch)
        snap(torch, model, {16: "fp16", 8: "int8", 4: "lut4"}[compress])
    else:
        perturb_bn(model, torch, gen)
    x = torch.randn(shape, generator=gen)
    with torch.no_grad():
        out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    mlmodel = convert(torch, ct, model, x)
    if compress:
        from coremltools.models.neural_network import quantization_utils as qu

        mode = "linear_lut" if compress == 4 else "linear"
        mlmodel = qu.quantize_weights(mlmodel, nbits=compress, quantization_mode=mode)
    outs = [np.ascontiguousarray(o.numpy(), dtype=np.float32) for o in outs]
    write(ct, mlmodel, name, {"x": x.numpy()}, outs, out_dir)


def make_image_classifier(out_dir):
    """A BGR image classifier with scale, per-channel bias and string labels."""
    import coremltools as ct
    import numpy as np
    import torch

    nn = torch.nn
    torch.manual_seed(SEED)
    h, w = 20, 24
    scale, bias = 1.0 / 255.0, [-0.406 / 0.225, -0.456 / 0.224, -0.485 / 0.229]
    labels = ["cat", "dog", "fox", "owl", "bee", "ant", "elk"]
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, len(labels)),
        nn.Softmax(-1),
    ).eval()
    perturb_bn(net, torch, torch.Generator().manual_seed(SEED))
    rng = np.random.default_rng(SEED)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)  # R, G, B
    # What Core ML feeds the network: B, G, R planes times scale plus the per-channel bias.
    planes = image.astype(np.float32).transpose(2, 0, 1)[::-1]
    planes = planes * np.float32(scale) + np.asarray(bias, np.float32)[:, None, None]
    x = torch.from_numpy(np.ascontiguousarray(planes))[None]
    with torch.no_grad():
        probs = net(x)[0].numpy()
    mlmodel = convert(
        torch,
        ct,
        net,
        x,
        inputs=[
            ct.ImageType(
                name="image",
                shape=(1, 3, h, w),
                scale=scale,
                bias=bias,
                color_layout=ct.colorlayout.BGR,
            )
        ],
        classifier_config=ct.ClassifierConfig(labels),
    )
    spec = mlmodel.get_spec()
    probs_name = spec.description.predictedProbabilitiesName
    tensors = {"in.image": image, f"out.{probs_name}": np.ascontiguousarray(probs, np.float32)}
    save_mlmodel(mlmodel, os.path.join(out_dir, "image_classifier.mlmodel"))
    save_tensors(tensors, os.path.join(out_dir, "image_classifier.safetensors"))
    print(f"image_classifier: {dict(layer_types(spec))}", flush=True)


def make_legacy_layers(out_dir):
    """Layers of the original (rank-5) NeuralNetwork spec that converters of today no longer
    emit, built with coremltools' NeuralNetworkBuilder on a `[C, H, W]` input with the default
    rank-5 shape mapping. There is no Core ML on Linux to run them, so the reference is numpy,
    written here from the layer definitions in NeuralNetwork.proto (a naive reference)."""
    import coremltools as ct
    import numpy as np
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    rng = np.random.default_rng(SEED)
    c, h, w = 4, 5, 6
    x = rng.standard_normal((c, h, w)).astype(np.float32)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    sc, sb, bias, const = f(c), f(c), f(c, h, w), f(c, h, w)
    ip_w, ip_b = f(3, c * h * w) * 0.1, f(3)
    pre_a, psp_a, psp_b = np.abs(f(c)) * 0.3, np.abs(f(c)) + 0.5, np.abs(f(c)) + 0.5
    ch = lambda v: v[:, None, None]  # noqa: E731

    ref = {}
    ref["y_scale"] = x * ch(sc) + ch(sb)
    xb = x + bias
    ref["y_unary"] = np.log(2.0 * np.abs(xb) + 1.0)
    ave = (x + ref["y_scale"] + xb) / 3.0
    ref["y_elementwise"] = np.minimum(np.maximum(ave, x), ref["y_scale"]) * 0.5 + 0.25
    ref["y_l2"] = x / np.sqrt((x * x).sum() + 1e-5)
    sq = np.pad(x * x, ((1, 1), (0, 0), (0, 0)))
    win = sq[:-2] + sq[1:-1] + sq[2:]
    ref["y_lrn"] = x / (1.0 + 1e-2 / 3 * win) ** 0.75
    e = np.exp(x - x.max(0, keepdims=True))
    ref["y_softmax"] = e / e.sum(0, keepdims=True)
    ref["y_sum_hw"] = x.sum((1, 2), keepdims=True)
    ref["y_avg_c"] = x.mean(0, keepdims=True)
    ref["y_max_chw"] = x.max(keepdims=True)
    ref["y_slice_c"] = x[1:3]
    ref["y_slice_h"] = x[:, 0:4:2]
    ref["y_split_a"], ref["y_split_b"] = x[:2], x[2:]
    flat = x.reshape(-1)
    ref["y_inner"] = ip_w @ flat + ip_b
    ref["y_reshape"] = x.reshape(2, 10, 6)
    ref["y_permute"] = x.transpose(1, 2, 0)
    ref["y_const"] = x + const
    ref["y_scaled_tanh"] = 0.8 * np.tanh(1.3 * x)
    ref["y_linear"] = 0.5 * x - 0.2
    ref["y_psoftplus"] = ch(psp_a) * np.log1p(np.exp(ch(psp_b) * x))
    ref["y_thresholded"] = np.where(x > 0.3, x, 0.0)
    ref["y_softsign"] = x / (1.0 + np.abs(x))
    ref["y_elu"] = np.where(x > 0, x, 0.6 * (np.exp(x) - 1.0))
    ref["y_prelu"] = np.where(x >= 0, x, ch(pre_a) * x)
    ref["y_leaky"] = np.where(x >= 0, x, 0.1 * x)
    ref["y_sigmoid_hard"] = np.clip(0.2 * x + 0.5, 0.0, 1.0)

    outs = [(k, datatypes.Array(*v.shape)) for k, v in ref.items()]
    b = NeuralNetworkBuilder([("x", datatypes.Array(c, h, w))], outs)
    b.add_scale("scale", sc, sb, True, "x", "y_scale", shape_scale=[c], shape_bias=[c])
    b.add_bias("bias", bias, "x", "xb", shape_bias=[c, h, w])
    b.add_unary("abs", "xb", "xb_abs", "abs")
    b.add_unary("log", "xb_abs", "y_unary", "log", shift=1.0, scale=2.0, epsilon=1e-20)
    b.add_elementwise("ave", ["x", "y_scale", "xb"], "ave", "AVE")
    b.add_elementwise("max", ["ave", "x"], "mx", "MAX")
    b.add_elementwise("min", ["mx", "y_scale"], "mn", "MIN")
    b.add_elementwise("half", ["mn"], "half", "MULTIPLY", alpha=0.5)
    b.add_elementwise("plus", ["half"], "y_elementwise", "ADD", alpha=0.25)
    b.add_l2_normalize("l2", "x", "y_l2", epsilon=1e-5)
    b.add_lrn("lrn", "x", "y_lrn", alpha=1e-2, beta=0.75, local_size=3, k=1.0)
    b.add_softmax("softmax", "x", "y_softmax")
    b.add_reduce("sum_hw", "x", "y_sum_hw", "HW", "sum")
    b.add_reduce("avg_c", "x", "y_avg_c", "C", "avg")
    b.add_reduce("max_chw", "x", "y_max_chw", "CHW", "max")
    b.add_slice("slice_c", "x", "y_slice_c", "channel", 1, 3, 1)
    b.add_slice("slice_h", "x", "y_slice_h", "height", 0, 4, 2)
    b.add_split("split", "x", ["y_split_a", "y_split_b"])
    b.add_flatten("flatten", 0, "x", "flat")
    b.add_inner_product("inner", ip_w, ip_b, c * h * w, 3, True, "flat", "y_inner")
    b.add_reshape("reshape", "x", "y_reshape", (2, 10, 6), 0)
    b.add_permute("permute", (0, 2, 3, 1), "x", "y_permute")
    b.add_load_constant("const", "k", const, [c, h, w])
    b.add_elementwise("plus_const", ["x", "k"], "y_const", "ADD")
    acts = [
        ("SCALED_TANH", "y_scaled_tanh", [0.8, 1.3]),
        ("LINEAR", "y_linear", [0.5, -0.2]),
        ("PARAMETRICSOFTPLUS", "y_psoftplus", [psp_a, psp_b]),
        ("THRESHOLDEDRELU", "y_thresholded", 0.3),
        ("SOFTSIGN", "y_softsign", None),
        ("ELU", "y_elu", 0.6),
        ("PRELU", "y_prelu", pre_a),
        ("LEAKYRELU", "y_leaky", [0.1]),
        ("SIGMOID_HARD", "y_sigmoid_hard", [0.2, 0.5]),
    ]
    for kind, out, params in acts:
        b.add_activation(out, kind, "x", out, params=params)
    spec = b.spec
    spec.specificationVersion = 4
    tensors = {"in.x": x}
    for k, v in ref.items():
        tensors[f"out.{k}"] = np.ascontiguousarray(v, dtype=np.float32)
    save_mlmodel(spec, os.path.join(out_dir, "legacy_layers.mlmodel"))
    save_tensors(tensors, os.path.join(out_dir, "legacy_layers.safetensors"))
    print(f"legacy_layers: {dict(layer_types(spec))}", flush=True)


def make_mean_image(out_dir):
    """A BGR image input whose NeuralNetwork preprocessing subtracts a mean image (a `[C, H, W]`
    array in the model's colour layout), then a linear activation; numpy reference."""
    import numpy as np
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder
    from coremltools.proto import FeatureTypes_pb2 as ft

    rng = np.random.default_rng(SEED)
    h, w = 4, 5
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)  # R, G, B
    mean = (rng.random((3, h, w)) * 255).astype(np.float32)
    planes = image.astype(np.float32).transpose(2, 0, 1)[::-1]  # B, G, R as Core ML feeds it
    y = 0.5 * (planes - mean) + 1.0
    b = NeuralNetworkBuilder([("image", datatypes.Array(3, h, w))], [("y", datatypes.Array(3, h, w))])
    b.add_activation("linear", "LINEAR", "image", "y", params=[0.5, 1.0])
    spec = b.spec
    t = spec.description.input[0].type
    t.imageType.width, t.imageType.height = w, h
    t.imageType.colorSpace = ft.ImageFeatureType.BGR
    p = spec.neuralNetwork.preprocessing.add()
    p.featureName = "image"
    p.meanImage.meanImage.extend(mean.ravel().tolist())
    spec.specificationVersion = 4
    tensors = {"in.image": image, "out.y": np.ascontiguousarray(y, np.float32)}
    save_mlmodel(spec, os.path.join(out_dir, "legacy_mean_image.mlmodel"))
    save_tensors(tensors, os.path.join(out_dir, "legacy_mean_image.safetensors"))
    print(f"legacy_mean_image: {dict(layer_types(spec))}", flush=True)


def make_zoo(out_dir):
    """Full-size timm MobileNetV2 and ResNet-18 (random weights) for `infer run`."""
    import coremltools as ct
    import numpy as np
    import timm
    import torch

    for name in ["mobilenetv2_100", "resnet18"]:
        torch.manual_seed(SEED)
        gen = torch.Generator().manual_seed(SEED)
        model = timm.create_model(name, num_classes=1000).eval()
        perturb_bn(model, torch, gen)
        x = torch.randn((1, 3, 224, 224), generator=gen)
        with torch.no_grad():
            out = model(x).numpy()
        mlmodel = convert(torch, ct, model, x)
        write(ct, mlmodel, name, {"x": x.numpy()}, [out], out_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "crates", "backend-candle", "tests", "nn_models")
    ap.add_argument("--out", default=default)
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--zoo", help="write the full-size models to this folder instead")
    args = ap.parse_args()
    sys.path.insert(0, here)
    if args.zoo:
        os.makedirs(args.zoo, exist_ok=True)
        make_zoo(args.zoo)
        return
    os.makedirs(args.out, exist_ok=True)
    import timm
    import torch

    only = set(args.only.split(",")) if args.only else None
    want = lambda n: only is None or n in only  # noqa: E731
    for name, (model, shape) in {**reduced_models(torch, timm), **layer_models(torch)}.items():
        # The fp32 MobileNetV3 (1.2 MB) is left out of the committed set unless asked for: its
        # fp16- and 8-bit-weight versions below run the same layers.
        if want(name) and (name != "mobilenetv3_reduced" or only):
            make_plain(name, model, shape, args.out)
    for bits in (16, 8):
        name = f"mobilenetv3_reduced_w{bits}"
        if want(name):
            model, shape = reduced_models(torch, timm)["mobilenetv3_reduced"]
            make_plain(name, model, shape, args.out, compress=bits)
    if want("resnet_reduced_lut4"):
        model, shape = reduced_models(torch, timm)["resnet_reduced"]
        make_plain("resnet_reduced_lut4", model, shape, args.out, compress=4)
    if want("image_classifier"):
        make_image_classifier(args.out)
    if want("legacy_layers"):
        make_legacy_layers(args.out)
    if want("legacy_mean_image"):
        make_mean_image(args.out)


if __name__ == "__main__":
    main()
