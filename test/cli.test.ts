// The command line: the demo, and the GAN training that the README's first command runs.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
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

it('bssn compare trains both runs and writes metrics.jsonl and report.html', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'bssn-compare-'))
  try {
    const printed = execFileSync(process.execPath, [cli, 'compare', '--steps', '40', '--eval-every', '20', '--batch', '64', '--width', '16', '--device', 'cpu', '--out', out], { encoding: 'utf8' })
    expect(printed).toMatch(/sn: \d+\/8 modes/)
    expect(printed).toMatch(/bssn \(c = 1\.4142\): \d+\/8 modes/)
    for (const norm of ['sn', 'bssn']) {
      const lines = readFileSync(path.join(out, norm, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
      expect(lines.map((l) => l.step)).toEqual([20, 40])
      expect(lines[1].layers).toHaveLength(4)
      expect(Number.isFinite(lines[1].layers[0].gradNorm)).toBe(true)
      expect(lines[1].layers[0].sigma1).toBeGreaterThan(0)
    }
    const html = readFileSync(path.join(out, 'report.html'), 'utf8')
    expect(html).toMatch(/<h2>Final metrics<\/h2>/)
    const png = readFileSync(path.join(out, 'charts', 'high-quality.png'))
    expect(png.subarray(1, 4).toString()).toBe('PNG')
    expect(readFileSync(path.join(out, 'charts', 'd-layer-0-sigmas.png')).length).toBeGreaterThan(1000)
    expect((html.match(/<svg /g) ?? []).length).toBeGreaterThan(10)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

it('train and compare reject bad flags clearly', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' })
  expect(run('train', '--norm', 'xx', '--steps', '1').stderr).toMatch(/--norm must be one of none, sn, ssn, bsn, bssn, got 'xx'/)
  expect(run('train', '--dataset', 'mnist', '--steps', '1').stderr).toMatch(/--dataset must be one of ring8, grid25/)
  expect(run('compare', '--betas', '0.5').stderr).toMatch(/--betas must be two numbers/)
  expect(run('compare', '--lr', 'fast').stderr).toMatch(/--lr must be a number, got 'fast'/)
  expect(run('nonsense').status).toBe(2)
})

it('bssn train on images: the SNGAN CNN on the built-in shapes, with precision/recall and a sample grid', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'bssn-images-cli-'))
  try {
    const printed = execFileSync(
      process.execPath,
      [cli, 'train', '--dataset', 'shapes', '--steps', '1', '--batch', '2', '--eval-every', '1', '--eval-samples', '16', '--device', 'cpu', '--out', out],
      { encoding: 'utf8' },
    )
    expect(printed).toMatch(/bssn \(c = 1\.4142\): precision \d\.\d{3}, recall \d\.\d{3} after 1 steps/)
    const [record] = readFileSync(path.join(out, 'bssn', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    expect(record.layers).toHaveLength(8) // seven convolutions and the final linear layer
    expect(record.precision).toBeGreaterThanOrEqual(0)
    expect(readFileSync(path.join(out, 'bssn', 'samples.png')).subarray(1, 4).toString()).toBe('PNG')
    expect(readFileSync(path.join(out, 'report.html'), 'utf8')).toMatch(/data:image\/png;base64/)
    expect(spawnSync(process.execPath, [cli, 'train', '--dataset', 'shapes', '--arch', 'mlp'], { encoding: 'utf8' }).stderr).toMatch(/--arch must be sngan for 32x32 images/)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}, 120_000)

it('train --resume continues from a checkpoint; a damaged checkpoint is refused with the reason', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'bssn-resume-cli-'))
  try {
    const common = ['--steps', '20', '--batch', '32', '--width', '8', '--eval-every', '10', '--eval-samples', '100', '--ckpt-every', '10', '--device', 'cpu', '--out', out]
    execFileSync(process.execPath, [cli, 'train', ...common], { encoding: 'utf8' })
    const ckpt = path.join(out, 'bssn', 'checkpoint.safetensors')
    const resumed = execFileSync(process.execPath, [cli, 'train', ...common.map((a) => (a === '20' ? '30' : a)), '--resume', ckpt], { encoding: 'utf8' })
    expect(resumed).toMatch(/after 30 steps/)
    const steps = readFileSync(path.join(out, 'bssn', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)
    expect(steps).toEqual([10, 20, 30])
    writeFileSync(ckpt, readFileSync(ckpt).subarray(0, 100))
    const damaged = spawnSync(process.execPath, [cli, 'train', ...common, '--resume', ckpt], { encoding: 'utf8' })
    expect(damaged.status).toBe(1)
    expect(damaged.stderr).toMatch(/checkpoint.safetensors is not a valid safetensors checkpoint/)
    expect(spawnSync(process.execPath, [cli, 'train', '--resume', path.join(out, 'missing')], { encoding: 'utf8' }).stderr).toMatch(/no such checkpoint/)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})

it('Ctrl-C stops the runs, writes their checkpoints and the report so far, and exits cleanly', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'bssn-sigint-'))
  try {
    const child = spawn(process.execPath, [cli, 'compare', '--steps', '100000', '--batch', '32', '--width', '8', '--eval-every', '20', '--eval-samples', '100', '--device', 'cpu', '--out', out])
    let printed = ''
    child.stdout.on('data', (d) => {
      printed += d
      if (/step 20:/.test(printed) && !child.killed) child.kill('SIGINT')
    })
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(code).toBe(0)
    expect(printed).toMatch(/interrupted/)
    expect(readFileSync(path.join(out, 'report.html'), 'utf8')).toMatch(/\(interrupted\)/)
    expect(readFileSync(path.join(out, 'bssn', 'checkpoint.safetensors')).length).toBeGreaterThan(100)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}, 60_000)
