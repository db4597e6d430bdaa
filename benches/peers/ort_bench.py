#!/usr/bin/env python3
"""Time ONNX Runtime on one ONNX model: single-image runs, fixed thread count, JSON out.

Usage: ort_bench.py MODEL.onnx --threads N [--iters N] [--warmup N] [--input FILE.safetensors]

On first use it creates benches/peers/.venv and installs onnxruntime (and numpy) from PyPI
into it, then re-runs itself there. The input is the `input` tensor of --input (the shared
fixture reference, so both engines see the same image), else a fixed pseudo-random tensor.
"""
import json
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")
VPY = os.path.join(VENV, "bin", "python")


def ensure_venv():
    if os.path.abspath(sys.prefix) == os.path.abspath(VENV):
        return
    if not os.path.exists(VPY):
        print("ort_bench: creating", VENV, "and installing onnxruntime from PyPI", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([VPY, "-m", "pip", "install", "-q", "onnxruntime", "numpy"])
    os.execv(VPY, [VPY, os.path.abspath(__file__)] + sys.argv[1:])


def read_input(path, np):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    t = header["input"]
    a, b = t["data_offsets"]
    return np.frombuffer(data[a:b], dtype=np.float32).reshape(t["shape"]).copy()


def rss_kb():
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def main():
    ensure_venv()
    import argparse

    import numpy as np
    import onnxruntime as ort

    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--input")
    args = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    inp = sess.get_inputs()[0]
    if args.input:
        x = read_input(args.input, np)
    else:
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        x = np.random.default_rng(0).uniform(-2, 2, size=shape).astype(np.float32)
    feed = {inp.name: x}
    for _ in range(args.warmup):
        sess.run(None, feed)
    before = rss_kb().get("VmRSS")
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    after = rss_kb()
    times.sort()

    def pct(p):
        return times[min(len(times) - 1, round((len(times) - 1) * p))]

    print(json.dumps({
        "engine": "onnxruntime " + ort.__version__,
        "model": os.path.basename(args.model),
        "threads": args.threads,
        "iters": args.iters,
        "warmup": args.warmup,
        "load_ms": load_ms,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "mean_ms": sum(times) / len(times),
        "min_ms": times[0],
        "peak_rss_mb": after.get("VmHWM", 0) / 1024,
        "rss_growth_kb": (after.get("VmRSS", 0) - before) if before else None,
    }))


if __name__ == "__main__":
    main()
