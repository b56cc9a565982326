// `bssn demo`: normalizes a GAN discriminator's weights on the best available device and prints each layer's
// two spectral norms, then the time per batched forward for SN and BSSN.
import type { Device } from '../device.js'
import { BSSN } from '../normalize/bssn.js'
import type { NormalizationMode } from '../normalize/options.js'
import type { Tensor } from '../tensor.js'
import { parameterCount, snganCnnD } from './workloads.js'

export interface DemoOptions {
  device: Device
  steps: number
  print: (line: string) => void
}

// Median milliseconds per forward: `steps` forwards enqueued back to back, then one synchronize, 5 times.
async function timeForward(weights: Tensor[], mode: NormalizationMode, steps: number): Promise<number> {
  using bssn = new BSSN(weights, { mode })
  bssn.forward()
  await bssn.sigmas()
  const samples: number[] = []
  for (let r = 0; r < 5; r++) {
    const start = performance.now()
    for (let i = 0; i < steps; i++) bssn.forward()
    await bssn.sigmas()
    samples.push((performance.now() - start) / steps)
  }
  samples.sort((a, b) => a - b)
  return samples[2]
}

export async function runDemo({ device, steps, print }: DemoOptions): Promise<void> {
  const workload = snganCnnD
  print(`bssn demo: ${workload.name}, ${workload.shapes.length} layers, ${(parameterCount(workload) / 1e6).toFixed(2)} M weights, on ${device.name}`)
  if (device.fallbackReason) print(`  (CUDA not used: ${device.fallbackReason})`)
  // Kaiming-normal weights, as a freshly initialized discriminator has.
  const weights = workload.shapes.map((shape, i) =>
    device.randn(shape, { seed: 1000 + i, std: Math.sqrt(2 / (shape.slice(1).reduce((a, b) => a * b, 1))) }),
  )
  try {
    using bssn = new BSSN(weights, { mode: 'bssn' })
    bssn.forward()
    const sigmas = await bssn.sigmas()
    print('')
    print('  layer  shape              sigma1 (W1)  sigma2 (W2)  divisor')
    sigmas.forEach((s, i) => {
      const shape = `[${workload.shapes[i].join(',')}]`
      print(`  ${String(i).padStart(5)}  ${shape.padEnd(17)}  ${s.sigma1.toFixed(4).padStart(11)}  ${s.sigma2!.toFixed(4).padStart(11)}  ${s.divisor.toFixed(4).padStart(7)}`)
    })
    print('')
    const sn = await timeForward(weights, 'sn', steps)
    const bssnMs = await timeForward(weights, 'bssn', steps)
    print(`  time per forward, all ${workload.shapes.length} layers in one call (median of 5 x ${steps}, ${device.name}):`)
    print(`    sn   ${(sn * 1000).toFixed(1).padStart(9)} us`)
    print(`    bssn ${(bssnMs * 1000).toFixed(1).padStart(9)} us`)
  } finally {
    weights.forEach((w) => w.dispose())
  }
}
