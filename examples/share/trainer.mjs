// A trainer that shares its discriminator's weights with a monitor process (monitor.mjs beside it), which reports
// each layer's sigma1 / sigma2 every few steps without copying the weights.
//   node examples/share/trainer.mjs [steps] [every]
import { fork } from 'node:child_process'
import { once } from 'node:events'

import { Adam, Device, SpectralNorm, ganStep, snganCnnDiscriminator, snganCnnGenerator } from 'bssn'

const steps = Number(process.argv[2] ?? 200)
const every = Number(process.argv[3] ?? 50)
const device = Device.auto()
const G = snganCnnGenerator({ device, seed: 1 })
const D = snganCnnDiscriminator({ device, seed: 2 })
const sn = new SpectralNorm(D, { mode: 'bssn' })
const optG = new Adam(G.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
const optD = new Adam(D.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
const real = device.randn([16, 3, 32, 32], { seed: 3 }) // stands in for a batch of images

const weights = D.parameters().filter((p) => p.shape.length >= 2) // conv and linear weights
const monitor = fork(new URL('./monitor.mjs', import.meta.url))
monitor.send({ weights: weights.map((w) => w.share()) }) // descriptors only: nothing is copied

for (let step = 1; step <= steps; step++) {
  const { lossD, lossG } = ganStep({ generator: G, discriminator: D, optG, optD, normalization: sn,
    sampleZ: () => device.randn([16, 128]), sampleReal: () => real })
  lossD.dispose()
  lossG.dispose()
  if (step % every === 0) {
    for (const w of weights) w.share() // publish: the monitor's next reads see this step's weights
    monitor.send({ step })
    console.log(...(await once(monitor, 'message'))) // wait, so the next step does not write while it reads
  }
}
monitor.send({ done: true })
await once(monitor, 'exit') // our weights must outlive the monitor's use of them
