// Finds and loads bssn's native addon. Shared by the package at run time (src/native.ts) and by the install
// script, so that both try the same files in the same order and explain a failure the same way.
//
// Order (node-gyp-build's): a binary built here (build/Release, build/Debug), then the prebuilt binaries under
// prebuilds/<platform>-<arch>/ that match this process, most specific first, chosen with node-gyp-build's own
// tag rules (parseTags/matchTags/compareTags). Unlike node-gyp-build, a file that exists but does not load (an
// old glibc, a corrupt file, a build for another Node-API) does not end the search: the next one is tried, and
// when none loads, one message gathers every file tried, why each failed, and how to build from source.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const nodeGypBuild = require('node-gyp-build')

/** The oldest glibc the prebuilt linux-x64 binary supports; scripts/prebuild.cjs fails when it needs more. */
const GLIBC_FLOOR = '2.28'

function readdir(dir) {
  try {
    return fs.readdirSync(dir)
  } catch {
    return []
  }
}

/** The prebuilt binaries' folders in this package that could serve this process (platform and arch match). */
function prebuildFolders(root) {
  return readdir(path.join(root, 'prebuilds'))
    .map(nodeGypBuild.parseTuple)
    .filter(nodeGypBuild.matchTuple(process.platform, process.arch))
    .sort(nodeGypBuild.compareTuples)
    .map((tuple) => path.join(root, 'prebuilds', tuple.name))
}

/** Every addon file to try, in order: { file, kind: 'built' | 'prebuilt' }. */
function candidates(root) {
  const list = []
  for (const dir of ['build/Release', 'build/Debug'])
    for (const name of readdir(path.join(root, dir)).filter((n) => n.endsWith('.node')))
      list.push({ file: path.join(root, dir, name), kind: 'built' })
  for (const dir of prebuildFolders(root)) {
    const matching = readdir(dir)
      .map(nodeGypBuild.parseTags)
      .filter(nodeGypBuild.matchTags('node', process.versions.modules))
      .sort(nodeGypBuild.compareTags('node'))
    for (const tags of matching) list.push({ file: path.join(dir, tags.file), kind: 'prebuilt' })
  }
  return list
}

function firstLine(error) {
  const message = error instanceof Error ? error.message : String(error)
  return message.split('\n')[0]
}

/** glibc's version in this process ('' on other C libraries or platforms). */
function glibcVersion() {
  if (process.platform !== 'linux') return ''
  try {
    return process.report.getReport().header.glibcVersionRuntime || ''
  } catch {
    return ''
  }
}

/**
 * Loads the first candidate that loads: { binding, file, kind, skipped } (skipped: the candidates before it that
 * did not load, as { file, kind, reason }). Otherwise throws an Error whose message gathers every attempt
 * (error.failures holds them).
 */
function loadAddon(root, requireFn = require) {
  const failures = []
  for (const candidate of candidates(root)) {
    try {
      return { binding: requireFn(candidate.file), ...candidate, skipped: failures }
    } catch (error) {
      failures.push({ ...candidate, reason: firstLine(error) })
    }
  }
  const error = new Error(explain(root, failures))
  error.failures = failures
  throw error
}

/** The message for "nothing loads": what was tried, why each failed, and how to build from source. */
function explain(root, failures, { installing = false } = {}) {
  const glibc = glibcVersion()
  const here = `${process.platform}-${process.arch}${glibc ? `, glibc ${glibc}` : ''}, Node ${process.versions.node}`
  const lines = [`bssn: no native addon loads here (${here}).`]
  if (failures.length > 0) {
    lines.push(`  Tried, under ${root}:`)
    for (const f of failures)
      lines.push(`    ${path.relative(root, f.file)} (${f.kind === 'prebuilt' ? 'prebuilt' : 'built here'}): ${f.reason}`)
  } else {
    lines.push(`  No addon was built under ${root}, and none of its prebuilt binaries is for this system.`)
  }
  const shipped = readdir(path.join(root, 'prebuilds'))
  if (prebuildFolders(root).length === 0)
    lines.push(`  Prebuilt binaries in this package: ${shipped.length ? shipped.join(', ') : 'none'}; none for ${process.platform}-${process.arch}.`)
  if (failures.some((f) => f.kind === 'prebuilt' && /GLIBC_[\d.]+' not found/.test(f.reason)))
    lines.push(`  The prebuilt binary needs glibc >= ${GLIBC_FLOOR}${glibc ? `; this system has ${glibc}` : ''}.`)
  lines.push(
    '  Build it from source (needs CMake >= 3.18 and a C++17 compiler; with nvcc on PATH the CUDA backend is built too):',
    installing ? '    install CMake and g++ (or clang), then run the install again' : '    BSSN_BUILD_FROM_SOURCE=1 npm rebuild bssn   (or: npm rebuild bssn --build-from-source)',
  )
  if (!installing && !failures.some((f) => f.kind === 'built'))
    lines.push('  (With install scripts skipped, as npm --ignore-scripts, pnpm and bun do unless allowed, that build never ran.)')
  return lines.join('\n')
}

module.exports = { GLIBC_FLOOR, candidates, loadAddon, explain, glibcVersion }
