// Install like a user: `npm pack`, then `npm install ./bssn-*.tgz` in empty projects.
//   - With cmake, c++, g++ and nvcc hidden from PATH, the prebuilt binary (prebuilds/linux-x64/) is used: nothing
//     compiles, `import('bssn')` works, Device.auto() falls back to the CPU with its reason. The same with
//     --ignore-scripts (as pnpm and bun install by default), where no install script runs at all.
//   - With the prebuilt binary made unloadable (a damaged file in the tarball): the install script builds from
//     source (the CPU backend only, to keep the test short: CI's `npm ci` on a clean clone is the CUDA source
//     build); with the toolchain also hidden, the install fails with the gathered message; with --ignore-scripts,
//     the import fails at run time with that message.
// The prebuilt binary is made first (npm run prebuild, a few minutes on 2 busy cores, as an asynchronous child
// process) when it is missing or older than the native sources. Needs the npm registry (for the dependencies), so it skips visibly on the GPU host, which has no
// network.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { packageRoot } from '../src/native.js'
import { type Run, runNode, runProcess } from './helpers/run.js'

interface Prebuild {
  sourceHash(): string
  target: string
  reportFile: string
}
const prebuild = createRequire(import.meta.url)(path.join(packageRoot, 'scripts', 'prebuild.cjs')) as Prebuild

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, name)))
}

const skipReason =
  process.env.BSSN_SKIP_INSTALL_TEST === '1' ? 'BSSN_SKIP_INSTALL_TEST=1 (npm test runs it)'
  : process.env.BSSN_REQUIRE_CUDA === '1' ? 'the GPU host has no network for npm install'
  : process.platform !== 'linux' || process.arch !== 'x64' ? 'the prebuilt binary is made for linux-x64 only'
  : !existsSync(prebuild.target) && !onPath('nvcc') ? 'no prebuilt binary, and no nvcc to make one (npm run prebuild)'
  : undefined
const suite = skipReason ? describe.skip : describe

const defaultArchitectures = ['80-real', '86-real', '89-real', '90-real', '90-virtual']

/**
 * Makes the prebuilt binary when it is missing, or when it was made here from other native sources: `npm run
 * prebuild` as an asynchronous child process (a minute or more on a busy 2-core machine), saying why and how far it is.
 */
async function ensurePrebuild(): Promise<string> {
  let why = ''
  if (!existsSync(prebuild.target)) why = 'missing (a fresh clone has none: prebuilds/ is not in git)'
  else if (existsSync(prebuild.reportFile)) {
    const report = JSON.parse(readFileSync(prebuild.reportFile, 'utf8')) as { sourceHash: string; buildInfo: { cudaArchitectures: string[] } }
    if (report.sourceHash !== prebuild.sourceHash()) why = 'older than the native sources'
    else if (report.buildInfo.cudaArchitectures.join(';') !== defaultArchitectures.join(';')) why = 'a test build (prebuild --archs)'
  }
  if (!why) return 'up to date'
  console.log(`install test: the prebuilt binary is ${why}: making it (npm run prebuild, a few minutes here) ...`)
  const started = Date.now()
  const ticker = setInterval(() => console.log(`install test: npm run prebuild still building (${((Date.now() - started) / 1000).toFixed(0)} s)`), 30_000)
  const r = await runNode([path.join(packageRoot, 'scripts', 'prebuild.cjs')], { cwd: packageRoot }).finally(() => clearInterval(ticker))
  if (r.status !== 0) throw new Error(`npm run prebuild failed (${r.status ?? r.signal}):\n${(r.stdout + r.stderr).slice(-4000)}`)
  console.log(r.stdout.split('\n').filter((l) => l.startsWith('prebuild:') || l.startsWith('  ')).join('\n'))
  return `rebuilt (${why})`
}

const run = (file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv) => runProcess(file, args, { cwd, env })

suite(`npm pack + npm install in empty projects${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const work = path.join(tmpdir(), `bssn-install-${process.pid}-${Date.now()}`)
  // npm's own script, run with this node (npm beside node, as Node's installers lay it out, else the one on PATH)
  const besideNode = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')
  const npmCli = existsSync(besideNode) ? besideNode : execFileSync('sh', ['-c', 'readlink -f "$(command -v npm)"'], { encoding: 'utf8' }).trim()
  // The environment of a machine without a toolchain: PATH holds node, npm and a shell, nothing else.
  const bare = path.join(work, 'bare-bin')
  const baseEnv: NodeJS.ProcessEnv = { ...process.env, BSSN_POISON_ALLOCATIONS: '' }
  for (const name of ['BSSN_ADDON', 'BSSN_BUILD_FROM_SOURCE', 'npm_config_build_from_source']) delete baseEnv[name]
  const bareEnv: NodeJS.ProcessEnv = { ...baseEnv, PATH: bare }
  const results = new Map<string, Run & { app: string }>()
  let tarball = ''
  let packed: { size: number; unpackedSize: number; files: { path: string }[] } | undefined

  const script = `
    const m = await import('bssn')
    const device = m.Device.auto()
    const w = device.randn([8, 4, 3, 3], { seed: 1 })
    const values = await m.bssnNormalize(w, { mode: 'bssn' }).toArray()
    console.log(JSON.stringify({ kind: device.kind, fallbackReason: device.fallbackReason, n: values.length, finite: values.every(Number.isFinite) }))
  `
  const useApp = (app: string, env: NodeJS.ProcessEnv) => run(process.execPath, ['--input-type=module', '-e', script], app, env)
  const doctor = (app: string, env: NodeJS.ProcessEnv, json: boolean) =>
    run(path.join(app, 'node_modules', '.bin', 'bssn'), ['doctor', ...(json ? ['--json'] : [])], app, env)

  beforeAll(async () => {
    const state = await ensurePrebuild()
    mkdirSync(bare, { recursive: true })
    symlinkSync(process.execPath, path.join(bare, 'node'))
    symlinkSync(npmCli, path.join(bare, 'npm'))
    symlinkSync('/bin/sh', path.join(bare, 'sh'))

    const packStarted = Date.now()
    // npm pack runs `prepare` (tsc): asynchronous too.
    const pack = await runNode([npmCli, 'pack', '--json', '--pack-destination', work], { cwd: packageRoot })
    if (pack.status !== 0) throw new Error(`npm pack failed (${pack.status}):\n${pack.stderr}`)
    packed = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('[')))[0]
    tarball = path.join(work, readdirSync(work).find((f) => /^bssn-.*\.tgz$/.test(f))!)
    console.log(`install test: prebuilt binary ${state}; packed in ${((Date.now() - packStarted) / 1000).toFixed(1)} s; tarball ${(packed!.size / 2 ** 20).toFixed(2)} MiB packed, ${(packed!.unpackedSize / 2 ** 20).toFixed(2)} MiB unpacked`)

    // The same package with a damaged prebuilt binary (not an ELF file).
    const damaged = path.join(work, 'damaged')
    mkdirSync(damaged)
    execFileSync('tar', ['xzf', tarball, '-C', damaged])
    writeFileSync(path.join(damaged, 'package', 'prebuilds', 'linux-x64', path.basename(prebuild.target)), Buffer.alloc(4096, 'not a shared object\n'))
    const damagedTarball = path.join(work, 'bssn-damaged.tgz')
    execFileSync('tar', ['czf', damagedTarball, '-C', damaged, 'package'])

    const install = async (name: string, from: string, env: NodeJS.ProcessEnv, flags: string[] = []) => {
      const app = path.join(work, name)
      mkdirSync(app)
      writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }))
      const args = [npmCli, 'install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', ...flags, from]
      const started = Date.now()
      results.set(name, { ...(await run(process.execPath, args, app, env)), app })
      console.log(`install test: ${name} installed in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    }
    // Independent projects, installed at once (mostly waiting on the registry; one source build).
    await Promise.all([
      install('bare', tarball, bareEnv),
      install('no-scripts', tarball, bareEnv, ['--ignore-scripts']),
      install('damaged-source-build', damagedTarball, { ...baseEnv, BSSN_CUDA: 'OFF' }),
      install('damaged-bare', damagedTarball, bareEnv),
      install('damaged-no-scripts', damagedTarball, bareEnv, ['--ignore-scripts']),
    ])
  }, 900_000)
  afterAll(() => rmSync(work, { recursive: true, force: true }))

  it('packs the prebuilt binary and the loader', () => {
    const files = packed!.files.map((f) => f.path)
    expect(files).toContain('prebuilds/linux-x64/bssn.napi.glibc.node')
    expect(files).toContain('scripts/load-addon.cjs')
    expect(packed!.size).toBeLessThan(30 * 2 ** 20)
  })

  it('ships OpenBLAS linked into the prebuilt binary, with the licence texts of what it links in', async () => {
    const files = packed!.files.map((f) => f.path)
    for (const file of ['licenses/OpenBLAS.txt', 'licenses/libstdc++.txt', 'licenses/CUDA-runtime.txt']) expect(files).toContain(file)
    const report = JSON.parse((await doctor(results.get('bare')!.app, bareEnv, true)).stdout)
    expect(report.blas).toEqual({ name: expect.stringMatching(/^OpenBLAS \d+\.\d+\.\d+ .*\(linked in\)$/) })
  })

  it('hides the toolchain in the bare environment', () => {
    for (const tool of ['cmake', 'c++', 'g++', 'nvcc'])
      expect(execFileSync('sh', ['-c', `command -v ${tool} || echo missing`], { env: bareEnv, encoding: 'utf8' }).trim()).toBe('missing')
  })

  for (const name of ['bare', 'no-scripts']) {
    it(`installs without compiling and imports (${name === 'bare' ? 'no toolchain' : 'no toolchain, --ignore-scripts'})`, async () => {
      const r = results.get(name)!
      expect(r.status, r.stderr).toBe(0)
      if (name === 'bare') expect(r.stdout).toMatch(/bssn: using prebuilds\/linux-x64\/bssn\.napi\.glibc\.node \(prebuilt\); nothing to build/)
      else expect(r.stdout).not.toMatch(/bssn: /)
      expect(r.stdout).not.toMatch(/building the native addon/)
      expect(existsSync(path.join(r.app, 'node_modules', 'bssn', 'build'))).toBe(false)

      const used = await useApp(r.app, bareEnv)
      expect(used.status, used.stderr).toBe(0)
      const out = JSON.parse(used.stdout.trim().split('\n').pop()!)
      expect(out).toMatchObject({ n: 288, finite: true })
      if (out.kind === 'cpu') expect(out.fallbackReason).toMatch(/\S/)
      if (!existsSync('/dev/nvidia0')) expect(out).toMatchObject({ kind: 'cpu', fallbackReason: expect.stringMatching(/driver|CUDA|cuda/) })

      const report = await doctor(r.app, bareEnv, true)
      const parsed = JSON.parse(report.stdout)
      expect(report.status).toBe(parsed.gpuUsable ? 0 : 1)
      expect(parsed.addon).toMatchObject({ kind: 'prebuilt', build: { cuda: 'cuda', portable: true } })
      expect(parsed.addon.file).toBe(path.join(r.app, 'node_modules', 'bssn', 'prebuilds', 'linux-x64', 'bssn.napi.glibc.node'))
      expect(parsed.addon.build.cudaArchitectures).toEqual(defaultArchitectures)
      expect(parsed.auto.kind).toBe(out.kind)
    })
  }

  it('prints bssn doctor for people', async () => {
    const r = await doctor(results.get('bare')!.app, bareEnv, false)
    expect(r.stdout).toMatch(/^addon\s+prebuilt \(shipped in the package\)$/m)
    expect(r.stdout).toMatch(/code for sm_80 sm_86 sm_89 sm_90 \(SASS\), compute_90 \(PTX/)
    expect(r.stdout).toMatch(/^Device\.auto\(\) /m)
    expect(r.stdout).toMatch(/^GPU usable: (yes|no)$/m)
  })

  it('builds from source when the prebuilt binary does not load', async () => {
    const r = results.get('damaged-source-build')!
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
    expect(r.stdout).toMatch(/prebuilds\/linux-x64\/bssn\.napi\.glibc\.node: .*invalid ELF header/)
    expect(r.stdout).toMatch(/bssn: building the native addon/)
    expect(r.stdout).toMatch(/bssn: built build\/Release\/bssn\.node/)
    const used = await useApp(r.app, baseEnv)
    expect(used.status, used.stderr).toBe(0)
    expect(JSON.parse(used.stdout.trim().split('\n').pop()!)).toMatchObject({ n: 288, finite: true })
    const report = JSON.parse((await doctor(r.app, baseEnv, true)).stdout)
    expect(report.addon).toMatchObject({ kind: 'built', build: { portable: false } })
    expect(report.addon.skipped).toEqual([]) // build/ comes first: the damaged file is not even tried
  })

  it('fails the install with one message that gathers every reason, without a toolchain', () => {
    const r = results.get('damaged-bare')!
    expect(r.status).not.toBe(0)
    expect(r.stderr).toMatch(/bssn: no native addon loads here \(linux-x64, glibc [\d.]+, Node [\d.]+\)/)
    expect(r.stderr).toMatch(/prebuilds\/linux-x64\/bssn\.napi\.glibc\.node \(prebuilt\): .*invalid ELF header/)
    expect(r.stderr).toMatch(/The source build cannot run: cmake \(>= 3\.18\) and a C\+\+17 compiler .* not found on PATH/)
    expect(r.stderr).toMatch(/BSSN_CUDA=OFF npm install bssn --build-from-source/)
    expect(existsSync(path.join(r.app, 'node_modules', 'bssn'))).toBe(false)
  })

  it('explains at run time when nothing loads (scripts skipped)', async () => {
    const r = results.get('damaged-no-scripts')!
    expect(r.status, r.stderr).toBe(0)
    const used = await useApp(r.app, bareEnv)
    expect(used.status).not.toBe(0)
    expect(used.stderr).toMatch(/bssn: no native addon loads here/)
    expect(used.stderr).toMatch(/prebuilds\/linux-x64\/bssn\.napi\.glibc\.node \(prebuilt\): .*invalid ELF header/)
    expect(used.stderr).toMatch(/npm rebuild bssn --build-from-source/)
    expect(used.stderr).toMatch(/With install scripts skipped/)
    const report = await doctor(r.app, bareEnv, false)
    expect(report.status).toBe(1)
    expect(report.stdout).toMatch(/^addon\s+none loads$/m)
  })
})
