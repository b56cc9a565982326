#!/usr/bin/env node
// npm run bench:train: SNGAN CNN GAN training steps per second (one D step + one G step, hinge loss, Adam
// 2e-4 / (0.5, 0.999), n_dis 1) with no normalization, SN and BSSN on D, eager and (on CUDA) captured into one CUDA
// graph per step (GanStepper), beside PyTorch eager and torch.cuda.graph on the same card in the same run
// (bench/torch_train_baseline.py) when torch with CUDA is importable. Writes JSON too.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { Adam, Device, snganCnnDiscriminator, snganCnnGenerator, SpectralNorm } from '../dist/index.js'
import { GanStepper } from '../dist/train/gan_stepper.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const { values } = parseArgs({
  options: {
    out: { type: 'string' }, // folder for the JSON results (default: bench/out beside this script)
    device: { type: 'string', default: 'auto' },
    batch: { type: 'string' },
    steps: { type: 'string' },
    warmup: { type: 'string' },
  },
})
const device = values.device === 'cpu' ? Device.cpu() : values.device === 'cuda' ? Device.cuda(0) : Device.auto()
if (device.emulated) throw new Error(`${device.name} is the emulated CUDA device: its timings are not GPU figures, so the benchmark refuses it`)
const onGpu = device.kind === 'cuda'
// The CPU runs a token workload: the figure that matters is the GPU's.
const batch = Number(values.batch ?? (onGpu ? 64 : 4))
const steps = Number(values.steps ?? (onGpu ? 200 : 3))
const warmup = Number(values.warmup ?? (onGpu ? 20 : 1))

async function run(norm, capture) {
  const G = snganCnnGenerator({ device, seed: 1 })
  const D = snganCnnDiscriminator({ device, seed: 2 })
  const sn = norm === 'none' ? undefined : new SpectralNorm(D, { mode: norm })
  const optG = new Adam(G.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
  const optD = new Adam(D.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
  const real = device.rand([batch, 3, 32, 32], { seed: 3, low: -1, high: 1 })
  const stepper = new GanStepper(
    {
      generator: G,
      discriminator: D,
      optG,
      optD,
      normalization: sn,
      zShape: [batch, 128],
      zSeed: (step, draw) => 100 + 2 * step + draw,
      sampleReal: () => real.clone(), // a device copy: the data pipeline is not what is measured
    },
    { capture, warmup: Math.max(1, Math.min(warmup, 3)) },
  )
  let n = 0
  const step = () => {
    const r = stepper.step(++n)
    return r.captured ? [] : [r.lossD, r.lossG]
  }
  try {
    for (let i = 0; i < warmup; i++) step().forEach((t) => t.dispose())
    await device.synchronize()
    const t0 = device.timestamp()
    const wall0 = performance.now()
    let last
    for (let i = 0; i < steps; i++) {
      last?.forEach((t) => t.dispose())
      last = step()
    }
    await device.synchronize()
    const deviceMs = (await device.timestamp()) - (await t0)
    const wallMs = performance.now() - wall0
    last?.forEach((t) => t.dispose())
    return { norm, captured: capture, stepsPerSecond: (steps * 1000) / wallMs, deviceMsPerStep: deviceMs / steps }
  } finally {
    stepper.dispose()
    sn?.dispose()
    ;[optG, optD, G, D, real].forEach((x) => x.dispose())
  }
}

function torchBaseline() {
  if (!onGpu || spawnSync('python3', ['-c', 'import torch; assert torch.cuda.is_available()']).status !== 0) return undefined
  const out = spawnSync('python3', [path.join(here, 'torch_train_baseline.py'), '--batch', String(batch), '--steps', String(steps), '--warmup', String(warmup)], { encoding: 'utf8' })
  if (out.status !== 0) {
    console.error(`torch train baseline failed:\n${out.stderr}`)
    return undefined
  }
  return JSON.parse(out.stdout.trim().split('\n').pop())
}

const results = []
for (const norm of ['none', 'sn', 'bssn']) for (const capture of onGpu ? [false, true] : [false]) results.push(await run(norm, capture))
const torch = torchBaseline()
let commit = 'unknown'
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here, encoding: 'utf8' }).trim()
} catch {}
const date = new Date().toISOString().slice(0, 10)
const outDir = path.resolve(values.out ?? path.join(here, 'out'))
mkdirSync(outDir, { recursive: true })
const jsonPath = path.join(outDir, `train-${date}-${commit}.json`)
writeFileSync(jsonPath, JSON.stringify({ date, commit, device: device.name, batch, steps, results, torch }, null, 2))

console.log(`\nbssn SNGAN CNN training benchmark on ${device.name}, batch ${batch}, ${steps} steps (D step + G step), commit ${commit}, ${date}`)
console.log('| D normalization | bssn step | steps/s | device ms/step | torch eager steps/s | torch.cuda.graph steps/s |')
console.log('|---|---|---|---|---|---|')
for (const r of results) {
  const t = torch?.results.find((x) => x.norm === r.norm)
  const tg = torch?.results.find((x) => x.norm === `${r.norm}+graph`)
  console.log(`| ${r.norm} | ${r.captured ? 'captured' : 'eager'} | ${r.stepsPerSecond.toFixed(1)} | ${r.deviceMsPerStep.toFixed(2)} | ${t ? t.stepsPerSecond.toFixed(1) : '-'} | ${tg ? tg.stepsPerSecond.toFixed(1) : '-'} |`)
}
if (torch) console.log(`torch ${torch.torch} on ${torch.device}, same run`)
else console.log('(no PyTorch baseline: torch with CUDA is not importable here)')
console.log(`json: ${path.relative(process.cwd(), jsonPath)}`)
