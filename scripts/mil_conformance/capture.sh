#!/usr/bin/env bash
# Captures coremltools' own MIL op tests as conformance cases for the CPU engine's ML Program
# executor (see capture_plugin.py for the case layout; run_cases in backend-candle replays them).
#
#   scripts/mil_conformance/capture.sh [OUT_DIR] [pytest selectors...]
#
# MIL_SAMPLE=N captures a stable one-in-N sample of the tests (the whole set takes hours).
# OUT_DIR defaults to target/mil_cases (outside git). A venv with the pinned versions is made in
# target/mil_venv on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/target/mil_cases}"
shift || true
venv="${MIL_VENV:-$root/target/mil_venv}"  # MIL_VENV: share one venv between checkouts
if [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
tests="$("$venv/bin/python" -c 'import coremltools, os; print(os.path.join(os.path.dirname(coremltools.__file__), "converters/mil/mil/ops/tests"))')"
if [ "$#" -eq 0 ]; then
  set -- "$tests/iOS14" "$tests/iOS15" "$tests/iOS16" "$tests/iOS17" "$tests/iOS18"
fi
rm -rf "$out"
mkdir -p "$out"
cd "$here"
MIL_CASES_DIR="$out" PYTHONPATH="$here" "$venv/bin/pytest" -q -p capture_plugin \
  -p no:cacheprovider --continue-on-collection-errors --rootdir "$tests" "$@" | tail -n 5
echo "captured $(find "$out" -name case.json | wc -l) cases into $out"
