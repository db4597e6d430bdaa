"""pytest plugin: runs coremltools' own MIL op tests on Linux and captures each case.

coremltools' op tests build a small program, convert it, and hand the model, the inputs and
numpy-computed expected outputs to `compare_backend`, which skips prediction off macOS. This
plugin replaces that helper (in the module namespace the op tests import it into) with one that
writes the case to disk instead:

    $MIL_CASES_DIR/<n>/model.mlpackage     the converted ML Program
    $MIL_CASES_DIR/<n>/in_<name>.npy       one file per input
    $MIL_CASES_DIR/<n>/out_<name>.npy      one file per expected output
    $MIL_CASES_DIR/<n>/case.json           test id, family, tolerances, dtype, names

`MIL_SAMPLE=N` keeps a stable one-in-N sample of the tests. Only ML Program cases are written (NeuralNetwork conversions are counted as skipped). Nothing is
written for a case the test itself fails before reaching the compare helper.
"""

import json
import os
import shutil
import zlib

import numpy as np

import coremltools.converters.mil.mil.ops.tests.testing_utils as op_testing_utils

OUT = os.environ.get("MIL_CASES_DIR", "/tmp/mil_cases")
_counter = [0]


def _family(nodeid):
    # coremltools/converters/mil/mil/ops/tests/iOS17/test_activation.py::Test...
    path = nodeid.split("::")[0]
    base = os.path.basename(path)
    name = base[len("test_"):-3] if base.startswith("test_") else base
    opset = os.path.basename(os.path.dirname(path))
    return name, opset


def _capture(
    mlmodel,
    input_key_values,
    expected_outputs,
    dtype="fp32",
    atol=1e-04,
    rtol=1e-05,
    also_compare_shapes=True,
    state=None,
    allow_mismatch_ratio=0.0,
):
    if not mlmodel.is_package or expected_outputs is None or state is not None:
        return None
    src = mlmodel.package_path
    if src is None or not os.path.isdir(src):
        return None
    for v in list((input_key_values or {}).values()) + list(expected_outputs.values()):
        if not isinstance(v, (np.ndarray, np.generic, float, int, bool)):
            return None  # images (PIL) and dict outputs are out of scope here
    nodeid = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" (")[0]
    family, opset = _family(nodeid)
    _counter[0] += 1
    case = os.path.join(OUT, f"{os.getpid()}_{_counter[0]:06d}")
    tmp = case + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    shutil.copytree(src, os.path.join(tmp, "model.mlpackage"))
    inputs = []
    for k, v in (input_key_values or {}).items():
        np.save(os.path.join(tmp, f"in_{k}.npy"), np.asarray(v))
        inputs.append(k)
    outputs = []
    for k, v in expected_outputs.items():
        np.save(os.path.join(tmp, f"out_{k}.npy"), np.asarray(v))
        outputs.append(k)
    # compare_backend widens the tolerance for fp16 (and non-CPU units) the same way.
    if dtype == "fp16" or mlmodel.compute_unit.name != "CPU_ONLY":
        atol = max(atol * 100.0, 5e-1)
        rtol = max(rtol * 100.0, 5e-2)
    meta = {
        "test": nodeid,
        "family": family,
        "opset": opset,
        "dtype": dtype,
        "atol": float(atol),
        "rtol": float(rtol),
        "allow_mismatch_ratio": float(allow_mismatch_ratio),
        "compare_shapes": bool(also_compare_shapes),
        "inputs": inputs,
        "outputs": outputs,
    }
    with open(os.path.join(tmp, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
    os.rename(tmp, case)  # complete cases only
    return None


def pytest_configure(config):
    os.makedirs(OUT, exist_ok=True)
    op_testing_utils.compare_backend = _capture


def _is_neuralnetwork(item):
    params = getattr(getattr(item, "callspec", None), "params", {})
    for v in params.values():
        backend = getattr(v, "backend", None)
        if backend is None and isinstance(v, tuple) and v and isinstance(v[0], str):
            backend = v[0]
        if backend == "neuralnetwork":
            return True
    return False


def _sampled_out(item):
    """With MIL_SAMPLE=N, keeps about one test in N, chosen by a stable hash of the test id (the
    same tests on every run and machine), so a capture that would take hours can measure an
    unbiased sample of every family and opset instead of the first files only."""
    n = int(os.environ.get("MIL_SAMPLE", "1"))
    if n <= 1:
        return False
    return zlib.crc32(item.nodeid.encode()) % n != 0


def pytest_collection_modifyitems(config, items):
    """Drops NeuralNetwork-backend parametrizations (only ML Program cases are captured) and,
    with MIL_SAMPLE, the tests outside the sample."""
    drop = [_is_neuralnetwork(it) or _sampled_out(it) for it in items]
    keep = [it for it, d in zip(items, drop) if not d]
    dropped = [it for it, d in zip(items, drop) if d]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
