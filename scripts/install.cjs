#!/usr/bin/env node
// Install step of the bssn package: use a prebuilt or already-built addon that loads, else build it with
// cmake-js. `--force` always rebuilds. BSSN_CUDA=AUTO|ON|OFF (or `npm install --bssn-cuda=OFF`) selects the
// CUDA backend; AUTO builds it when nvcc is found.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const force = process.argv.includes('--force')
const cuda = String(process.env.BSSN_CUDA || process.env.npm_config_bssn_cuda || 'AUTO').toUpperCase()

if (!['AUTO', 'ON', 'OFF'].includes(cuda)) {
  console.error(`bssn: BSSN_CUDA must be AUTO, ON or OFF, got '${cuda}'`)
  process.exit(1)
}

if (!force) {
  try {
    const file = require('node-gyp-build').resolve(root)
    require(file)
    console.log(`bssn: using ${path.relative(root, file)}`)
    process.exit(0)
  } catch {
    // nothing usable yet: build below
  }
}

const cmakeJs = require.resolve('cmake-js/bin/cmake-js')
const args = [cmakeJs, 'compile', '--directory', root, '--out', path.join(root, 'build'), `--CDBSSN_CUDA=${cuda}`]
if (process.env.BSSN_BUILD_TYPE === 'Debug') args.push('--debug')
console.log(`bssn: building the native addon (CUDA: ${cuda}) ...`)
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: process.env })
if (result.status !== 0) {
  console.error(
    [
      '',
      'bssn: building the native addon failed.',
      '  It needs CMake >= 3.18 and a C++17 compiler (g++ or clang) on PATH; the CUDA backend also needs nvcc.',
      '  To build the CPU backend only: BSSN_CUDA=OFF npm install bssn',
      `  (cmake-js exited with ${result.status ?? result.signal ?? result.error})`,
    ].join('\n'),
  )
  process.exit(1)
}
