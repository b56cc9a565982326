// CPU backend benchmark: sgemm 1024^3 (the floor to compare with), then conv2d forward, data gradient and filter
// gradient on the SNGAN CNN D shapes at batch 64, and one SNGAN CNN GAN training step, with the BLAS and with
// the reference loops (--reference). Medians of device time; writes bench/out/cpu-*.json.
//   node bench/cpu.mjs [--batch 64] [--reps 5] [--reference] [--out DIR]
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { Adam, Device, F, ganStep, snganCnnDiscriminator, snganCnnGenerator } from '../dist/index.js'
import { native } from '../dist/native.js'

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '64' },
    reps: { type: 'string', default: '5' },
    reference: { type: 'boolean', default: false },
    out: { type: 'string' }, // folder for the JSON results (default: bench/out beside this script)
  },
})
const batch = Number(values.batch), reps = Number(values.reps)
if (values.reference) native().setCpuBlas(false)
const device = Device.cpu()
const info = device.info()
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function time(op, n = reps) {
  op()
  await device.synchronize()
  const samples = []
  for (let i = 0; i < n; i++) {
    const start = device.timestamp()
    op()
    const end = device.timestamp()
    samples.push((await end) - (await start))
  }
  return median(samples)
}

const results = { device: info.name, blas: info.blas ?? `none (${info.blasError})`, batch, date: new Date().toISOString(), rows: [] }
const report = (name, flops, ms) => {
  const row = { name, ms: +ms.toFixed(3), gflops: +(flops / ms / 1e6).toFixed(1) }
  results.rows.push(row)
  console.log(`${name.padEnd(44)} ${ms.toFixed(2).padStart(9)} ms ${row.gflops.toFixed(1).padStart(8)} GFLOP/s`)
}

{
  const n = 1024
  const a = device.randn([n, n], { seed: 1 })
  const b = device.randn([n, n], { seed: 2 })
  report('sgemm 1024 x 1024 x 1024', 2 * n ** 3, await time(() => F.matmul(a, b).dispose()))
  a.dispose()
  b.dispose()
}

// [cIn, cOut, k, stride, input size] of the SNGAN CNN D convolutions (padding 1).
const convs = [[3, 64, 3, 1, 32], [64, 64, 4, 2, 32], [64, 128, 3, 1, 16], [128, 128, 4, 2, 16], [128, 256, 3, 1, 8], [256, 256, 4, 2, 8], [256, 512, 3, 1, 4]]
const ops = native().ops
for (const [cIn, cOut, k, s, size] of convs) {
  const out = Math.floor((size + 2 - k) / s) + 1
  const x = device.randn([batch, cIn, size, size], { seed: 3 })
  const w = device.randn([cOut, cIn, k, k], { seed: 4, std: 0.05 })
  const y = device.randn([batch, cOut, out, out], { seed: 5 })
  const flops = 2 * batch * cOut * out * out * cIn * k * k
  const label = `${cIn}->${cOut} ${k}x${k}/${s} on ${size}x${size}`
  const g = { strideH: s, strideW: s, padH: 1, padW: 1 }
  report(`conv forward ${label}`, flops, await time(() => ops.conv2d(x.handle, w.handle, y.handle, g)))
  report(`conv data gradient ${label}`, flops, await time(() => ops.conv2dBackwardData(x.handle, w.handle, y.handle, g)))
  report(`conv filter gradient ${label}`, flops, await time(() => ops.conv2dBackwardFilter(x.handle, w.handle, y.handle, g)))
  ;[x, w, y].forEach((t) => t.dispose())
}

{
  const G = snganCnnGenerator({ device, seed: 1 })
  const D = snganCnnDiscriminator({ device, seed: 2 })
  const optG = new Adam(G.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
  const optD = new Adam(D.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
  const real = device.rand([batch, 3, 32, 32], { seed: 3, low: -1, high: 1 })
  let seed = 10
  const step = () => {
    const { lossD, lossG } = ganStep({ generator: G, discriminator: D, optG, optD, sampleZ: () => device.randn([batch, 128], { seed: seed++ }), sampleReal: () => real })
    lossD.dispose()
    lossG.dispose()
  }
  const ms = await time(step, 3)
  results.rows.push({ name: `SNGAN CNN GAN step, batch ${batch}`, ms: +ms.toFixed(1) })
  console.log(`SNGAN CNN GAN step, batch ${batch}: ${(ms / 1000).toFixed(2)} s`)
  ;[optG, optD, G, D, real].forEach((m) => m.dispose())
}

const outDir = values.out ? path.resolve(values.out) : fileURLToPath(new URL('./out/', import.meta.url))
mkdirSync(outDir, { recursive: true })
const file = path.join(outDir, `cpu-${values.reference ? 'reference' : 'blas'}.json`)
writeFileSync(file, JSON.stringify(results, null, 2))
console.log(`wrote ${file}`)
