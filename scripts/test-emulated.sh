#!/usr/bin/env bash
# npm run test:emulated: the suite with every CUDA test running on the emulated CUDA device (native/emulator):
# builds the emulated addon in build-emulated/ (the production build in build/ is untouched), then runs vitest on it
# with BSSN_REQUIRE_CUDA=1, so a CUDA test that would skip fails instead.
#   --asan   the same under AddressSanitizer (build-emulated-asan/): out-of-bounds kernel reads and writes, use of
#            freed device memory and the like are reported, as compute-sanitizer's memcheck does on a GPU.
# Other arguments go to vitest (e.g. a test file).
set -euo pipefail
cd "$(dirname "$0")/.."

out=build-emulated
cmake_args=(--CDBSSN_CUDA=EMULATED)
if [ "${1:-}" = "--asan" ]; then
  shift
  out=build-emulated-asan
  cmake_args+=(--CDBSSN_SANITIZE=address)
fi

echo "=== build the emulated addon ($out)"
mkdir -p "$out"
if ! node node_modules/cmake-js/bin/cmake-js compile --out "$out" "${cmake_args[@]}" >"$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log"
  echo "the emulated build failed (full log: $out/build.log)" >&2
  exit 1
fi
npx tsc -p tsconfig.build.json  # the CLI tests run dist/

export BSSN_ADDON="$PWD/$out/Release/bssn.node" BSSN_REQUIRE_CUDA=1 BSSN_EMULATED=1 BSSN_SKIP_INSTALL_TEST=1
if [[ "$out" == *asan ]]; then
  # Node itself is not instrumented: the runtime is preloaded. Node and V8 keep memory until exit by design, so
  # leak checking is off; everything else stops the run at the first report.
  LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
  export LD_PRELOAD
  export BSSN_UNDER_SANITIZER=1  # the long soaks skip (test/train.test.ts, test/cpu_backend.test.ts)
  export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:detect_stack_use_after_return=0:allocator_may_return_null=1"
fi
skip=()
if [[ "$out" == *asan ]]; then
  # The sanitizer checks native code: files that drive whole training runs (the CLI, GAN training, the PyTorch
  # comparisons) or test TypeScript only (metrics, data, checkpoints' parsing, the launch environment, the rendezvous)
  # take minutes under it for native paths the rest of the suite already runs there (CI time, .ci/run).
  excluded="cli cli_files torch_baselines torch_parity gan train spectrum images knn checkpoint doctor distributed/env distributed/rendezvous"
else
  # Files with no CUDA test (nothing in them skips without a GPU): npm test ran them twice on the same code, and here
  # they would run the same CPU paths again (CI time). A file that gains a CUDA test leaves this list.
  excluded="cli cli_files cpu_backend cpu_blas torch_baselines checkpoint images knn top_singular svg distributed/env distributed/rendezvous distributed/process_group"
fi
for f in $excluded; do
  skip+=(--exclude "test/$f.test.ts")
done
echo "=== vitest on $BSSN_ADDON (BSSN_REQUIRE_CUDA=1)"
npx vitest run "${skip[@]}" "$@"
