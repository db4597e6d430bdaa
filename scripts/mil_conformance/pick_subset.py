"""Copies a small subset of passing captured cases into crates/backend-candle/tests/mil_cases.

    MIL_PASSED_LIST=/tmp/passed.tsv cargo test -p backend-candle --test mil_conformance -- --ignored
    python3 scripts/mil_conformance/pick_subset.py /tmp/passed.tsv [per_op]

Keeps at most `per_op` (default 1) cases per op-test class, preferring the smallest packages,
so the committed set covers every op that passes while staying small.
"""

import os
import shutil
import sys

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
dest = os.path.join(root, "crates/backend-candle/tests/mil_cases")


def size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
    listing = sys.argv[1]
    per_op = int(sys.argv[2]) if len(sys.argv) > 2 else 1
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
    os.makedirs(tmp)
    total = 0
    for key, cases in sorted(groups.items()):
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
