// The addon loader (scripts/load-addon.cjs) and the install script's decisions, on throwaway package folders: no
// network and no build, so these run everywhere (the packed-tarball installs are in install.test.ts).
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { loadedAddon, packageRoot } from '../src/native.js'

interface Loader {
  GLIBC_FLOOR: string
  candidates(root: string): { file: string; kind: string }[]
  loadAddon(root: string): { file: string; kind: string; skipped: { file: string; reason: string }[] }
}
const loader = createRequire(import.meta.url)(path.join(packageRoot, 'scripts', 'load-addon.cjs')) as Loader
const linuxX64 = process.platform === 'linux' && process.arch === 'x64'
// Tests that pose a working addon as a prebuilt binary copy the one this process loaded; the emulated build
// cannot move (it loads its emulated CUDA libraries from beside itself).
const movable = linuxX64 && loadedAddon().kind !== 'explicit'

const work = mkdtempSync(path.join(tmpdir(), 'bssn-loader-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))

/** A package folder with the given files (relative path -> contents, or a file to copy). */
function fakePackage(name: string, files: Record<string, string | { copy: string }>): string {
  const root = path.join(work, name)
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true })
    if (typeof content === 'string') writeFileSync(path.join(root, rel), content)
    else copyFileSync(content.copy, path.join(root, rel))
  }
  mkdirSync(path.join(root, 'scripts'), { recursive: true })
  for (const script of ['install.cjs', 'load-addon.cjs', 'openblas.cjs']) copyFileSync(path.join(packageRoot, 'scripts', script), path.join(root, 'scripts', script))
  symlinkSync(path.join(packageRoot, 'node_modules'), path.join(root, 'node_modules'))
  return root
}

const notElf = 'not a shared object\n'.repeat(100)

describe('load-addon', () => {
  it('tries build/ first, then the matching prebuilt binaries, and gathers every failure in one message', () => {
    const root = fakePackage('all-damaged', {
      'build/Release/bssn.node': notElf,
      'prebuilds/linux-x64/bssn.napi.glibc.node': notElf,
      'prebuilds/linux-x64/bssn.napi.musl.node': notElf,  // another libc: never tried on glibc
      'prebuilds/linux-arm64/bssn.napi.glibc.node': notElf,  // another arch: never tried here
      'prebuilds/linux-x64/README.txt': 'not a binary',
    })
    const tried = loader.candidates(root).map((c) => `${c.kind} ${path.relative(root, c.file)}`)
    expect(tried).toEqual(linuxX64 ? ['built build/Release/bssn.node', 'prebuilt prebuilds/linux-x64/bssn.napi.glibc.node'] : ['built build/Release/bssn.node'])
    let message = ''
    try {
      loader.loadAddon(root)
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toMatch(/^bssn: no native addon loads here \(/)
    expect(message).toMatch(/build\/Release\/bssn\.node \(built here\): .*(invalid ELF header|too short)/)
    if (linuxX64) expect(message).toMatch(/prebuilds\/linux-x64\/bssn\.napi\.glibc\.node \(prebuilt\): .*(invalid ELF header|too short)/)
    expect(message).toMatch(/npm rebuild bssn --build-from-source/)
    expect(message).not.toMatch(/With install scripts skipped/)  // something was built: the install script ran
  })

  it('says which platforms the package has when none is for this one', () => {
    const root = fakePackage('other-platform', { 'prebuilds/win32-x64/bssn.napi.node': notElf })
    expect(() => loader.loadAddon(root)).toThrow(/Prebuilt binaries in this package: win32-x64; none for /)
    expect(() => loader.loadAddon(root)).toThrow(/With install scripts skipped/)
  })

  it.skipIf(!movable)('loads the next candidate when one fails, and says which it skipped', () => {
    const working = loadedAddon().file
    const root = fakePackage('fallback', { 'build/Release/bssn.node': notElf, 'prebuilds/linux-x64/bssn.napi.glibc.node': { copy: working } })
    const found = loader.loadAddon(root)
    expect(found.kind).toBe('prebuilt')
    expect(found.skipped.map((s) => path.relative(root, s.file))).toEqual(['build/Release/bssn.node'])
  })
})

describe('install script', () => {
  const bare = path.join(work, 'bare-bin')
  mkdirSync(bare, { recursive: true })
  symlinkSync(process.execPath, path.join(bare, 'node'))
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: bare }
  for (const name of ['BSSN_ADDON', 'BSSN_BUILD_FROM_SOURCE', 'npm_config_build_from_source', 'BSSN_CUDA']) delete env[name]
  const install = (root: string, extra: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [path.join(root, 'scripts', 'install.cjs')], { cwd: root, env: { ...env, ...extra }, encoding: 'utf8' })

  it.skipIf(!movable)('uses a binary that loads and builds nothing', () => {
    const root = fakePackage('install-prebuilt', { 'prebuilds/linux-x64/bssn.napi.glibc.node': { copy: loadedAddon().file } })
    const r = install(root)
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/bssn: using prebuilds\/linux-x64\/bssn\.napi\.glibc\.node \(prebuilt\); nothing to build/)
  })

  it.skipIf(!movable)('builds from source when asked, even with a binary that loads; without a toolchain that fails with the reasons', () => {
    const root = fakePackage('install-asked', { 'prebuilds/linux-x64/bssn.napi.glibc.node': { copy: loadedAddon().file } })
    for (const asked of [{ BSSN_BUILD_FROM_SOURCE: '1' }, { npm_config_build_from_source: 'true' }]) {
      const r = install(root, asked)
      expect(r.stdout).toMatch(/bssn: building from source \(asked by --build-from-source or BSSN_BUILD_FROM_SOURCE\)/)
      expect(r.status).toBe(1)
      expect(r.stderr).toMatch(/bssn: the source build that was asked for cannot run: cmake \(>= 3\.18\) and a C\+\+17 compiler \(c\+\+, g\+\+ or clang\+\+, or CXX\) not found on PATH/)
      expect(r.stderr).not.toMatch(/no native addon loads here/) // one does: it was not used
    }
  })

  it('fails with the gathered message when nothing loads and nothing can be built', () => {
    const root = fakePackage('install-damaged', { 'prebuilds/linux-x64/bssn.napi.glibc.node': notElf })
    const r = install(root)
    expect(r.status).toBe(1)
    expect(r.stdout).toMatch(/no prebuilt or earlier built addon loads here, so it is built from source/)
    expect(r.stderr).toMatch(/bssn: no native addon loads here/)
    if (linuxX64) expect(r.stderr).toMatch(/prebuilds\/linux-x64\/bssn\.napi\.glibc\.node \(prebuilt\): /)
    expect(r.stderr).toMatch(/install CMake and g\+\+ \(or clang\), then run the install again/)
    expect(r.stderr).toMatch(/BSSN_CUDA=OFF npm install bssn --build-from-source/)
  })

  it('rejects a bad BSSN_CUDA', () => {
    const root = fakePackage('install-bad-cuda', {})
    const r = install(root, { BSSN_CUDA: 'maybe' })
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/BSSN_CUDA must be AUTO, ON or OFF, got 'MAYBE'/)
  })
})

it('the glibc floor is what Node 20 itself needs', () => {
  expect(loader.GLIBC_FLOOR).toBe('2.28')
})
