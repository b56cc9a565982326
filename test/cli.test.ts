// The command line: the demo, and the GAN training that the README's first command runs.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { expect, it } from 'vitest'

import { packageRoot } from '../src/native.js'
import { runCli } from './helpers/cli.js'

// dist/ is built by test/global_setup.ts. Every child process here is asynchronous (runCli): a run of synchronous
// ones blocked the test worker past vitest's 60 s RPC timeout on a busy machine.
/** `bssn ...args` to its end, with its exit status. */
const run = async (...args: string[]) => {
  const r = await runCli(args)
  return { ...r, status: r.code }
}

it('bssn demo prints per-layer sigmas and timings', async () => {
  const demo = await run('demo', '--device', 'cpu', '--steps', '2')
  expect(demo.status, demo.stderr).toBe(0)
  const out = demo.stdout
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

it('rejects bad flags with a usage message', async () => {
  const bad = await run('demo', '--device', 'tpu')
  expect(bad.status).toBe(2)
  expect(bad.stderr).toMatch(/--device must be auto, cpu, cuda or cuda:N, got 'tpu'/)
  const unknown = await run('demo', '--nope')
  expect(unknown.status).toBe(2)
  expect(unknown.stderr).toMatch(/unknown option '--nope'[\s\S]*bssn --help/)
  const steps = await run('demo', '--steps', '0')
  expect(steps.status).toBe(2)
})

it('bssn compare on ring8: sn, ssn and bssn on the MLP, with the note that bssn equals ssn there', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'bssn-compare-'))
  try {
    const printed = (await runCli(['compare', '--dataset', 'ring8', '--seeds', '1', '--steps', '40', '--eval-every', '20', '--batch', '64', '--width', '16', '--device', 'cpu', '--out', out])).stdout
    expect(printed).toMatch(/sn seed 1: \d+\/8 modes/)
    expect(printed).toMatch(/bssn \(c = 1\.4142\) seed 1: \d+\/8 modes/)
    expect(printed).toMatch(/bssn equals ssn exactly here/)
    for (const norm of ['sn', 'ssn', 'bssn']) {
      const lines = readFileSync(path.join(out, norm, 'seed-1', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
      expect(lines.map((l) => l.step)).toEqual([20, 40])
      expect(lines[1].layers).toHaveLength(4)
      expect(Number.isFinite(lines[1].layers[0].gradNorm)).toBe(true)
      expect(lines[1].layers[0].sigma1).toBeGreaterThan(0)
    }
    const html = readFileSync(path.join(out, 'report.html'), 'utf8')
    expect(html).toMatch(/<h2>Final metrics<\/h2>/)
    expect(html).toMatch(/BSSN equals SSN exactly/)
    expect(html).toMatch(/identical at every evaluation of every seed/)
    expect(html).toMatch(/samples outside the frame/)
    const png = readFileSync(path.join(out, 'charts', 'high-quality.png'))
    expect(png.subarray(1, 4).toString()).toBe('PNG')
    expect(readFileSync(path.join(out, 'charts', 'd-layer-0-sigmas.png')).length).toBeGreaterThan(1000)
    expect((html.match(/<svg /g) ?? []).length).toBeGreaterThan(10)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}, 120_000)

it('the default compare report: sn, ssn and bssn on the small CNN over two seeds, with bands and the explanation', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'bssn-report-'))
  try {
    expect((await runCli(['compare', '--steps', '4', '--eval-every', '2', '--batch', '4', '--eval-samples', '16', '--device', 'cpu', '--out', out])).code).toBe(0)
    const html = readFileSync(path.join(out, 'report.html'), 'utf8')
    const text = (h: string) => h.replace(/<[^>]+>/g, '').replace(/&middot;/g, '·').replace(/&#39;/g, "'").replace(/&quot;/g, '"')
    // The final-metrics table: three normalizations x two seeds, and a mean [min, max] row each.
    const table = /<table id="final">([\s\S]*?)<\/table>/.exec(html)![1]
    const rows = [...table.matchAll(/<tr[^>]*>([\s\S]*?)<\/tr>/g)].map((m) => [...m[1].matchAll(/<td>([\s\S]*?)<\/td>/g)].map((c) => text(c[1]))).filter((r) => r.length)
    for (const norm of ['sn', 'ssn (c = 1.4142)', 'bssn (c = 1.4142)']) {
      expect(rows.filter((r) => r[0] === norm).map((r) => r[1])).toEqual(['1', '2', 'mean [min, max]'])
      const mean = rows.find((r) => r[0] === norm && r[1] === 'mean [min, max]')!
      expect(mean[2]).toMatch(/^\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]$/)
    }
    // Seed bands on the quality charts, and the explanation of what differs and what the data shows.
    expect((html.match(/<polygon /g) ?? []).length).toBeGreaterThan(5)
    expect(html).toMatch(/min to max over seeds/)
    const words = text(html)
    expect(words).toMatch(/What differs between the runs/)
    expect(words).toMatch(/ssn \(the control\)/)
    expect(words).toMatch(/isolates the second direction/)
    expect(words).toMatch(/What the data shows/)
    expect(words).toMatch(/bssn \(c = 1.4142\) vs ssn \(c = 1.4142\) \(the effect of the second direction\)/)
    expect(words).toMatch(/effective spectral norm c · sigma1 \/ divisor runs from/)
    expect(words).not.toMatch(/BSSN equals SSN exactly/)
    // Per layer: four convolutions and the linear layer, with sigma2 and the effective norm under bssn.
    const layers = /<table id="layers">([\s\S]*?)<\/table>/.exec(html)![1]
    expect((layers.match(/rowspan="3">\d+</g) ?? []).length).toBe(5)
    // end-of-run spectra: up to five top singular values of W1 and of W2 (fewer when a reshape has fewer rows), for
    // every layer and normalization
    expect(layers).toMatch(/top singular values of W1 at the end/)
    expect((layers.match(/<td class="spectrum">(\d+\.\d+, ){0,4}\d+\.\d+<\/td>/g) ?? []).length).toBe(2 * 5 * 3)
    expect(words).toMatch(/"version": "\d+\.\d+\.\d+"/)
    expect(words).toMatch(/"commit": /)
    expect(words).toMatch(/"device": "cpu/i)
    expect(html).toMatch(/alt="real images \(held out\)"/)
    expect(readFileSync(path.join(out, 'bssn', 'seed-2', 'samples.png')).subarray(1, 4).toString()).toBe('PNG')
    expect(readFileSync(path.join(out, 'charts', 'd-layer-0-effective.png')).subarray(1, 4).toString()).toBe('PNG')
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}, 120_000)

it('usage errors: exit code 2, in our own words, before anything is created', async () => {
  const version = await run('--version')
  expect(version.status).toBe(0)
  expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).version)
  expect((await run('help')).stdout).toMatch(/usage: bssn <command>/)
  // `bssn` alone shows the usage and starts nothing (it once started a compare in the current folder).
  const here = mkdtempSync(path.join(tmpdir(), 'bssn-no-command-'))
  try {
    const bare = await runCli([], { cwd: here, timeoutMs: 30_000 })
    expect(bare.code).toBe(0)
    expect(bare.stdout).toMatch(/^usage: bssn <command>/)
    expect(readdirSync(here)).toEqual([])
    const optionsOnly = await runCli(['--steps', '5'], { cwd: here, timeoutMs: 30_000 })
    expect(optionsOnly.code).toBe(2)
    expect(optionsOnly.stderr).toMatch(/name a command before the options .* e\.g\. bssn compare --steps 5/)
    expect(readdirSync(here)).toEqual([])
  } finally {
    rmSync(here, { recursive: true, force: true })
  }
  for (const args of [['help', 'train'], ['train', '--help']]) {
    const help = await run(...args)
    expect(help.status).toBe(0)
    expect(help.stdout).toMatch(/^usage: bssn train \[options\]/)
    expect(help.stdout).toMatch(/--resume CKPT/)
  }
  const cases: Array<[string[], RegExp]> = [
    [['train', 'extra'], /unexpected argument 'extra' after 'train'/],
    [['compare', '--scale', '0'], /--scale must be > 0/],
    [['train', '--scale=-1'], /--scale must be > 0/],
    [['train', '--scale', '-1'], /--scale needs a value; for one that starts with '-', write --scale=VALUE/],
    [['compare', '--norms', 'sn,ssn,sn'], /--norms names 'sn' twice/],
    [['compare', '--norms', ''], /--norms is empty/],
    [['compare', '--seeds', '1,1'], /--seeds names 1 twice/],
    [['compare', '--nope'], /unknown option '--nope'/],
    [['compare', '--steps'], /--steps needs a value/],
    [['help', 'nothing'], /no help for 'nothing'/],
  ]
  for (const [args, message] of cases) {
    const r = await run(...args, '--out', path.join(tmpdir(), 'bssn-never-created'))
    expect(r.status, args.join(' ')).toBe(2)
    expect(r.stderr).toMatch(message)
  }
  expect(existsSync(path.join(tmpdir(), 'bssn-never-created'))).toBe(false)
})

it('bad dataset paths are named with what was expected', async () => {
  const train = (...args: string[]) => run('train', '--steps', '1', '--device', 'cpu', ...args)
  const missing = await train('--dataset', 'png:/no/such/folder')
  expect(missing.status).toBe(2)
  expect(missing.stderr).toMatch(/'\/no\/such\/folder' does not exist \(expected a folder of \.png files\)/)
  expect(missing.stderr).not.toMatch(/ENOENT/)
  const empty = mkdtempSync(path.join(tmpdir(), 'bssn-empty-'))
  try {
    const cifar = await train('--dataset', `cifar10:${empty}`)
    expect(cifar.status).toBe(2)
    expect(cifar.stderr).toMatch(/has no data_batch_\*\.bin files/)
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
})

it('an existing non-empty --out is refused without --force; --force replaces an earlier run only when the new one is done', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'bssn-out-'))
  try {
    const args = ['train', '--dataset', 'ring8', '--steps', '4', '--eval-every', '2', '--batch', '16', '--width', '8', '--eval-samples', '50', '--device', 'cpu', '--out', out]
    expect((await runCli(args)).code).toBe(0)
    writeFileSync(path.join(out, 'added.txt'), 'part of the earlier run folder')
    const refused = await runCli(args)
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/exists and is not empty: choose another folder, or pass --force/)
    expect(readFileSync(path.join(out, 'added.txt'), 'utf8')).toBe('part of the earlier run folder')
    // With --force the earlier run's folder is replaced once the new run is done, and no staging folder is left behind.
    const forced = await runCli([...args, '--force'])
    expect(forced.code, forced.stderr).toBe(0)
    expect(existsSync(path.join(out, 'added.txt'))).toBe(false)
    expect(existsSync(path.join(out, 'report.html'))).toBe(true)
    expect(readdirSync(out).filter((f) => f.startsWith('.bssn-') && f !== '.bssn-run')).toEqual([])
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}, 120_000)

it('train and compare reject bad flags clearly', async () => {
  expect((await run('train', '--norm', 'xx', '--steps', '1')).stderr).toMatch(/--norm must be one of none, sn, ssn, bsn, bssn, got 'xx'/)
  expect((await run('train', '--dataset', 'mnist', '--steps', '1')).stderr).toMatch(/--dataset must be one of ring8, grid25/)
  expect((await run('compare', '--norm', 'sn')).stderr).toMatch(/--norm is for train; compare takes --norms LIST/)
  expect((await run('compare', '--betas', '0.5')).stderr).toMatch(/--betas must be two numbers/)
  expect((await run('compare', '--lr', 'fast')).stderr).toMatch(/--lr must be a number, got 'fast'/)
  expect((await run('nonsense')).status).toBe(2)
})

it('bssn train on images: the SNGAN CNN on the built-in shapes, with precision/recall and a sample grid', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'bssn-images-cli-'))
  try {
    const printed = (await runCli(['train', '--dataset', 'shapes', '--arch', 'sngan', '--steps', '1', '--batch', '2', '--eval-every', '1', '--eval-samples', '16', '--device', 'cpu', '--out', out])).stdout
    expect(printed).toMatch(/bssn \(c = 1\.4142\) seed 1: precision \d\.\d{3}, recall \d\.\d{3} after 1 steps/)
    const [record] = readFileSync(path.join(out, 'bssn', 'seed-1', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    expect(record.layers).toHaveLength(8) // seven convolutions and the final linear layer
    expect(record.precision).toBeGreaterThanOrEqual(0)
    expect(readFileSync(path.join(out, 'bssn', 'seed-1', 'samples.png')).subarray(1, 4).toString()).toBe('PNG')
    expect(readFileSync(path.join(out, 'report.html'), 'utf8')).toMatch(/data:image\/png;base64/)
    expect((await runCli(['train', '--dataset', 'shapes', '--arch', 'mlp'])).stderr).toMatch(/--arch must be dcgan16 \(16x16\) or sngan \(32x32\) for images/)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}, 120_000)

it('train --resume continues from a checkpoint in a new folder; a mismatch, a step at or below the saved one, a damaged file are refused', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'bssn-resume-cli-'))
  try {
    const common = ['--dataset', 'ring8', '--batch', '32', '--width', '8', '--eval-every', '10', '--eval-samples', '100', '--ckpt-every', '10', '--device', 'cpu']
    expect((await runCli(['train', ...common, '--steps', '20', '--out', path.join(out, 'first')])).code).toBe(0)
    const ckpt = path.join(out, 'first', 'bssn', 'seed-1', 'checkpoint.safetensors')
    const resume = (...args: string[]) => runCli(['train', ...common, '--resume', ckpt, ...args], { cwd: out })
    const batch = await runCli(['train', ...common.map((a) => (a === '32' ? '16' : a)), '--steps', '30', '--resume', ckpt], { cwd: out })
    expect(batch.code).toBe(2)
    expect(batch.stderr).toMatch(/trained with another configuration: batch 32 in the checkpoint, 16 asked/)
    const norm = await resume('--steps', '30', '--norm', 'sn')
    expect(norm.code).toBe(2)
    expect(norm.stderr).toMatch(/norm "bssn" in the checkpoint, "sn" asked/)
    expect((await resume('--steps', '30', '--seed', '7')).stderr).toMatch(/seed 1 in the checkpoint, 7 asked/)
    const below = await resume('--steps', '20')
    expect(below.code).toBe(2)
    expect(below.stderr).toMatch(/the checkpoint is at step 20; --steps \(20\) must be above it/)
    const resumed = await resume('--steps', '30', '--out', path.join(out, 'second'))
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stdout).toMatch(/resuming from step 20/)
    expect(resumed.stdout).toMatch(/after 30 steps/)
    const steps = readFileSync(path.join(out, 'second', 'bssn', 'seed-1', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)
    expect(steps).toEqual([10, 20, 30])
    writeFileSync(ckpt, readFileSync(ckpt).subarray(0, 100))
    const damaged = await resume('--steps', '40')
    expect(damaged.code).toBe(2)
    expect(damaged.stderr).toMatch(/--resume: .*checkpoint.safetensors is not a usable checkpoint: /)
    expect((await runCli(['train', '--resume', path.join(out, 'missing')])).stderr).toMatch(/no such checkpoint/)
    expect(readdirSync(out).sort()).toEqual(['first', 'second']) // the refused runs created nothing
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}, 120_000)

// Starts a run, sends `signals` once every run has printed "step 20:" (the first at once, the next after a pause),
// and returns its exit code and output. (Signals stop a run within its current step: sent after the first run's
// evaluation only, the other run could stop at step 19 with no record at 20.)
async function interrupt(args: string[], signals: NodeJS.Signals[], runs = 2): Promise<{ code: number | null; printed: string }> {
  const r = await runCli(args, { signals, when: new RegExp(`( step 20:[\\s\\S]*){${runs}}`) })
  // A process ended by a signal has no code: the signal goes into what the assertions print.
  return { code: r.code, printed: r.stdout + r.stderr + (r.signal ? `\n(ended by ${r.signal})` : '') }
}

it('Ctrl-C and SIGTERM finish the current step, write checkpoints and the report, and exit cleanly', async () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'bssn-signal-')), 'run')
    try {
      const args = ['compare', '--dataset', 'ring8', '--norms', 'sn,bssn', '--seeds', '1', '--steps', '100000', '--batch', '32', '--width', '8', '--eval-every', '20', '--eval-samples', '100', '--device', 'cpu', '--out', out]
      const { code, printed } = await interrupt(args, [signal])
      expect(code, printed).toBe(0)
      expect(printed).toMatch(new RegExp(`interrupted \\(${signal}\\): finishing the current step`))
      expect(readFileSync(path.join(out, 'report.html'), 'utf8')).toMatch(/\(interrupted\)/)
      expect(readFileSync(path.join(out, 'bssn', 'seed-1', 'checkpoint.safetensors')).length).toBeGreaterThan(100)
      expect(readFileSync(path.join(out, 'sn', 'seed-1', 'metrics.jsonl'), 'utf8')).toMatch(/"step":20/)
    } finally {
      rmSync(path.dirname(out), { recursive: true, force: true })
    }
  }
}, 60_000)

it('a second Ctrl-C aborts at once and says so', async () => {
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'bssn-abort-')), 'run')
  try {
    // The small CNN, so that the second signal lands while the first is still finishing its step.
    const args = ['train', '--steps', '100000', '--batch', '64', '--eval-every', '20', '--eval-samples', '16', '--ckpt-every', '10', '--device', 'cpu', '--out', out]
    const { code, printed } = await interrupt(args, ['SIGINT', 'SIGINT'], 1)
    expect(code, printed).toBe(130)
    expect(printed).toMatch(/aborted \(SIGINT again\): stopped at once without a report; the last complete checkpoints are in/)
    expect(existsSync(path.join(out, 'report.html'))).toBe(false)
  } finally {
    rmSync(path.dirname(out), { recursive: true, force: true })
  }
}, 60_000)
