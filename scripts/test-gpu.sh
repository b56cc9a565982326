#!/usr/bin/env bash
# The GPU host's check (npm run test:gpu): build with CUDA ON, run the whole suite with BSSN_REQUIRE_CUDA=1 (so
# every backend test runs on CUDA too and a missing GPU fails), memcheck the GPU tests when compute-sanitizer is
# there, then the training and sharing benchmarks and, last, the normalization benchmark table (with per-kernel
# times). Exits non-zero if any step failed.
#   --no-build (or BSSN_TEST_GPU_NO_BUILD=1): no compiling; the whole run uses the prebuilt binary,
#     prebuilds/linux-x64/bssn.napi.glibc.node (made by `npm run prebuild` elsewhere and carried over: prebuilds/ is
#     git-ignored), through BSSN_ADDON so that a build/ left on the host cannot shadow it. Saves the build's device
#     time and tests exactly what the package ships.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
step() { echo; echo "=== $*"; }

no_build="${BSSN_TEST_GPU_NO_BUILD:-0}"
if [ "${1:-}" = "--no-build" ]; then no_build=1; shift; fi

if [ "$no_build" = "1" ]; then
  prebuilt="$PWD/prebuilds/linux-x64/bssn.napi.glibc.node"
  step "no build: the prebuilt binary $prebuilt"
  [ -f "$prebuilt" ] || { echo "no prebuilt binary: run npm run prebuild and carry prebuilds/ over" >&2; exit 1; }
  export BSSN_ADDON="$prebuilt"
else
  # The GPU hosts are Hopper (H100/H200): building for sm_90 alone saves device time; override to test others.
  export BSSN_CUDA_ARCHITECTURES="${BSSN_CUDA_ARCHITECTURES:-90-real}"
  step "build (BSSN_CUDA=ON, $BSSN_CUDA_ARCHITECTURES)"
  BSSN_CUDA=ON node scripts/install.cjs --force || exit 1
fi
npx tsc -p tsconfig.build.json || exit 1

step "bssn doctor (exit code 0: a GPU is usable)"
node dist/cli/main.js doctor || status=1

step "tests (BSSN_REQUIRE_CUDA=1)"
BSSN_REQUIRE_CUDA=1 npx vitest run || status=1

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$sanitizer" ]; then
  step "compute-sanitizer --tool memcheck over test/gpu"
  BSSN_REQUIRE_CUDA=1 BSSN_UNDER_SANITIZER=1 "$sanitizer" --tool memcheck --error-exitcode 3 --target-processes all \
    node node_modules/vitest/vitest.mjs run test/gpu || status=1
else
  echo "compute-sanitizer not found: memcheck not run" >&2
  status=1
fi

step "training benchmark (SNGAN CNN, batch 64)"
node bench/train.mjs --device cuda || status=1

# Issue 5's GPU check (optional, it costs device time): BSSN_GPU_COMPARE_STEPS=2000 trains SN and BSSN on the
# built-in shapes with the SNGAN CNN and prints the report's headline numbers.
if [ "${BSSN_GPU_COMPARE_STEPS:-0}" -gt 0 ]; then
  step "SNGAN compare on shapes (${BSSN_GPU_COMPARE_STEPS} steps)"
  node dist/cli/main.js compare --dataset shapes --steps "$BSSN_GPU_COMPARE_STEPS" --batch 64 --eval-every 250 --device cuda --out runs/gpu-shapes || status=1
fi

step "sharing benchmark (a second process reads the SNGAN CNN D weights: CUDA IPC against a socket)"
node bench/share.mjs --device cuda --rounds 30 || status=1

step "normalization benchmark"
node bench/normalize.mjs --device "${BSSN_BENCH_DEVICE:-cuda}" || status=1

# What each choice of issue 9 buys, measured in the same session: kernel by kernel instead of CUDA graphs, and the
# per-item kernels instead of the tiled passes (both directions from one read of W).
step "normalization benchmark, kernel by kernel (BSSN_CUDA_GRAPHS=0)"
BSSN_CUDA_GRAPHS=0 node bench/normalize.mjs --device cuda --samples 200 --out bench/out/no-graphs || status=1
step "normalization benchmark, per-item kernels (BSSN_CUDA_TILED=0)"
BSSN_CUDA_TILED=0 node bench/normalize.mjs --device cuda --samples 200 --out bench/out/untiled || status=1
exit $status
