#!/usr/bin/env bash
# Usage (from the repo root): INFER=target/release/infer ITERS=100 benches/quickbench.sh
# quick side-by-side: ours vs ORT, alternating
FX=${FX:-../shared/fixtures}
INFER=${INFER:-target/release/infer}
ITERS=${ITERS:-100}
for t in 1 2; do
 for c in lite0 fastvit lite0pkg fastvitpkg; do
  case $c in
   lite0) ours=(--model models/efficientnet-lite0); onnx=$FX/efficientnet_lite0/efficientnet_lite0.onnx; inp=$FX/efficientnet_lite0/reference/noise.safetensors;;
   fastvit) ours=(--model $FX/fastvit_t8/fastvit_t8.train_form.safetensors --arch fastvit-t8); onnx=$FX/fastvit_t8/fastvit_t8.onnx; inp=$FX/fastvit_t8/reference/noise1.safetensors;;
   lite0pkg) ours=(--model $FX/efficientnet_lite0/efficientnet_lite0.mlpackage); onnx=$FX/efficientnet_lite0/efficientnet_lite0.onnx; inp=$FX/efficientnet_lite0/reference/noise.safetensors;;
   fastvitpkg) ours=(--model $FX/fastvit_t8/fastvit_t8.mlpackage); onnx=$FX/fastvit_t8/fastvit_t8.onnx; inp=$FX/fastvit_t8/reference/noise1.safetensors;;
  esac
  o=$($INFER bench "${ours[@]}" --threads $t --iters $ITERS --quiet --json /tmp/qb.json --reference $inp >/dev/null 2>&1; cat /tmp/qb.json | python3 -c "import json,sys; v=json.load(sys.stdin); print(f\"{v['p50_ms']:.2f}\")")
  r=$(python3 benches/peers/ort_bench.py $onnx --threads $t --iters $ITERS --input $inp | python3 -c "import json,sys; v=json.load(sys.stdin); print(f\"{v['p50_ms']:.2f}\")")
  echo "$c t=$t ours=$o ort=$r ratio=$(python3 -c "print(f'{$o/$r:.2f}')") load=$(cut -d" " -f1 /proc/loadavg)"
 done
done
