#!/usr/bin/env node
// Install step of the bssn package: the source-build path, and only that. On linux-x64 the package ships a
// prebuilt binary that is found at run time (scripts/load-addon.cjs), so nothing depends on this script: installs
// with scripts blocked (npm --ignore-scripts; pnpm and bun by default) work. It compiles with cmake-js only
//   - when no binary loads here (another platform or libc, a glibc older than the prebuilt binary needs, a
//     damaged file), or
//   - when asked: `npm install --build-from-source` (npm_config_build_from_source), BSSN_BUILD_FROM_SOURCE=1,
//     or `--force` (npm run build:native).
// BSSN_CUDA=AUTO|ON|OFF (or `npm install --bssn-cuda=OFF`) selects the CUDA backend of a source build; AUTO builds
// it when nvcc is found. BSSN_BUILD_TYPE=Debug makes a debug build. OpenBLAS is linked in when scripts/openblas.cjs
// finds or fetches a static one (BSSN_OPENBLAS_STATIC names it); without, the build says CPU training will be slow.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { candidates, explain, loadAddon } = require('./load-addon.cjs')
const { findOpenBlas } = require('./openblas.cjs')

const root = path.resolve(__dirname, '..')
const truthy = (value) => ['1', 'true', 'yes', 'on', 'bssn'].includes(String(value ?? '').toLowerCase())
const force = process.argv.includes('--force')
const fromSource = force || truthy(process.env.BSSN_BUILD_FROM_SOURCE) || truthy(process.env.npm_config_build_from_source)
const cuda = String(process.env.BSSN_CUDA || process.env.npm_config_bssn_cuda || 'AUTO').toUpperCase()

if (!['AUTO', 'ON', 'OFF'].includes(cuda)) {
  console.error(`bssn: BSSN_CUDA must be AUTO, ON or OFF, got '${cuda}'`)
  process.exit(1)
}

let failures = []
if (!fromSource) {
  try {
    const found = loadAddon(root)
    console.log(`bssn: using ${path.relative(root, found.file)} (${found.kind === 'prebuilt' ? 'prebuilt' : 'built here'}); nothing to build`)
    process.exit(0)
  } catch (error) {
    failures = error.failures ?? []
    console.log('bssn: no prebuilt or earlier built addon loads here, so it is built from source')
    for (const f of failures) console.log(`  ${path.relative(root, f.file)}: ${f.reason}`)
  }
} else {
  console.log(`bssn: building from source (${force ? '--force' : 'asked by --build-from-source or BSSN_BUILD_FROM_SOURCE'})`)
}

/** The first of `names` found as an executable on PATH, or undefined. */
function onPath(names) {
  for (const dir of (process.env.PATH || '').split(path.delimiter).filter(Boolean))
    for (const name of names) {
      const file = path.join(dir, name)
      try {
        fs.accessSync(file, fs.constants.X_OK)
        return file
      } catch {
        // not here
      }
    }
  return undefined
}

function fail(why) {
  const lines = fromSource
    ? [
        `bssn: the source build that was asked for ${why}.`,
        ...failures.map((f) => `  ${path.relative(root, f.file)}: ${f.reason}`),
        '  It needs CMake >= 3.18 and a C++17 compiler (g++ or clang) on PATH; with nvcc on PATH the CUDA backend is built too.',
      ]
    : [explain(root, failures, { installing: true }), `  The source build ${why}.`]
  console.error(['', ...lines, '  For the CPU backend only: BSSN_CUDA=OFF npm install bssn --build-from-source'].join('\n'))
  process.exit(1)
}

// Missing tools are named at once, instead of in CMake's own words.
const missing = []
if (!onPath(['cmake'])) missing.push('cmake (>= 3.18)')
if (!process.env.CXX && !onPath(['c++', 'g++', 'clang++'])) missing.push('a C++17 compiler (c++, g++ or clang++, or CXX)')
if (missing.length) fail(`cannot run: ${missing.join(' and ')} not found on PATH`)

const openblas = findOpenBlas({ fetch: true })
if (openblas.explicit) fail(`cannot use the OpenBLAS named: ${openblas.why}`)
if (openblas.archive) console.log(`bssn: linking OpenBLAS${openblas.version ? ` ${openblas.version}` : ''} statically (${openblas.source}): ${openblas.archive}`)
else
  console.log(
    `bssn: no static OpenBLAS (${openblas.why}), so CPU training will be slow (about 3.5x) unless a system OpenBLAS, BLIS or MKL is ` +
      'found at run time; to link one in: apt-get install libopenblas-pthread-dev (or BSSN_OPENBLAS_STATIC=/path/to/libopenblas.a), then npm rebuild bssn --build-from-source',
  )

// Configured every time (quick once cached): `cmake-js compile` would only build a folder configured before, so
// the options here (a BLAS installed since, another BSSN_CUDA) would not apply to a rebuild.
const cmakeJs = require.resolve('cmake-js/bin/cmake-js')
const common = ['--directory', root, '--out', path.join(root, 'build'), ...(process.env.BSSN_BUILD_TYPE === 'Debug' ? ['--debug'] : [])]
console.log(`bssn: building the native addon (CUDA: ${cuda}) ...`)
for (const args of [
  ['configure', ...common, `--CDBSSN_CUDA=${cuda}`, `--CDBSSN_OPENBLAS_STATIC=${openblas.archive ?? 'OFF'}`],
  ['build', ...common],
]) {
  const result = spawnSync(process.execPath, [cmakeJs, ...args], { cwd: root, stdio: 'inherit', env: process.env })
  if (result.status !== 0) fail(`failed: cmake-js ${args[0]} exited with ${result.status ?? result.signal ?? result.error} (its output is above)`)
}

// The build's result must load here; otherwise say why, with everything else that was tried.
failures = failures.filter((f) => f.kind !== 'built')
for (const built of candidates(root).filter((c) => c.kind === 'built')) {
  try {
    require(built.file)
    console.log(`bssn: built ${path.relative(root, built.file)}`)
    process.exit(0)
  } catch (error) {
    failures.unshift({ ...built, reason: String(error?.message ?? error).split('\n')[0] })
  }
}
fail('finished, but its result does not load')
