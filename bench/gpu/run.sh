#!/usr/bin/env bash
# The GPU session's one script (issue 8). On the GPU machine, from the project root, with `.gpu`, `dist` and
# `build/Release` carried from the CPU machine (after `npm install`, `npm run build` and bench/gpu/pack there):
#   source .gpu/boot && bash bench/gpu/run.sh
# Writes under $OUT (default bench/results/gpu-run): nvidia-smi.txt, info-prebuilt.json (the carried addon), build.log
# and info.json (when it had to be rebuilt here), tests.tap (device and load tests on CUDA), tests-owngemm.tap (the
# same without cuBLAS: our own SGEMM), bench.log, the gpu suite's gpu-digits.json, gpu-throughput.json, gpu.md, and
# nsys-ulr-store-{true,false}.txt (per-kernel time of the ULR throughput step, where nsys exists).
set -uo pipefail
cd "$(dirname "$0")/../.."
# The device tool allows 600 s per command: every step gets at most its own limit and what is left of 550 s.
deadline=$((SECONDS + 550))
limit() { local left=$((deadline - SECONDS)); echo $(( left < $1 ? (left > 1 ? left : 1) : $1 )); }
out=${OUT:-bench/results/gpu-run}
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
info() { node -e "console.log(JSON.stringify(require('./dist/lib/index.js').backend.info()))"; }
info > "$out/info-prebuilt.json" 2>&1
if ! grep -q '"cudaDevices":[1-9]' "$out/info-prebuilt.json"; then
  echo "run.sh: the carried addon cannot use this GPU ($(cat "$out/info-prebuilt.json")); rebuilding here"
  timeout "$(limit 200)" bash bench/gpu/build.sh > "$out/build.log" 2>&1 || echo "run.sh: build failed (see build.log)"
  info > "$out/info.json" 2>&1
fi
cat "$out"/info*.json
timeout "$(limit 150)" node node_modules/.bin/tap --reporter=tap --disable-coverage dist/test/55-device.test.js dist/test/00-load.test.js > "$out/tests.tap" 2>&1
echo "run.sh: device tests rc=$? ($(grep -c '^ *ok' "$out/tests.tap") ok, $(grep -c '^ *not ok' "$out/tests.tap") not ok)"
ONEFORWARD_CUBLAS=0 timeout "$(limit 90)" node node_modules/.bin/tap --reporter=tap --disable-coverage dist/test/55-device.test.js > "$out/tests-owngemm.tap" 2>&1
echo "run.sh: device tests without cuBLAS rc=$?"
timeout "$(limit 330)" node dist/bench/run.js gpu --out "$out" > "$out/bench.log" 2>&1
echo "run.sh: bench rc=$?"
tail -30 "$out/bench.log"
# Where a ULR step's time goes, per kernel (when Nsight Systems is installed and time is left): the throughput
# model, 5 timed steps, stored and regenerated noise. The report files stay in /tmp; the summaries come back.
if command -v nsys >/dev/null 2>&1 && [ $((deadline - SECONDS)) -gt 40 ]; then
  for store in true false; do
    timeout "$(limit 60)" nsys profile --stats=true --force-overwrite true -o "/tmp/of-ulr-store-$store" \
      node dist/bench/cases/gpu.js throughput "{\"estimator\":\"ulr\",\"copies\":512,\"steps\":5,\"storeNoise\":$store}" \
      > "$out/nsys-ulr-store-$store.txt" 2>&1
    echo "run.sh: nsys (storeNoise $store) rc=$?"
  done
else
  echo "run.sh: no per-kernel profile (nsys absent or no time left)"
fi
