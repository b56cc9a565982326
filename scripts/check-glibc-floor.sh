#!/usr/bin/env bash
# Proof that the prebuilt binary loads on an older system than the one that built it: Node runs on Debian 11's
# glibc 2.31 and GCC 10's libstdc++ (what Ubuntu 20.04 has too), through that glibc's own dynamic loader, and
# loads the addon, runs a CPU op and a product on the linked-in OpenBLAS, shares a tensor and opens it, throws a C++ exception across the N-API boundary,
# and falls back from CUDA.
# The three packages (libc6, libstdc++6, libgcc-s1 of bullseye) are fetched once with apt-get download into
# build-prebuild/old-glibc/ (a private apt state: the system's is untouched). When they cannot be fetched, the
# check is skipped with a note (exit 0); a binary that does not load there fails it.
#   bash scripts/check-glibc-floor.sh [ADDON]   (default: prebuilds/linux-x64/bssn.napi.glibc.node)
set -euo pipefail
cd "$(dirname "$0")/.."
addon="$(realpath "${1:-prebuilds/linux-x64/bssn.napi.glibc.node}")"
dir="$PWD/build-prebuild/old-glibc"
ld="$dir/root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"

if [ ! -e "$ld" ]; then
  rm -rf "$dir"
  mkdir -p "$dir/state/lists/partial" "$dir/cache/archives/partial" "$dir/debs" "$dir/root"
  echo "deb http://deb.debian.org/debian bullseye main" >"$dir/sources.list"
  apt=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=/nonexistent -o "Dir::State=$dir/state"
       -o Dir::State::status=/dev/null -o "Dir::Cache=$dir/cache" -o APT::Sandbox::User=root)
  if ! { apt-get "${apt[@]}" update && (cd "$dir/debs" && apt-get "${apt[@]}" download libc6 libstdc++6 libgcc-s1); } >"$dir/fetch.log" 2>&1; then
    echo "check-glibc-floor: skipped: Debian 11's glibc could not be fetched (see $dir/fetch.log)"
    rm -f "$ld"
    exit 0
  fi
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
fi

lib="$dir/root/lib/x86_64-linux-gnu:$dir/root/usr/lib/x86_64-linux-gnu"
"$ld" --library-path "$lib" "$(command -v node)" -e '
  const addon = process.argv[1]
  const glibc = process.report.getReport().header.glibcVersionRuntime
  const b = require(addon)
  const info = b.buildInfo()
  let threw = ""
  try { b.cuda(0) } catch (e) { threw = e.message }
  const t = b.cpu().randn([64, 64], 1, 1)
  // A shared tensor opened again: memfd, futex and the robust mutex through the pinned glibc symbols.
  const { token, publication } = t.share()
  const opened = b.cpu().open(token, [64, 64], publication)
  // C = T T^T through the CPU BLAS: its diagonal holds the sums of squares of the rows.
  const c = b.cpu().zeros([64, 64])
  b.ops.gemm(t, t, c, false, true, 1, 0)
  const blas = b.cpu().info().blas ?? `none (${b.cpu().info().blasError})`
  Promise.all([t.toArray(), opened.toArray(), c.toArray()]).then(([values, same, product]) => {
    if (values.length !== 4096 || !values.every(Number.isFinite)) throw new Error("bad CPU result")
    if (!same.every((x, i) => x === values[i])) throw new Error("the opened shared tensor reads other values")
    for (let i = 0; i < 64; i++) {
      let expected = 0
      for (let j = 0; j < 64; j++) expected += values[i * 64 + j] ** 2
      if (Math.abs(product[i * 65] - expected) > 1e-4 * expected) throw new Error(`bad product on ${blas}`)
    }
    console.log(`check-glibc-floor: ${addon} loads and runs on glibc ${glibc} (libstdc++ of GCC 10): ` +
      `CUDA ${info.cudaToolkit} backend in, portable ${info.portable}; CPU BLAS: ${blas}; CUDA here: ${b.cudaStatus().available ? "usable" : `no (${threw.slice(0, 80)}...)`}`)
  })
' "$addon"
