#!/usr/bin/env node
// The static OpenBLAS that source builds and the prebuilt binary link into the addon (CMakeLists.txt keeps its
// symbols private), so CPU training is fast without any BLAS installed. Found, in this order:
//   1. BSSN_OPENBLAS_STATIC=/path/to/libopenblas.a (BSSN_OPENBLAS_STATIC=none: link none);
//   2. on the system (Debian/Ubuntu's libopenblas-pthread-dev, /usr/local/lib, /opt/OpenBLAS/lib);
//   3. an earlier download in build-deps/openblas/;
//   4. with `fetch`: Debian/Ubuntu's libopenblas-pthread-dev fetched without root (apt-get download, then
//      dpkg-deb -x into build-deps/openblas/; nothing is installed), within 60 s.
// Every candidate is proved by linking a small shared object against it (position-independent code, and
// everything it needs for our entry points is inside: no libgfortran, no OpenMP); the verdict is cached by file.
//   node scripts/openblas.cjs [--fetch]   prints the archive's path (empty when none) on stdout, why on stderr
// CMakeLists.txt runs it without --fetch when not given -DBSSN_OPENBLAS_STATIC (cmake-js run directly).
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const cacheDir = path.join(root, 'build-deps')
const downloadDir = path.join(cacheDir, 'openblas')
const verdictFile = path.join(cacheDir, 'openblas-verdicts.json')
const debianPackage = 'libopenblas-pthread-dev'
const fetchSeconds = 60
// What blas.cpp calls: the product, the thread count, the build description, and the thread pool's shutdown.
const entryPoints = ['cblas_sgemm', 'openblas_set_num_threads', 'openblas_get_config', 'blas_thread_shutdown_']

const multiarch = () => ({ x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' })[process.arch]

/** Where a system or downloaded libopenblas.a may be, under `prefix` ('' for the system). */
function candidates(prefix) {
  const triplet = multiarch()
  const libs = [
    ...(triplet ? [`/usr/lib/${triplet}/openblas-pthread`, `/usr/lib/${triplet}`] : []),
    '/usr/lib64', '/usr/lib', '/usr/local/lib', '/usr/local/lib64', '/opt/OpenBLAS/lib',
  ]
  return libs.map((dir) => path.join(prefix || '/', dir, 'libopenblas.a'))
}

/** The C++ compiler CMake will use (CXX, else the first on PATH). */
function compiler() {
  if (process.env.CXX) return process.env.CXX
  for (const dir of (process.env.PATH || '').split(path.delimiter).filter(Boolean))
    for (const name of ['c++', 'g++', 'clang++']) if (fs.existsSync(path.join(dir, name))) return path.join(dir, name)
  return undefined
}

function readVerdicts() {
  try {
    return JSON.parse(fs.readFileSync(verdictFile, 'utf8'))
  } catch {
    return {}
  }
}

/** Why `archive` cannot be linked into the addon, or '' when it can (cached by path, size and time). */
function checkArchive(archive) {
  let stat
  try {
    stat = fs.statSync(archive)
  } catch {
    return 'not found'
  }
  const key = `${fs.realpathSync(archive)}:${stat.size}:${stat.mtimeMs}`
  const verdicts = readVerdicts()
  if (key in verdicts) return verdicts[key]
  const cxx = compiler()
  if (!cxx) return 'no C++ compiler to check it with'
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bssn-openblas-'))
  let why = ''
  try {
    const source = path.join(dir, 'probe.cpp')
    fs.writeFileSync(
      source,
      `extern "C" {\n${entryPoints.map((name) => `void ${name}();`).join('\n')}\n` +
        `__attribute__((visibility("default"))) void (*bssn_probe[])() = {${entryPoints.map((name) => `&${name}`).join(', ')}};\n}\n`,
    )
    const args = ['-shared', '-fPIC', '-o', path.join(dir, 'probe.so'), source, archive, '-Wl,--exclude-libs,ALL', '-Wl,-z,defs', '-lpthread', '-lm']
    const link = spawnSync(cxx, args, { encoding: 'utf8', timeout: 120_000 })
    if (link.status !== 0) {
      const first = `${link.stderr ?? ''}${link.error ?? ''}`.split('\n').find((line) => /undefined reference|relocation|error/.test(line))
      why = `it does not link into a shared object on its own (${(first ?? `exit ${link.status}`).trim().slice(0, 200)})`
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  if (why !== 'no C++ compiler to check it with') {
    fs.mkdirSync(cacheDir, { recursive: true })
    fs.writeFileSync(verdictFile, JSON.stringify({ ...readVerdicts(), [key]: why }, null, 2))
  }
  return why
}

/** The OpenBLAS version in an archive's real file name (Debian's libopenblasp-r0.3.21.a), if it says. */
function versionOf(archive) {
  return /r?(\d+\.\d+\.\d+)\.a$/.exec(path.basename(fs.realpathSync(archive)))?.[1]
}

/** apt-get download + dpkg-deb -x of libopenblas-pthread-dev into build-deps/openblas/; '' or why not. */
function download(log) {
  if (process.platform !== 'linux' || !multiarch()) return `no Debian package for ${process.platform}-${process.arch}`
  const staging = `${downloadDir}.tmp-${process.pid}`
  fs.rmSync(staging, { recursive: true, force: true })
  fs.mkdirSync(staging, { recursive: true })
  try {
    log(`bssn: fetching Debian's ${debianPackage} (apt-get download; nothing is installed) ...`)
    const started = Date.now()
    const got = spawnSync('apt-get', ['download', debianPackage], { cwd: staging, encoding: 'utf8', timeout: fetchSeconds * 1000 })
    const deb = fs.readdirSync(staging).find((f) => f.endsWith('.deb'))
    if (got.error || got.status !== 0 || !deb) {
      const why = got.error?.code === 'ENOENT' ? 'apt-get not found' : got.error ? String(got.error.message) : (got.stderr || '').trim().split('\n').pop()
      return `apt-get download ${debianPackage} failed: ${why || `exit ${got.status}`}`
    }
    const left = Math.max(5, fetchSeconds - (Date.now() - started) / 1000)
    const unpacked = spawnSync('dpkg-deb', ['-x', deb, 'root'], { cwd: staging, encoding: 'utf8', timeout: left * 1000 })
    if (unpacked.error || unpacked.status !== 0) return `dpkg-deb -x ${deb} failed: ${unpacked.error?.message ?? unpacked.stderr.trim()}`
    fs.writeFileSync(path.join(staging, 'root', 'FROM'), `${deb}\n`)
    fs.rmSync(downloadDir, { recursive: true, force: true })
    fs.renameSync(path.join(staging, 'root'), downloadDir)
    return ''
  } finally {
    fs.rmSync(staging, { recursive: true, force: true })
  }
}

/**
 * The static OpenBLAS to link: { archive, source, version } or { archive: null, why }. An archive named by
 * BSSN_OPENBLAS_STATIC that cannot be used is an error (explicit: true), not a silent fallback.
 */
function findOpenBlas({ fetch = false, log = (line) => console.log(line) } = {}) {
  const named = process.env.BSSN_OPENBLAS_STATIC
  if (named && ['none', '0', 'off', 'false'].includes(named.toLowerCase()))
    return { archive: null, why: `turned off by BSSN_OPENBLAS_STATIC=${named}` }
  if (named) {
    const why = checkArchive(named)
    return why ? { archive: null, explicit: true, why: `BSSN_OPENBLAS_STATIC=${named}: ${why}` } : { archive: path.resolve(named), source: 'BSSN_OPENBLAS_STATIC', version: versionOf(named) }
  }
  const rejected = []
  const pick = (list, source) => {
    for (const archive of list) {
      if (!fs.existsSync(archive)) continue
      const why = checkArchive(archive)
      if (!why) return { archive, source, version: versionOf(archive) }
      rejected.push(`${archive}: ${why}`)
    }
    return undefined
  }
  const found = pick(candidates(''), 'system') ?? pick(candidates(downloadDir), 'build-deps/openblas, downloaded earlier')
  if (found) return found
  if (fetch) {
    const why = download(log)
    if (why) rejected.push(why)
    else {
      const fetched = pick(candidates(downloadDir), `Debian's ${debianPackage}, downloaded to build-deps/openblas`)
      if (fetched) return fetched
    }
  }
  return { archive: null, why: rejected.length ? rejected.join('; ') : 'no libopenblas.a on this system' }
}

module.exports = { findOpenBlas, checkArchive, downloadDir, entryPoints }

if (require.main === module) {
  const found = findOpenBlas({ fetch: process.argv.includes('--fetch'), log: (line) => console.error(line) })
  if (!found.archive) console.error(`bssn: no static OpenBLAS: ${found.why}`)
  process.stdout.write(`${found.archive ?? ''}\n`)
  if (found.explicit) process.exit(1)
}
