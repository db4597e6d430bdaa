"""Per-op-kind time of ONNX Runtime on one model, from its own profiler (enable_profiling).

Usage: benches/peers/.venv/bin/python benches/peers/ort_profile.py MODEL.onnx THREADS
Run `python3 benches/peers/ort_bench.py` once first: it creates the venv with onnxruntime.
Convolutions are split by weight shape into pointwise 1x1, depthwise kxk and other kxk so the
numbers line up with `INFER_PROFILE=1 infer bench`.
"""
import json, os, sys, tempfile, collections, numpy as np, onnxruntime as ort
path, threads = sys.argv[1], int(sys.argv[2])
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.enable_profiling = True
prof_dir = tempfile.mkdtemp(prefix="ort-profile-")
so.profile_file_prefix = os.path.join(prof_dir, "ort")
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
x = np.random.RandomState(0).randn(*inp.shape).astype(np.float32)
for _ in range(10): s.run(None, {inp.name: x})
N = 100
for _ in range(N): s.run(None, {inp.name: x})
prof = s.end_profiling()
with open(prof) as f:
    ev = json.load(f)
os.remove(prof)
os.rmdir(prof_dir)
agg = collections.defaultdict(float); total = 0.0; runs = 0
for e in ev:
    if e.get("cat") == "Session" and e.get("name") == "model_run": runs += 1
    if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"): continue
    a = e["args"]; op = a.get("op_name")
    shapes = a.get("input_type_shape", [])
    kind = op
    if op in ("Conv", "FusedConv") and len(shapes) > 1:
        w = list(shapes[1].values())[0]
        if w[1] == 1 and w[0] > 1: kind = f"depthwise {w[2]}x{w[3]}"
        elif w[2] == 1 and w[3] == 1: kind = "pointwise 1x1"
        else: kind = f"conv {w[2]}x{w[3]}"
    agg[kind] += e["dur"]; total += e["dur"]
for k, v in sorted(agg.items(), key=lambda kv: -kv[1]):
    print(f"{k:20s} {v/1000/(N+10):7.3f} ms/run  {100*v/total:5.1f}%")
print(f"{'total kernels':20s} {total/1000/(N+10):7.3f} ms/run")
