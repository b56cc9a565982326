// Install like a user: `npm pack`, then `npm install ./bssn-*.tgz` in an empty project builds the addon from
// the tarball, and `import('bssn')` works there. Needs the npm registry (for cmake-js and node-addon-api), so
// it skips visibly on the GPU host, which has no network.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { packageRoot } from '../src/native.js'

const skipReason =
  process.env.BSSN_SKIP_INSTALL_TEST === '1' ? 'BSSN_SKIP_INSTALL_TEST=1 (npm test runs it)'
  : process.env.BSSN_REQUIRE_CUDA === '1' ? 'the GPU host has no network for npm install'
  : undefined
const suite = skipReason ? describe.skip : describe

suite(`npm pack + npm install in an empty project${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const work = mkdtempSync(path.join(tmpdir(), 'bssn-install-'))
  afterAll(() => rmSync(work, { recursive: true, force: true }))

  it('builds the addon from the tarball and imports', () => {
    const npm = (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) =>
      execFileSync('npm', args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    npm(['pack', '--pack-destination', work], packageRoot)
    const tarball = readdirSync(work).find((f) => /^bssn-.*\.tgz$/.test(f))
    expect(tarball, 'npm pack wrote bssn-*.tgz').toBeDefined()

    const app = path.join(work, 'app')
    execFileSync('mkdir', ['-p', app])
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
    // The default build (CUDA AUTO), for one GPU architecture to keep the test short.
    npm(['install', '--no-audit', '--no-fund', path.join(work, tarball!)], app, { BSSN_CUDA_ARCHITECTURES: '90-real', BSSN_POISON_ALLOCATIONS: '' })

    const script = `
      const m = await import('bssn')
      const device = m.Device.auto()
      const w = device.randn([8, 4, 3, 3], { seed: 1 })
      const out = m.bssnNormalize(w, { mode: 'bssn' })
      const values = await out.toArray()
      console.log(JSON.stringify({ kind: device.kind, n: values.length, finite: values.every(Number.isFinite) }))
    `
    const printed = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: app, encoding: 'utf8' })
    expect(JSON.parse(printed.trim().split('\n').pop()!)).toMatchObject({ n: 288, finite: true })
    const help = execFileSync(path.join(app, 'node_modules', '.bin', 'bssn'), ['--help'], { cwd: app, encoding: 'utf8' })
    expect(help).toMatch(/usage: bssn <command>/)
  }, 600_000)
})
