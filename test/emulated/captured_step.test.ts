// A GAN training step captured into one CUDA graph (src/train/gan_stepper.ts) on the emulated CUDA device: the same
// losses and weights as eager steps, bit for bit; what a replayed step costs (one graph launch, the seeds and the real
// batch copied in, nothing else); what an eager step costs after warm-up; and what a capture refuses. The counting
// tests skip visibly outside the emulated build and under AddressSanitizer (no counting there); the parity tests run
// on any CUDA build (BSSN_REQUIRE_CUDA=1 makes a missing device fail).
import { describe, expect, it } from 'vitest'

import { Adam, Device, F, SpectralNorm, snganCnnDiscriminator, snganCnnGenerator, type Module, type Tensor } from '../../src/index.js'
import { CapturedGraph } from '../../src/capture.js'
import { mlpDiscriminator, mlpGenerator } from '../../src/models/mlp.js'
import { sampleMixture, ring8 } from '../../src/data/toy2d.js'
import { GanStepper, type GanStepperParts } from '../../src/train/gan_stepper.js'
import { costSkipReason } from '../helpers/cost.js'
import { native } from '../../src/native.js'
import { cudaSkipReason } from '../helpers/backends.js'

const noCuda = cudaSkipReason()
const cudaSuite = noCuda === undefined ? describe : describe.skip
const noCount = noCuda ?? costSkipReason()
const countSuite = noCount === undefined ? describe : describe.skip

type Norm = 'bssn' | 'sn' | 'none'

function mlpParts(device: Device, norm: Norm, batch = 8): GanStepperParts {
  const generator = mlpGenerator({ device, seed: 1, width: 32, zDim: 2 })
  const discriminator = mlpDiscriminator({ device, seed: 2, width: 32 })
  return {
    generator,
    discriminator,
    optG: new Adam(generator.parameters(), { lr: 2e-3, betas: [0.5, 0.999] }),
    optD: new Adam(discriminator.parameters(), { lr: 2e-3, betas: [0.5, 0.999] }),
    normalization: norm === 'none' ? undefined : new SpectralNorm(discriminator, { mode: norm, seed: 3 }),
    zShape: [batch, 2],
    zSeed: (step, draw) => 1000 * step + draw,
    sampleReal: (step, draw) => sampleMixture(device, ring8, batch, 7000 * step + draw),
  }
}

function snganParts(device: Device, batch = 2): GanStepperParts {
  const generator = snganCnnGenerator({ device, seed: 1 })
  const discriminator = snganCnnDiscriminator({ device, seed: 2 })
  return {
    generator,
    discriminator,
    optG: new Adam(generator.parameters(), { lr: 2e-4, betas: [0.5, 0.999] }),
    optD: new Adam(discriminator.parameters(), { lr: 2e-4, betas: [0.5, 0.999] }),
    normalization: new SpectralNorm(discriminator, { mode: 'bssn', seed: 3 }),
    zShape: [batch, 128],
    zSeed: (step, draw) => 1000 * step + draw,
    sampleReal: (step, draw) => Device.cuda(0).randn([batch, 3, 32, 32], { seed: 7000 * step + draw }),
  }
}

function dispose(p: GanStepperParts): void {
  for (const x of [p.normalization, p.optG, p.optD, p.generator, p.discriminator]) x?.dispose()
}

const weightsOf = (...modules: Module[]) => Promise.all(modules.flatMap((m) => m.parameters()).map((t) => t.toArray()))

/** Losses per step and the final weights of `steps` steps, captured or eager. */
async function train(make: () => GanStepperParts, capture: boolean, steps: number) {
  const parts = make()
  const stepper = new GanStepper(parts, { capture, warmup: 2 })
  const losses: number[][] = []
  let captured = 0
  try {
    for (let s = 1; s <= steps; s++) {
      const r = stepper.step(s)
      if (r.captured) captured++
      losses.push([(await r.lossD.toArray())[0], (await r.lossG.toArray())[0]])
      if (!r.captured) [r.lossD, r.lossG].forEach((t) => t.dispose())
    }
    return { losses, weights: await weightsOf(parts.generator, parts.discriminator), captured, stepCount: (parts.optD as Adam).stepCount }
  } finally {
    stepper.dispose()
    dispose(parts)
  }
}

cudaSuite(`captured GAN steps${noCuda ? ` (skipped: ${noCuda})` : ''}`, () => {
  for (const norm of ['bssn', 'sn', 'none'] as const)
    it(`MLP GAN with ${norm}: 20 captured steps give the eager steps' losses and weights bit for bit`, async () => {
      const device = Device.cuda(0)
      const eager = await train(() => mlpParts(device, norm), false, 20)
      const captured = await train(() => mlpParts(device, norm), true, 20)
      expect(eager.captured).toBe(0)
      expect(captured.captured).toBe(18) // 2 warm-up steps, then the graph
      expect(captured.stepCount).toBe(20)
      expect(captured.losses).toEqual(eager.losses)
      captured.weights.forEach((w, i) => expect(Array.from(w), `parameter ${i}`).toEqual(Array.from(eager.weights[i])))
      expect(eager.losses.every(([d, g]) => Number.isFinite(d) && Number.isFinite(g))).toBe(true)
    }, 300_000)

  // Minutes under AddressSanitizer; the MLP steps above run the same capture code there.
  it.skipIf(process.env.BSSN_UNDER_SANITIZER === '1')('SNGAN CNN with BSSN (cuBLAS, cuDNN and the fused normalization inside the graph): 4 captured steps match eager', async () => {
    const device = Device.cuda(0)
    const eager = await train(() => snganParts(device), false, 6)
    const captured = await train(() => snganParts(device), true, 6)
    expect(captured.captured).toBe(4)
    expect(captured.losses).toEqual(eager.losses)
    captured.weights.forEach((w, i) => expect(Array.from(w), `parameter ${i}`).toEqual(Array.from(eager.weights[i])))
  }, 600_000)

  it('a step whose real batch changes shape runs eagerly, then is captured again for the new shape', async () => {
    const device = Device.cuda(0)
    let batch = 8
    const parts = mlpParts(device, 'bssn')
    parts.sampleReal = (step, draw) => sampleMixture(device, ring8, batch, 7000 * step + draw)
    const stepper = new GanStepper(parts, { capture: true, warmup: 1 })
    try {
      const kinds: boolean[] = []
      for (let s = 1; s <= 6; s++) {
        if (s === 4) batch = 4 // z keeps its shape: D sees 8 fake and 4 real samples
        const r = stepper.step(s)
        kinds.push(r.captured)
        expect(Number.isFinite((await r.lossD.toArray())[0])).toBe(true)
        if (!r.captured) [r.lossD, r.lossG].forEach((t) => t.dispose())
      }
      expect(kinds).toEqual([false, true, true, false, true, true])
    } finally {
      stepper.dispose()
      dispose(parts)
    }
  }, 300_000)

  it('switching TF32 after a capture runs the next step eagerly and captures again (a graph keeps its math modes)', async () => {
    const device = Device.cuda(0)
    const before = device.tf32
    const parts = mlpParts(device, 'sn')
    const stepper = new GanStepper(parts, { capture: true, warmup: 1 })
    try {
      const kinds: boolean[] = []
      for (let s = 1; s <= 5; s++) {
        if (s === 3) device.tf32 = { matmul: !before.matmul }
        const r = stepper.step(s)
        kinds.push(r.captured)
        if (!r.captured) [r.lossD, r.lossG].forEach((t) => t.dispose())
      }
      expect(kinds).toEqual([false, true, false, true, true])
    } finally {
      device.tf32 = before
      stepper.dispose()
      dispose(parts)
    }
  }, 300_000)

  it('a capture that fails leaves the optimizers\' step counts and the stepper as they were: the next step captures', async () => {
    const device = Device.cuda(0)
    const parts = mlpParts(device, 'bssn')
    let poison = false
    const forward = parts.generator.forward.bind(parts.generator)
    parts.generator.forward = (x: Tensor) => {
      if (poison) device.tensor([1], [1]).dispose() // host data inside the capture: refused
      return forward(x)
    }
    const stepper = new GanStepper(parts, { capture: true, warmup: 1 })
    try {
      const first = stepper.step(1)
      ;[first.lossD, first.lossG].forEach((t) => t.dispose())
      poison = true
      expect(() => stepper.step(2)).toThrow(expect.objectContaining({ code: 'ERR_BSSN_CAPTURE' }))
      expect(stepper.captured).toBe(false)
      expect((parts.optD as Adam).stepCount).toBe(1)
      expect((parts.optG as Adam).stepCount).toBe(1)
      poison = false
      const second = stepper.step(2)
      expect(second.captured).toBe(true)
      expect(Number.isFinite((await second.lossD.toArray())[0])).toBe(true)
      expect((parts.optD as Adam).stepCount).toBe(2)
    } finally {
      stepper.dispose()
      dispose(parts)
    }
  }, 300_000)

  it('a graph released while another is being captured keeps its memory until that capture is done, and both work', async () => {
    const device = Device.cuda(0)
    const a = device.randn([64], { seed: 5 })
    const first = CapturedGraph.capture(device, () => F.scale(a, 2))
    first.graph.replay()
    const once = Array.from(await first.result.toArray())
    const second = CapturedGraph.capture(device, () => {
      first.graph.dispose() // during the second capture: nothing may be freed or synchronized now
      first.result.dispose()
      return F.scale(a, 3)
    })
    second.graph.replay()
    const start = Array.from(await a.toArray())
    expect(once).toEqual(start.map((v) => Math.fround(2 * v)))
    expect(Array.from(await second.result.toArray())).toEqual(start.map((v) => Math.fround(3 * v)))
    second.graph.dispose()
    second.result.dispose()
    a.dispose()
  })

  it('a host read, an upload of caller data or a synchronization inside a capture is refused with ERR_BSSN_CAPTURE', async () => {
    const device = Device.cuda(0)
    const x = device.randn([4], { seed: 1 })
    try {
      expect(() => CapturedGraph.capture(device, () => device.tensor([1, 2], [2]))).toThrow(expect.objectContaining({ code: 'ERR_BSSN_CAPTURE' }))
      expect(() => CapturedGraph.capture(device, () => x.write(new Float32Array(4)))).toThrow(expect.objectContaining({ code: 'ERR_BSSN_CAPTURE' }))
      let read: Promise<unknown> | undefined
      CapturedGraph.capture(device, () => {
        read = x.toArray()
      }).graph.dispose()
      await expect(read).rejects.toMatchObject({ code: 'ERR_BSSN_CAPTURE' })
      // the device works as before after the refusals
      expect(Array.from(await x.toArray())).toEqual(Array.from(await device.randn([4], { seed: 1 }).toArray()))
    } finally {
      x.dispose()
    }
  })

  it('a captured graph replays its work on the same memory, and refuses replays once disposed', async () => {
    const device = Device.cuda(0)
    const a = device.randn([5], { seed: 3 })
    const { graph, result } = CapturedGraph.capture(device, () => {
      const doubled = device.empty([5])
      native().ops.binary(0, a.handle, a.handle, doubled.handle)
      a.copyFrom(doubled)
      return doubled
    })
    const start = Array.from(await a.toArray())
    graph.replay()
    graph.replay()
    const after = Array.from(await a.toArray())
    after.forEach((v, i) => expect(v).toBe(start[i] * 4))
    graph.dispose()
    expect(() => graph.replay()).toThrow(expect.objectContaining({ code: 'ERR_BSSN_DISPOSED' }))
    result.dispose()
    a.dispose()
  })
})

countSuite(`what a step costs on the emulated device${noCount ? ` (skipped: ${noCount})` : ''}`, () => {
  it('a replayed SNGAN step (BSSN) is one graph launch, with the seeds and the real batch its only copies to the device', async () => {
    const device = Device.cuda(0)
    const parts = snganParts(device)
    const stepper = new GanStepper(parts, { capture: true, warmup: 2 })
    const emulator = native().emulator!
    try {
      for (let s = 1; s <= 3; s++) {
        const r = stepper.step(s)
        if (!r.captured) [r.lossD, r.lossG].forEach((t) => t.dispose())
      }
      await device.synchronize()
      let real: Tensor | undefined
      const sampleReal = parts.sampleReal
      // The real batch from host data, as a data loader gives it: one copy to the device, then into the graph's input.
      const host = await sampleReal(4, 1).toArray()
      parts.sampleReal = () => (real = device.tensor(host, [2, 3, 32, 32]))
      emulator.cost.start()
      let r
      try {
        r = stepper.step(4)
      } finally {
        var cost = emulator.cost.stop()
      }
      expect(r.captured).toBe(true)
      expect(real!.disposed).toBe(true)
      expect(cost.graphLaunches).toBe(1)
      expect(cost.kernels.filter((k) => !k.replay).map((k) => k.kernel)).toEqual([]) // every kernel ran from the graph
      expect(cost.bytesToDevice).toBe(2 * 8 + host.byteLength) // two uint64 seeds, one real batch
      expect(cost.synchronizations).toBe(0)
      expect(cost.deviceAllocations + cost.pinnedAllocations).toBe(0)
      expect(cost.graphNodes).toBeGreaterThan(50) // the whole step is in it
    } finally {
      stepper.dispose()
      dispose(parts)
    }
  }, 600_000)

  it('an eager SNGAN step (BSSN) after warm-up runs <= 120 kernels besides cuBLAS/cuDNN, with 0 allocations and 0 syncs', async () => {
    const device = Device.cuda(0)
    const parts = snganParts(device)
    const stepper = new GanStepper(parts, { capture: false })
    const emulator = native().emulator!
    try {
      for (let s = 1; s <= 2; s++) {
        const r = stepper.step(s)
        ;[r.lossD, r.lossG].forEach((t) => t.dispose())
      }
      await device.synchronize()
      emulator.cost.start()
      let r
      try {
        r = stepper.step(3)
      } finally {
        var cost = emulator.cost.stop()
      }
      ;[r.lossD, r.lossG].forEach((t) => t.dispose())
      const names = cost.kernels.map((k) => k.kernel)
      expect(cost.launches, names.join(', ')).toBeLessThanOrEqual(120)
      expect(names.filter((n) => n === 'adamKernel')).toHaveLength(2) // one multi-tensor update per optimizer
      expect(cost.synchronizations).toBe(0)
      expect(cost.deviceAllocations + cost.pinnedAllocations).toBe(0)
    } finally {
      stepper.dispose()
      dispose(parts)
    }
  }, 600_000)
})

describe('GanStepper arguments', () => {
  it('refuses parts that are not a GAN with a TypeError, and capture on the CPU with a RangeError', () => {
    expect(() => new GanStepper(null as never)).toThrow(TypeError)
    expect(() => new GanStepper({ generator: {} } as never)).toThrow(expect.objectContaining({ code: 'ERR_BSSN_INVALID_ARGUMENT' }))
    const parts = mlpParts(Device.cpu(), 'none')
    try {
      expect(() => new GanStepper(parts, { capture: true })).toThrow(expect.objectContaining({ code: 'ERR_BSSN_OUT_OF_RANGE' }))
      expect(new GanStepper(parts).capture).toBe(false) // the CPU steps eagerly by default
    } finally {
      dispose(parts)
    }
  })
})
