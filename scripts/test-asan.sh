#!/usr/bin/env bash
# AddressSanitizer pass over the native addon (a local habit, like sharp's valgrind run). Builds the addon with
# -fsanitize=address into build-asan/ (CPU only, no MPI; build/ is left alone), then runs the whole suite (less
# the files in SKIP below) against it with the compiler's libasan preloaded into node. Node itself is not
# instrumented: ASan checks every access the addon makes and every malloc/free, in the test processes and in the
# child processes they spawn. A report makes that process exit 66, which fails its test. test/80's RSS check
# skips itself here (ASan's quarantine holds freed memory); test/53 loads the uninstrumented MPI addon from build/.
# Usage: npm run test:asan [-- dist/test/NN-name.test.js ...]   Needs cmake and gcc or clang with libasan.
set -euo pipefail
cd "$(dirname "$0")/.."
CXX="${CXX:-g++}"
ASAN_LIB="$("$CXX" -print-file-name=libasan.so)"
if [ ! -f "$ASAN_LIB" ]; then
  echo "test:asan: $CXX has no libasan.so (Debian: apt-get install g++, which brings libasan)" >&2
  exit 1
fi
ONEFORWARD_CUDA=0 ONEFORWARD_MPI=0 npx cmake-js build --out build-asan --CDCMAKE_BUILD_TYPE=RelWithDebInfo \
  --CDCMAKE_CXX_FLAGS="-fsanitize=address -fno-omit-frame-pointer" --CDCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address"
npx tsc -p tsconfig.json
node scripts/esm-wrapper.js
# Files that cannot run under ASan, each with its reason (none today; keep this list short):
SKIP=()
if [ "$#" -eq 0 ]; then
  for f in dist/test/*.test.js; do
    case " ${SKIP[*]-} " in *" $(basename "$f") "*) echo "test:asan: skipping $f (see SKIP in $0)" >&2 ;; *) set -- "$@" "$f" ;; esac
  done
fi
# detect_leaks=0: node keeps its heap until exit by design; the addon's leaks are covered by test/80's RSS check
# in the plain run.
ONEFORWARD_NATIVE="$PWD/build-asan/Release/oneforward.node" ONEFORWARD_BACKEND=cpu LD_PRELOAD="$ASAN_LIB" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=66:${ASAN_OPTIONS:-}" \
  npx tap --disable-coverage --jobs=1 "$@"
