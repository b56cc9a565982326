// The README's first command runs the demo: it must print every layer's sigmas and the timings.
import { execFileSync, spawnSync } from 'node:child_process'
import path from 'node:path'
import { beforeAll, expect, it } from 'vitest'

import { packageRoot } from '../src/native.js'

const cli = path.join(packageRoot, 'dist', 'cli', 'main.js')

beforeAll(() => {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: packageRoot })
})

it('bssn demo prints per-layer sigmas and timings', () => {
  const out = execFileSync(process.execPath, [cli, 'demo', '--device', 'cpu', '--steps', '2'], { encoding: 'utf8' })
  expect(out).toMatch(/SNGAN CNN D/)
  const rows = out.split('\n').filter((l) => /^\s+\d+\s+\[/.test(l))
  expect(rows).toHaveLength(8)
  for (const row of rows) {
    const numbers = row.trim().split(/\s+/).slice(2).map(Number)
    expect(numbers).toHaveLength(3)
    expect(numbers.every((x) => Number.isFinite(x) && x > 0)).toBe(true)
  }
  expect(out).toMatch(/sn\s+[\d.]+ us/)
  expect(out).toMatch(/bssn\s+[\d.]+ us/)
})

it('rejects bad flags with a usage message', () => {
  const bad = spawnSync(process.execPath, [cli, 'demo', '--device', 'tpu'], { encoding: 'utf8' })
  expect(bad.status).toBe(2)
  expect(bad.stderr).toMatch(/--device must be auto, cpu, cuda or cuda:N, got 'tpu'/)
  const unknown = spawnSync(process.execPath, [cli, 'demo', '--nope'], { encoding: 'utf8' })
  expect(unknown.status).toBe(2)
  expect(unknown.stderr).toMatch(/usage: bssn/)
  const steps = spawnSync(process.execPath, [cli, 'demo', '--steps', '0'], { encoding: 'utf8' })
  expect(steps.status).toBe(2)
})
