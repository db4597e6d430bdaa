#!/usr/bin/env bash
# `infer serve` against NVIDIA's tritonclient[http] (tests/kserve_client.py), loopback only.
#
# Builds `infer`, makes a model repository in a temp folder (the bundled EfficientNet-Lite0
# model folder, and the fixtures' Core ML package as a bare package), writes reference logits
# with `infer run` for the same inputs, starts `infer serve` on 127.0.0.1 (a free port), runs
# the Python client against each model, then stops the server with SIGTERM and checks that it
# drained and exited 0. Needs python3 with tritonclient[http] and numpy (PYTHON to choose one).
# Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
FIX=../shared/fixtures/efficientnet_lite0

cargo build --quiet -p cli --bin infer
INFER="$(cargo metadata --format-version 1 --no-deps | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/infer"

tmp="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/repo/lite0-pkg"
ln -s "$PWD/models/efficientnet-lite0" "$tmp/repo/efficientnet-lite0"
ln -s "$(cd "$FIX" && pwd)/efficientnet_lite0.mlpackage" "$tmp/repo/lite0-pkg/efficientnet_lite0.mlpackage"

# Reference outputs from `infer run` on the same inputs (threads fixed, as in the server).
"$INFER" run models/efficientnet-lite0 --input "$FIX/reference/chelsea.safetensors" --output "$tmp/ref-folder.safetensors" --threads 2
"$INFER" run "$FIX/efficientnet_lite0.mlpackage" --input "$FIX/reference/coffee.safetensors" --output "$tmp/ref-pkg.safetensors" --threads 2

"$INFER" serve --model-repository "$tmp/repo" --listen 127.0.0.1:0 --threads 2 2> "$tmp/serve.log" &
server=$!
url=""
for _ in $(seq 1 600); do
  url="$(sed -n 's#^listening on http://\([0-9.:]*\).*#\1#p' "$tmp/serve.log" | head -1)"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$tmp/serve.log"; echo "infer serve exited early"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$tmp/serve.log"; echo "infer serve did not start listening in 60 s"; exit 1; }
echo "infer serve on $url"

status=0
"$PYTHON" tests/kserve_client.py "$url" efficientnet-lite0 "$FIX/reference/chelsea.safetensors" "$tmp/ref-folder.safetensors" 1e-4 || status=1
"$PYTHON" tests/kserve_client.py "$url" lite0-pkg "$FIX/reference/coffee.safetensors" "$tmp/ref-pkg.safetensors" 1e-4 || status=1

kill -TERM "$server"
if wait "$server"; then
  echo "ok   SIGTERM: drained and exited 0"
else
  echo "FAIL SIGTERM: infer serve exited $?"; status=1
fi
server=""
grep -q "draining" "$tmp/serve.log" || { echo "FAIL no drain message"; status=1; }
cat "$tmp/serve.log"
exit "$status"
