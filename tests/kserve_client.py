"""KServe v2 conformance of `infer serve` checked with a client we did not write.

NVIDIA's `tritonclient[http]` speaks the KServe v2 / Open Inference Protocol REST API. This
script points it at a running `infer serve` and checks health, metadata, inference with JSON
tensors and with the binary-tensor extension, per-request timeout, and error answers. The
logits must equal those `infer run` wrote for the same input (within an FP32 tolerance).

Usage: kserve_client.py URL MODEL INPUT.safetensors REFERENCE.safetensors [TOLERANCE]
Prints one line per check and ends with 'N passed, N failed'; exits non-zero on a failure.
"""

import json
import struct
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64,
          "I8": np.int8, "U8": np.uint8}


def read_safetensors(path):
    """Tensors of a safetensors file (8-byte little-endian header length, JSON, data)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype=DTYPES[meta["dtype"]])
        out[name] = arr.reshape(meta["shape"])
    return out


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {name} {detail}".rstrip())
        else:
            self.failed += 1
            print(f"FAIL {name} {detail}".rstrip())


def main():
    url, model, input_path, ref_path = sys.argv[1:5]
    tol = float(sys.argv[5]) if len(sys.argv) > 5 else 1e-4
    c = Checks()
    client = httpclient.InferenceServerClient(url=url)

    c.check("server live", client.is_server_live())
    c.check("server ready", client.is_server_ready())
    c.check("model ready", client.is_model_ready(model))
    meta = client.get_server_metadata()
    c.check("server metadata", "binary_tensor_data" in meta.get("extensions", []), str(meta))

    md = client.get_model_metadata(model)
    inp, out = md["inputs"][0], md["outputs"][0]
    tensors = read_safetensors(input_path)
    x = tensors[inp["name"]]
    ref = read_safetensors(ref_path)[out["name"]]
    c.check("metadata input", inp["datatype"] == "FP32" and inp["shape"] == list(x.shape),
            f"{inp}")
    c.check("metadata output", out["shape"] == list(ref.shape), f"{out}")

    def run(binary_in, binary_out, **kw):
        i = httpclient.InferInput(inp["name"], list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=binary_in)
        outputs = [httpclient.InferRequestedOutput(out["name"], binary_data=binary_out)]
        r = client.infer(model, [i], outputs=outputs, request_id="kserve-client", **kw)
        return r.as_numpy(out["name"]), r.get_response()

    for label, bi, bo in [("json", False, False), ("binary", True, True),
                          ("json-in binary-out", False, True)]:
        got, resp = run(bi, bo)
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        same_top = int(np.argmax(got)) == int(np.argmax(ref))
        c.check(f"infer {label} matches infer run", got.shape == ref.shape and diff <= tol
                and same_top, f"max_abs={diff:.3g} tol={tol:g} top1={int(np.argmax(got))}")
        c.check(f"infer {label} echoes the request id", resp.get("id") == "kserve-client")

    # Default outputs (none requested): tritonclient asks for binary_data_output.
    i = httpclient.InferInput(inp["name"], list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=True)
    got = client.infer(model, [i]).as_numpy(out["name"])
    c.check("infer with default outputs", got is not None and got.shape == ref.shape)

    # A generous per-request timeout (microseconds) still answers.
    got, _ = run(True, True, timeout=60_000_000)
    c.check("infer with timeout parameter", got.shape == ref.shape)

    # Errors come back as KServe JSON with a status the client reports.
    bad = httpclient.InferInput(inp["name"], [1, 3, 8, 8], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32), binary_data=True)
    try:
        client.infer(model, [bad])
        c.check("wrong shape is refused", False, "no error")
    except InferenceServerException as e:
        c.check("wrong shape is refused", e.status() == "400" and inp["name"] in e.message(),
                f"status={e.status()} {e.message()}")
    try:
        client.get_model_metadata("no-such-model")
        c.check("unknown model is 404", False, "no error")
    except InferenceServerException as e:
        c.check("unknown model is 404", e.status() == "404", f"status={e.status()}")

    client.close()
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
