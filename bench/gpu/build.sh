#!/usr/bin/env bash
# Builds the addon with the CUDA backend on the GPU machine (no registry there): cmake-js when cmake exists, else
# nvcc and g++ directly, with CMakeLists.txt's source list and flags. Used by bench/gpu/run.sh when the addon
# built on the CPU machine cannot run here (say, a driver older than that machine's CUDA).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${ONEFORWARD_DIRECT_BUILD:-0}" != 1 ] && command -v cmake >/dev/null 2>&1; then
  ONEFORWARD_CUDA=1 node node_modules/.bin/cmake-js compile --out build
  exit 0
fi
srcs=$(sed -n '/^set(ONEFORWARD_CPU_SOURCES/,/^)/p' CMakeLists.txt | grep -o 'native/[^ ]*\.cpp')
inc="-Inative -I$(node -p "require('node-addon-api').include_dir") -I$(node -p "require('node-api-headers').include_dir")"
defs="-DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED -DONEFORWARD_WITH_CUDA"
obj=build/direct
mkdir -p "$obj" build/Release
objs=()
pids=()
for s in $srcs native/cuda/cublas.cpp; do
  o="$obj/$(echo "$s" | tr / _).o"
  objs+=("$o")
  g++ -std=c++17 -O3 -fPIC -ffp-contract=off -fno-math-errno -fvisibility=hidden -w -Wno-psabi $inc $defs -c "$s" -o "$o" &
  pids+=($!)
done
arch="-gencode arch=compute_75,code=compute_75 -gencode arch=compute_90,code=sm_90"
nvcc -std=c++17 -O3 --fmad=false -Xcompiler -fPIC,-fvisibility=hidden $arch $inc $defs -c native/cuda/device.cu -o "$obj/device.o" &
pids+=($!)
nvcc -std=c++17 -O3 -Xcompiler -fPIC,-fvisibility=hidden $arch $inc $defs -c native/cuda/gemm.cu -o "$obj/gemm.o" &
pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done  # each one: a failed compile stops the script
nvcc -shared -cudart static -o build/Release/oneforward.node "${objs[@]}" "$obj/device.o" "$obj/gemm.o" -ldl -lrt -lpthread
echo "build.sh: build/Release/oneforward.node with CUDA (nvcc $(nvcc --version | grep -o 'release [0-9.]*'))"
