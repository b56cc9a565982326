// Sharing benchmark: a second process normalizes the SNGAN CNN discriminator's weights and reports their sigmas,
// given either shared-tensor descriptors (tensor.share() -> Tensor.open(), no copy) or the weights themselves
// sent over the IPC socket (toArray() -> device.tensor()). Each round, timed end to end from this process:
//   shared: share() every weight, send the descriptors, the peer opens them, runs one BSSN forward, reads
//           sigmas(), disposes, replies;
//   shared, kept open: the same, but the peer opened the weights once (a monitor's steady state);
//   no peer (floor): the same BSSN work in this process, without a second process;
//   socket: read every weight to the host, send the arrays, the peer uploads them, the same BSSN work, replies.
// Medians over --rounds after --warmup rounds; writes bench/out/share-<device>.json (or --out DIR).
//   node bench/share.mjs [--device cpu|cuda] [--rounds 30] [--warmup 3] [--out DIR]
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { BSSN, Device, Tensor, snganCnnDiscriminator } from '../dist/index.js'

const { values } = parseArgs({
  options: {
    device: { type: 'string', default: 'cpu' },
    rounds: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '3' },
    out: { type: 'string' },
    peer: { type: 'boolean', default: false },
  },
})
const deviceOf = (kind) => (kind === 'cuda' ? Device.cuda(0) : Device.cpu())

async function normalizeAndReport(weights) {
  // One power iteration, no warm-up: the round's cost is the transfer, not the normalization.
  const bssn = new BSSN(weights, { mode: 'bssn', seed: 1, warmupIterations: 0 })
  bssn.forward()
  const sigmas = await bssn.sigmas()
  bssn.dispose()
  return sigmas.map((s) => s.sigma1)
}

if (values.peer) {
  const device = deviceOf(values.device)
  let kept
  process.on('message', async (message) => {
    let weights
    if (message.keep) weights = kept ??= message.keep.map((d) => Tensor.open(d, device))
    else if (message.descriptors) weights = message.descriptors.map((d) => Tensor.open(d, device))
    else weights = message.arrays.map(({ data, shape }) => device.tensor(data, shape))
    const sigmas = await normalizeAndReport(weights)
    if (!message.keep) for (const w of weights) w.dispose()
    process.send(sigmas)
  })
  process.send('ready')
} else {
  const device = deviceOf(values.device)
  if (device.emulated) throw new Error('bench/share.mjs: the emulated CUDA device is for tests; its timings mean nothing')
  const rounds = Number(values.rounds), warmup = Number(values.warmup)
  const D = snganCnnDiscriminator({ device, seed: 2 })
  const weights = D.parameters().filter((p) => p.shape.length >= 2)
  const bytes = weights.reduce((n, w) => n + w.size * 4, 0)
  const peer = fork(fileURLToPath(import.meta.url), ['--peer', '--device', values.device], { serialization: 'advanced' })
  await once(peer, 'message')
  const ask = async (message) => {
    peer.send(message)
    return (await once(peer, 'message'))[0]
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const firstShare = performance.now()
  weights.forEach((w) => w.share()) // the one-time move to shareable memory, measured apart
  await device.synchronize()
  const moveMs = performance.now() - firstShare
  const modes = {
    shared: () => ask({ descriptors: weights.map((w) => w.share()) }),
    // A monitor's steady state: the peer keeps what it opened; each round only publishes (share()) and asks.
    'shared, kept open': () => ask({ keep: weights.map((w) => w.share()) }),
    // The floor: the same normalization in this process, on its own weights, with no second process at all.
    'no peer (floor)': () => normalizeAndReport(weights),
    socket: async () => ask({ arrays: await Promise.all(weights.map(async (w) => ({ data: await w.toArray(), shape: w.shape }))) }),
  }
  const results = { device: device.name, date: new Date().toISOString(), weights: weights.length, bytes, firstShareMs: +moveMs.toFixed(3), rows: [] }
  let reference
  for (const [mode, round] of Object.entries(modes)) {
    const samples = []
    for (let i = 0; i < warmup + rounds; i++) {
      const start = performance.now()
      const sigmas = await round()
      if (i >= warmup) samples.push(performance.now() - start)
      reference ??= sigmas
      if (sigmas.some((s, k) => Math.abs(s - reference[k]) > 1e-5 * Math.abs(reference[k])))
        throw new Error(`${mode}: sigmas differ from the first round's`)
    }
    const row = { mode, medianMs: +median(samples).toFixed(3), minMs: +Math.min(...samples).toFixed(3) }
    results.rows.push(row)
    console.log(`${mode.padEnd(18)} median ${row.medianMs.toFixed(2).padStart(8)} ms   min ${row.minMs.toFixed(2).padStart(8)} ms`)
  }
  console.log(`${weights.length} weights, ${(bytes / 2 ** 20).toFixed(1)} MiB; first share() (moving them to shareable memory): ${moveMs.toFixed(2)} ms`)
  peer.kill()
  const outDir = values.out ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'out')
  mkdirSync(outDir, { recursive: true })
  writeFileSync(path.join(outDir, `share-${device.kind}.json`), JSON.stringify(results, null, 2))
}
