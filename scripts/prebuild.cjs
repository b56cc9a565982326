#!/usr/bin/env node
// npm run prebuild: the prebuilt binary that the package ships, prebuilds/linux-x64/bssn.napi.glibc.node.
//
// Built with cmake-js, not prebuildify: prebuildify only drives node-gyp (its --node-gyp stand-in would be called
// with node-gyp's arguments and must leave the result in ./build/Release, the folder of the developer's own
// build), so we make prebuildify's layout ourselves: prebuilds/<platform>-<arch>/<name>.<tags>.node with the tags
// `napi` (one binary for every Node with Node-API 8) and `glibc`, which node-gyp-build's parseTags/matchTags
// select; the script checks that node-gyp-build picks the file. The binary has the CUDA backend with the default
// architectures (SASS for 80/86/89/90, PTX for newer cards), the CUDA runtime linked statically, cuBLAS/cuDNN
// loaded at run time, OpenBLAS linked in (required: scripts/openblas.cjs finds or fetches it; the CPU backend's
// products run on it), and is portable (BSSN_PORTABLE: static libstdc++, old glibc symbol versions): its glibc
// needs are measured with objdump -T and the build fails when they exceed GLIBC_FLOOR (scripts/load-addon.cjs).
//
//   node scripts/prebuild.cjs [--archs LIST]   LIST replaces the default CUDA architectures (a test build only)
// Build folder: build-prebuild/ (incremental); it also keeps prebuild.json, the last build's measurements.
'use strict'
const { execFileSync, spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { GLIBC_FLOOR } = require('./load-addon.cjs')
const { findOpenBlas } = require('./openblas.cjs')

const root = path.resolve(__dirname, '..')
const buildDir = path.join(root, 'build-prebuild')
const prebuildDir = path.join(root, 'prebuilds', 'linux-x64')
const fileName = 'bssn.napi.glibc.node'
const target = path.join(prebuildDir, fileName)
const reportFile = path.join(buildDir, 'prebuild.json')

/** A digest of everything the binary is built from (the emulator is not part of it). */
function sourceHash() {
  const hash = crypto.createHash('sha256')
  const files = ['CMakeLists.txt']
  const walk = (dir) => {
    for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.join(dir, entry.name)
      if (entry.isDirectory()) {
        if (rel !== path.join('native', 'emulator')) walk(rel)
      } else files.push(rel)
    }
  }
  walk('native')
  for (const rel of files.sort()) hash.update(rel).update('\0').update(fs.readFileSync(path.join(root, rel))).update('\0')
  return hash.digest('hex')
}

const compareVersions = (a, b) => {
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
  return 0
}

/** What a binary needs from the host: symbol versions by family (objdump -T) and its DT_NEEDED libraries. */
function measure(file) {
  const symbols = execFileSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 })
  const versions = {}
  for (const line of symbols.split('\n')) {
    const m = /\*UND\*\s+\S+\s+\(?((GLIBC|GLIBCXX|CXXABI|GCC)_[\d.]+)\)?\s+(\S+)$/.exec(line.trim())
    if (!m) continue
    const [family, version] = [m[2], m[1].slice(m[2].length + 1)]
    ;(versions[family] ??= {})[version] ??= []
    versions[family][version].push(m[3])
  }
  // Undefined and unversioned, bar the weak ones and Node-API's (which Node itself defines).
  const foreign = symbols
    .split('\n')
    .map((line) => /\*UND\*\s+\S+\s+(\S+)$/.exec(line.trim())?.[1])
    .filter((name) => name && !/^(napi_|node_api_|_ITM_|__gmon_start__|_Jv_)/.test(name))
  const newest = (family) => Object.keys(versions[family] ?? {}).sort(compareVersions).pop() ?? null
  const dynamic = execFileSync('readelf', ['-d', file], { encoding: 'utf8' })
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[(.+?)\]/g)].map((m) => m[1])
  return {
    glibc: newest('GLIBC'),
    glibcSymbols: Object.fromEntries(Object.entries(versions.GLIBC ?? {}).filter(([v]) => compareVersions(v, '2.14') >= 0).sort((a, b) => compareVersions(a[0], b[0]))),
    glibcxx: newest('GLIBCXX'),
    cxxabi: newest('CXXABI'),
    gcc: newest('GCC'),
    needed,
    foreign,
  }
}

function run(args, env) {
  const result = spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), ...args], { cwd: root, stdio: 'inherit', env })
  if (result.status !== 0) {
    console.error(`prebuild: cmake-js ${args[0]} failed (exit ${result.status ?? result.signal})`)
    process.exit(1)
  }
}

/**
 * Whether npm runs this as the pre-hook of `npm run build` (npm runs a script named prebuild before build, and its
 * environment is the same either way): then the npm process's own arguments name `build`.
 */
function hookOfBuild() {
  if (process.env.npm_lifecycle_event !== 'prebuild') return false
  let pid = process.ppid
  for (let depth = 0; depth < 4 && pid > 1; depth++) {
    try {
      // npm sets its process title to its command line ("npm run build"): one string or several
      const words = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().split(/\s+/)
      const run = words.findIndex((w) => w === 'run' || w === 'run-script')
      if (run > 0 && words.slice(0, run).some((w) => /(^|\/)npm(-cli\.js)?$/.test(w)))
        return words.slice(run + 1).find((w) => !w.startsWith('-')) === 'build'
      pid = Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
    } catch {
      return false
    }
  }
  return false
}

function main() {
  if (hookOfBuild()) {
    console.log('prebuild: skipped (npm runs it before `npm run build`); `npm run prebuild` makes the prebuilt binary')
    return
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.error(`prebuild: the prebuilt binary is made on linux-x64 only (this is ${process.platform}-${process.arch})`)
    process.exit(1)
  }
  const archIndex = process.argv.indexOf('--archs')
  const env = { ...process.env }
  delete env.BSSN_CUDA_ARCHITECTURES  // the product has the CMake default; a developer's setting must not leak in
  if (archIndex > 0) {
    env.BSSN_CUDA_ARCHITECTURES = process.argv[archIndex + 1]
    console.log(`prebuild: CUDA architectures ${env.BSSN_CUDA_ARCHITECTURES} (not the default: a test build)`)
  }
  const started = Date.now()
  const openblas = findOpenBlas({ fetch: true })
  if (!openblas.archive) {
    console.error(`prebuild: the prebuilt binary links OpenBLAS, and none can be had: ${openblas.why}`)
    console.error('  apt-get install libopenblas-pthread-dev, or name a static, position-independent libopenblas.a with BSSN_OPENBLAS_STATIC')
    process.exit(1)
  }
  console.log(`prebuild: OpenBLAS ${openblas.version ?? ''} (${openblas.source}): ${openblas.archive}`)
  const hash = sourceHash()
  const common = ['--directory', root, '--out', buildDir]
  // Configured every time, so that the flags and architectures above always apply (quick once cached).
  run(['configure', ...common, '--CDBSSN_CUDA=ON', '--CDBSSN_PORTABLE=ON', `--CDBSSN_OPENBLAS_STATIC=${openblas.archive}`], env)
  run(['build', ...common, '--parallel', String(os.availableParallelism())], env)
  const built = path.join(buildDir, 'Release', 'bssn.node')

  const needs = measure(built)
  const problems = []
  if (needs.glibc && compareVersions(needs.glibc, GLIBC_FLOOR) > 0)
    problems.push(`it needs glibc ${needs.glibc} (> ${GLIBC_FLOOR}) for: ${JSON.stringify(Object.fromEntries(Object.entries(needs.glibcSymbols).filter(([v]) => compareVersions(v, GLIBC_FLOOR) > 0)))}; pin or replace them in native/portable/glibc_pins.def`)
  if (needs.glibcxx || needs.cxxabi) problems.push(`it needs the host's libstdc++ (GLIBCXX_${needs.glibcxx}, CXXABI_${needs.cxxabi}); it should carry its own`)
  if (needs.foreign.length) problems.push(`it needs symbols no library it names defines (a Fortran or OpenMP runtime?): ${needs.foreign.join(' ')}`)
  if (problems.length) {
    for (const p of problems) console.error(`prebuild: not portable, so not copied to prebuilds/: ${p}`)
    process.exit(1)
  }

  fs.mkdirSync(prebuildDir, { recursive: true })
  for (const old of fs.readdirSync(prebuildDir)) fs.rmSync(path.join(prebuildDir, old), { force: true })
  fs.copyFileSync(built, `${target}.tmp`)
  fs.renameSync(`${target}.tmp`, target)

  // node-gyp-build, as the package's users run it, must choose this file (PREBUILDS_ONLY: ignore build/).
  const chosen = execFileSync(process.execPath, ['-p', `require('node-gyp-build').resolve(${JSON.stringify(root)})`], {
    cwd: root,
    env: { ...process.env, PREBUILDS_ONLY: '1' },
    encoding: 'utf8',
  }).trim()
  if (chosen !== target) throw new Error(`node-gyp-build chose ${chosen}, not ${target}`)
  const info = JSON.parse(
    execFileSync(process.execPath, ['-p', `JSON.stringify(require(${JSON.stringify(target)}).buildInfo())`], { encoding: 'utf8' }),
  )
  if (info.cuda !== 'cuda' || !info.portable || !info.openblas)
    throw new Error(`the prebuilt binary is not a portable CUDA build with OpenBLAS linked in: ${JSON.stringify(info)}`)
  const cpuBlas = execFileSync(process.execPath, ['-p', `require(${JSON.stringify(target)}).cpu().info().blas`], {
    encoding: 'utf8',
    env: { ...process.env, BSSN_BLAS: '', BSSN_BLAS_PATH: '' },
  }).trim()
  if (!/\(linked in\)$/.test(cpuBlas)) throw new Error(`the prebuilt binary's CPU backend does not run on its OpenBLAS: ${cpuBlas}`)

  const report = {
    file: path.relative(root, target),
    bytes: fs.statSync(target).size,
    sourceHash: hash,
    buildInfo: info,
    openblas: { archive: openblas.archive, source: openblas.source, version: openblas.version ?? null, cpuBlas },
    ...needs,
    seconds: Math.round((Date.now() - started) / 1000),
  }
  fs.writeFileSync(reportFile, `${JSON.stringify(report, null, 2)}\n`)
  console.log(
    [
      `prebuild: ${report.file} (${(report.bytes / 2 ** 20).toFixed(1)} MiB, ${report.seconds} s), chosen by node-gyp-build`,
      `  CUDA ${info.cudaToolkit}, architectures ${info.cudaArchitectures.join(' ')}; ${info.compiler}`,
      `  OpenBLAS linked in (${info.openblas}): ${cpuBlas}`,
      `  needs glibc >= ${needs.glibc} (floor ${GLIBC_FLOOR}); libstdc++: ${needs.glibcxx ? `GLIBCXX_${needs.glibcxx}` : 'none (linked in)'}; libgcc_s: GCC_${needs.gcc}`,
      `  glibc symbols from 2.14 on: ${Object.entries(needs.glibcSymbols).map(([v, s]) => `${v} (${s.join(', ')})`).join('; ')}`,
      `  shared libraries: ${needs.needed.join(' ')}`,
    ].join('\n'),
  )
}

module.exports = { sourceHash, measure, hookOfBuild, target, reportFile }
if (require.main === module) main()
