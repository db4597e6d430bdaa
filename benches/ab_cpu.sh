#!/usr/bin/env bash
# Same-model A/B of infer binaries by CPU time (user+sys of the whole process: load, 10 warm-up
# and ITERS timed runs), alternating binaries per round, for a loaded machine where wall-clock
# percentiles mostly measure the scheduler. Usage: ab_cpu.sh THREADS ITERS ROUNDS BIN...
# MODELS="lite0 fastvit" picks models; any other name is a zoo package, $ZOO/NAME/NAME.mlpackage
# (ZOO defaults to target/zoo, made by scripts/make_zoo.py). Prints one line per run: binary, model, CPU s per run, wall p50 ms, load average.
set -u
T=$1; ITERS=$2; ROUNDS=$3; shift 3
# Per-run scratch files, so two people measuring at once do not read each other's results.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ab_cpu.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
FX=${FX:-../shared/fixtures}
LITE0=${LITE0:-models/efficientnet-lite0}
ZOO=${ZOO:-target/zoo}
for r in $(seq "$ROUNDS"); do
  for model in ${MODELS:-lite0 fastvit lite0pkg fastvitpkg}; do
    case $model in
      lite0) a=(--model "$LITE0");;
      fastvit) a=(--model "$FX/fastvit_t8/fastvit_t8.train_form.safetensors" --arch fastvit-t8);;
      lite0pkg) a=(--model "$FX/efficientnet_lite0/efficientnet_lite0.mlpackage");;
      fastvitpkg) a=(--model "$FX/fastvit_t8/fastvit_t8.mlpackage");;
      *) a=(--model "$ZOO/$model/$model.mlpackage");;
    esac
    for b in "$@"; do
      /usr/bin/time -o "$TMP/t" -f "%U %S" "$b" bench "${a[@]}" --threads "$T" --iters "$ITERS" \
        --quiet --json "$TMP/json" >/dev/null 2>&1
      python3 - "$b" "$model" "$ITERS" "$TMP" <<'PY'
import json, sys
u, s = map(float, open(sys.argv[4] + '/t').read().split()[-2:])
v = json.load(open(sys.argv[4] + '/json'))
la = open('/proc/loadavg').read().split()[0]
print(f"{sys.argv[1]:>16} {sys.argv[2]:>10} cpu/run {1e3*(u+s)/(int(sys.argv[3])+10):7.2f} ms  p50 {v['p50_ms']:7.2f} ms  load {la}")
PY
    done
  done
done
