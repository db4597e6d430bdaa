"""Copies a small subset of passing captured cases into crates/backend-candle/tests/mil_cases.

    MIL_PASSED_LIST=/tmp/passed.tsv cargo test -p backend-candle --test mil_conformance -- --ignored
    python3 scripts/mil_conformance/pick_subset.py /tmp/passed.tsv [per_op] [--add]

Keeps at most `per_op` (default 1) cases per op-test class, preferring the smallest packages,
so the committed set covers every op that passes while staying small. With `--add` the
committed cases stay as they are and only classes none of them covers get a case.
"""

import os
import shutil
import sys

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
dest = os.path.join(root, "crates/backend-candle/tests/mil_cases")


def size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def covered():
    """Test classes the committed cases already cover."""
    import json

    keys = set()
    if not os.path.isdir(dest):
        return keys
    for case in os.listdir(dest):
        try:
            with open(os.path.join(dest, case, "case.json")) as f:
                test = json.load(f)["test"]
        except (OSError, ValueError, KeyError):
            continue
        keys.add(test.split("[")[0].rsplit("::", 1)[0])
    return keys


def main():
    args = [a for a in sys.argv[1:] if a != "--add"]
    add = "--add" in sys.argv[1:]
    listing = args[0]
    per_op = int(args[1]) if len(args) > 1 else 1
    have = covered() if add else set()
    groups = {}
    with open(listing) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            family, case, test = parts
            # iOS15/test_activation.py::TestElu::test_builder... -> the class
            key = test.split("[")[0].rsplit("::", 1)[0]
            groups.setdefault(key, []).append(case)
    tmp = dest + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    if add:
        shutil.copytree(dest, tmp)
    else:
        os.makedirs(tmp)
    total = 0
    for key, cases in sorted(groups.items()):
        if key in have:
            continue
        for case in sorted(cases, key=size)[:per_op]:
            if size(case) > 64 * 1024:
                continue
            shutil.copytree(case, os.path.join(tmp, os.path.basename(case)))
            total += size(case)
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    print(f"{len(os.listdir(dest))} cases, {total / 1024:.0f} KiB in {dest}")


if __name__ == "__main__":
    main()
