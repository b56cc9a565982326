#!/usr/bin/env node
// npm run bench: microseconds per BSSN forward for every workload on every available backend, against the
// floor (4 passes over the fp32 weights at the device's measured copy bandwidth; 2 passes for the scale-only
// forward), and against PyTorch on the same card in the same run when torch is importable.
// Device time comes from device timestamps (CUDA events on the GPU), and per kernel (forward and backward) from
// events around each launch (device.profileKernels). Writes bench/out/normalize-*.json.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { BSSN, bssnNormalize, Device } from '../dist/index.js'
import { parameterCount, workloads } from '../dist/cli/workloads.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const { values } = parseArgs({
  options: {
    out: { type: 'string' }, // folder for the JSON results (default: bench/out beside this script)
    device: { type: 'string', default: 'all' }, // all | cpu | cuda
    samples: { type: 'string', default: '200' },
    'cpu-seconds': { type: 'string', default: '2' }, // time budget per CPU workload: the CPU is the fallback, not the target
  },
})
const gpuSamples = Math.max(200, Number(values.samples))

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

function devices() {
  const list = []
  if (values.device !== 'cuda') list.push(Device.cpu())
  if (values.device !== 'cpu') {
    const auto = Device.auto()
    if (auto.emulated) throw new Error(`${auto.name} is the emulated CUDA device: its timings are not GPU figures, so the benchmark refuses it`)
    if (auto.kind === 'cuda') list.push(auto)
    else if (values.device === 'cuda') throw new Error(`no CUDA device: ${auto.fallbackReason}`)
    else console.error(`(CUDA skipped: ${auto.fallbackReason})`)
  }
  return list
}

// Device time of `op` in ms: median over samples, each bracketed by stream timestamps.
async function deviceTime(device, op, samples) {
  const marks = []
  for (let i = 0; i < samples; i++) {
    const start = device.timestamp()
    op()
    marks.push([start, device.timestamp()])
  }
  const spans = await Promise.all(marks.map(async ([a, b]) => (await b) - (await a)))
  return median(spans)
}

// Copy bandwidth (read + write bytes per second) from copying a large tensor into another.
async function copyBandwidth(device) {
  const n = device.kind === 'cuda' ? 256 * 2 ** 20 : 32 * 2 ** 20
  const src = device.randn([n], { seed: 1 })
  const dst = device.zeros([n])
  const ms = await deviceTime(device, () => dst.copyFrom(src), device.kind === 'cuda' ? 50 : 10)
  src.dispose()
  dst.dispose()
  return (2 * n * 4) / (ms / 1e3)
}

async function samplesFor(device, op) {
  if (device.kind === 'cuda') return gpuSamples
  const ms = await deviceTime(device, op, 1)
  return Math.max(5, Math.min(gpuSamples, Math.floor((Number(values['cpu-seconds']) * 1e3) / Math.max(ms, 1e-3))))
}

async function benchWorkload(device, workload, bandwidth) {
  const bytes = parameterCount(workload) * 4
  const weights = workload.shapes.map((s, i) => device.randn(s, { seed: i, std: 0.02 }))
  const bssn = new BSSN(weights, { mode: 'bssn' })
  try {
    for (let i = 0; i < (device.kind === 'cuda' ? 20 : 2); i++) bssn.forward()
    await device.synchronize()
    const samples = await samplesFor(device, () => bssn.forward())
    const forwardMs = await deviceTime(device, () => bssn.forward(), samples)
    const scaleOnlyMs = await deviceTime(device, () => bssn.updateSigmas(), samples)
    // Back-to-back throughput: many forwards between two timestamps.
    const t0 = device.timestamp()
    for (let i = 0; i < samples; i++) bssn.forward()
    const backToBackMs = ((await device.timestamp()) - (await t0)) / samples
    // Host latency of one call from JS until its result is readable.
    const latencies = []
    for (let i = 0; i < Math.min(samples, 200); i++) {
      const start = performance.now()
      bssn.forward()
      await bssn.sigmas()
      latencies.push(performance.now() - start)
    }
    const callLatencies = []
    for (let i = 0; i < Math.min(samples, 50); i++) {
      const start = performance.now()
      const outs = bssnNormalize(weights)
      await outs[outs.length - 1].toArray()
      callLatencies.push(performance.now() - start)
      outs.forEach((t) => t.dispose())
    }
    // Per-kernel device times (events around each launch: a regression names its kernel), then a backward's.
    const grads = workload.shapes.map((shape, i) => device.randn(shape, { seed: 100 + i }))
    await device.kernelTimes()
    device.profileKernels(true)
    for (let i = 0; i < Math.min(samples, 100); i++) {
      bssn.forward()
      bssn.backward(grads)
    }
    const timed = await device.kernelTimes()
    device.profileKernels(false)
    grads.forEach((g) => g.dispose())
    const kernelsUs = {}
    for (const name of new Set(timed.map((t) => t.kernel)))
      kernelsUs[name] = median(timed.filter((t) => t.kernel === name).map((t) => t.ms)) * 1e3
    const floorMs = ((4 * bytes) / bandwidth) * 1e3
    return {
      kernelsUs,
      workload: workload.name,
      device: device.name,
      parameters: parameterCount(workload),
      samples,
      forwardUs: forwardMs * 1e3,
      backToBackUs: backToBackMs * 1e3,
      scaleOnlyUs: scaleOnlyMs * 1e3,
      effectiveGBs: (4 * bytes) / (forwardMs / 1e3) / 1e9,
      floorUs: floorMs * 1e3,
      timesFloor: forwardMs / floorMs,
      scaleOnlyTimesFloor: scaleOnlyMs / (floorMs / 2),
      latencyForwardToSigmasUs: median(latencies) * 1e3,
      latencyBssnNormalizeUs: median(callLatencies) * 1e3,
    }
  } finally {
    bssn.dispose()
    weights.forEach((w) => w.dispose())
  }
}

function torchBaseline() {
  if (spawnSync('python3', ['-c', 'import torch; assert torch.cuda.is_available()']).status !== 0) return undefined
  const file = path.join(tmpdir(), `bssn-workloads-${process.pid}.json`)
  writeFileSync(file, JSON.stringify(workloads))
  const out = spawnSync('python3', [path.join(here, 'torch_baseline.py'), file, '--iters', String(gpuSamples)], { encoding: 'utf8' })
  if (out.status !== 0) {
    console.error(`torch baseline failed:\n${out.stderr}`)
    return undefined
  }
  return JSON.parse(out.stdout.trim().split('\n').pop())
}

function commit() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

const fmt = (x, d = 1) => (x === undefined ? '-' : x.toFixed(d))
const results = []
const bandwidths = {}
let torch
for (const device of devices()) {
  const bandwidth = await copyBandwidth(device)
  bandwidths[device.name] = bandwidth / 1e9
  for (const workload of workloads) results.push(await benchWorkload(device, workload, bandwidth))
  if (device.kind === 'cuda') torch = torchBaseline()
}

const date = new Date().toISOString().slice(0, 10)
const report = { date, commit: commit(), bandwidthGBs: bandwidths, results, torch }
const outDir = path.resolve(values.out ?? path.join(here, 'out'))
mkdirSync(outDir, { recursive: true })
const jsonPath = path.join(outDir, `normalize-${date}-${report.commit}.json`)
writeFileSync(jsonPath, JSON.stringify(report, null, 2))

console.log(`\nbssn normalize benchmark, commit ${report.commit}, ${date} (BSSN, 1 power iteration, all layers in one forward)`)
for (const [name, gbs] of Object.entries(bandwidths)) console.log(`  ${name}: measured copy bandwidth ${gbs.toFixed(0)} GB/s`)
console.log('')
const header = ['device', 'workload', 'params', 'n', 'us/fwd', 'b2b us', 'GB/s', 'floor us', 'x floor', 'scaleOnly us', 'x 2-pass', 'fwd->sigmas us', 'bssnNormalize us', 'torch SN', 'torch BSSN', 'torch graph']
const rows = results.map((r) => {
  const t = torch?.results.find((x) => x.name === r.workload && r.device.includes('cuda'))
  return [
    r.device.replace(/ \(cuda:\d+\)/, ''),
    r.workload,
    `${(r.parameters / 1e6).toFixed(2)}M`,
    String(r.samples),
    fmt(r.forwardUs),
    fmt(r.backToBackUs),
    fmt(r.effectiveGBs, 0),
    fmt(r.floorUs),
    fmt(r.timesFloor, 2),
    fmt(r.scaleOnlyUs),
    fmt(r.scaleOnlyTimesFloor, 2),
    fmt(r.latencyForwardToSigmasUs),
    fmt(r.latencyBssnNormalizeUs),
    t ? `${fmt(t.sn_eager_us)} (${fmt(t.sn_eager_us / r.forwardUs, 1)}x)` : '-',
    t ? `${fmt(t.bssn_eager_us)} (${fmt(t.bssn_eager_us / r.forwardUs, 1)}x)` : '-',
    t ? `${fmt(t.bssn_graph_us)} (${fmt(t.bssn_graph_us / r.forwardUs, 1)}x)` : '-',
  ]
})
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
const line = (cells) => '| ' + cells.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |'
console.log(line(header))
console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|')
rows.forEach((r) => console.log(line(r)))
console.log('\nper kernel (median us per launch, timed with events around each launch):')
for (const r of results)
  console.log(`  ${r.device.replace(/ \(cuda:\d+\)/, '')} ${r.workload}: ` + Object.entries(r.kernelsUs).map(([k, us]) => `${k} ${fmt(us)}`).join(', '))
if (torch) console.log(`\ntorch ${torch.torch} on ${torch.device}; (Nx) = PyTorch time / ours, same run, same card`)
else console.log('\n(no PyTorch baseline: torch with CUDA is not importable here)')
console.log(`json: ${path.relative(process.cwd(), jsonPath)}`)
