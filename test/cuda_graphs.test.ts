// The CUDA backend replays each normalizer's launch sequence from a CUDA graph (native/cuda/graph.h). Replays must
// give the same bits as kernel-by-kernel launches (what profileKernels(true) runs), through everything that changes
// between calls: output pointers, training and eval, scale-only, new weights, a weight moved by share(), new state.
import { describe, expect, it } from 'vitest'

import { BSSN, bssnNormalize, Device, type NormalizationMode, type Tensor } from '../src/index.js'
import { native } from '../src/native.js'
import { cudaSkipReason, emulated } from './helpers/backends.js'
import { randomArray } from './helpers/random.js'

const reason = cudaSkipReason()
const suite = reason === undefined ? describe : describe.skip

const shapes = [
  [16, 3, 3, 3],
  [32, 16, 4, 4],
  [8, 32, 3, 3],
  [1, 512],
]

async function snapshot(norm: BSSN, outputs: readonly Tensor[]): Promise<Float32Array[]> {
  const values = [...(await Promise.all(outputs.map((t) => t.toArray())))]
  values.push(Float32Array.from((await norm.sigmas()).flatMap((s) => [s.sigma1, s.sigma2 ?? 0, s.divisor])))
  for (let i = 0; i < norm.size; i++) {
    const st = await norm.getState(i)
    values.push(st.u, st.v, st.u2 ?? new Float32Array(), st.v2 ?? new Float32Array())
  }
  return values
}

suite(`cuda graphs${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it.each(['bssn', 'sn'] as NormalizationMode[])('%s: replays give the bits of kernel-by-kernel launches, step by step', async (mode) => {
    const device = Device.cuda(0)
    const weights = shapes.map((s, i) => device.tensor(randomArray(s.reduce((a, b) => a * b, 1), 40 + i, 0.1), s))
    const options = { mode, scale: mode === 'bssn' ? 1.3 : 1, seed: 5 }
    using graphed = new BSSN(weights, options)
    using direct = new BSSN(weights, options)
    const outsA = [0, 1].map(() => shapes.map((s) => device.empty(s)))
    const outsB = [0, 1].map(() => shapes.map((s) => device.empty(s)))
    const grads = [90, 95].map((seed) => shapes.map((s, i) => device.tensor(randomArray(s.reduce((a, b) => a * b, 1), seed + i), s)))
    // Each step runs on both: `graphed` as it normally runs, `direct` with kernel timing on (no graph).
    const steps: Array<[string, (n: BSSN, outs: Tensor[][]) => Tensor[] | Promise<Tensor[]>]> = [
      ['train forward', (n) => n.forward()],
      ['train forward again', (n) => n.forward()],
      ['forwardInto outputs 0', (n, o) => (n.forwardInto(o[0]), o[0])],
      ['forwardInto outputs 1', (n, o) => (n.forwardInto(o[1]), o[1])],
      ['forwardInto outputs 0 again', (n, o) => (n.forwardInto(o[0]), o[0])],
      ['scale-only', (n) => (n.updateSigmas(), [])],
      ['eval forward', (n) => n.eval().forward()],
      ['train forward after eval', (n) => n.train().forward()],
      ['backward', (n) => n.backward(grads[0])],
      ['backward again', (n) => n.backward(grads[1])],
      ['new state', async (n) => {
        const st = await n.getState(1)
        n.setState(1, { u: st.u.map((x, k) => x + 0.01 * Math.sin(k)) })
        return n.forward()
      }],
    ]
    for (const [name, step] of steps) {
      const a = await snapshot(graphed, await step(graphed, outsA))
      device.profileKernels(true)
      const b = await snapshot(direct, await step(direct, outsB))
      device.profileKernels(false)
      await device.kernelTimes()
      expect(a.length, name).toBe(b.length)
      a.forEach((x, k) => expect(x, `${name}: array ${k}`).toEqual(b[k]))
    }
    // New weights in place, then a weight moved to shared memory by share() (a new plan, captured again).
    for (const [k, w] of weights.entries()) {
      using next = device.tensor(randomArray(w.shape.reduce((a, b) => a * b, 1), 70 + k, 0.2), w.shape)
      w.copyFrom(next)
    }
    weights[1].share()
    for (const name of ['after new weights', 'after share()']) {
      const a = await snapshot(graphed, graphed.forward())
      device.profileKernels(true)
      const b = await snapshot(direct, direct.forward())
      device.profileKernels(false)
      await device.kernelTimes()
      a.forEach((x, k) => expect(x, `${name}: array ${k}`).toEqual(b[k]))
    }
    for (const t of [...weights, ...outsA.flat(), ...outsB.flat(), ...grads.flat()]) t.dispose()
  })

  it('bssnNormalize: each call writes its own fresh output through the replayed graph', async () => {
    const device = Device.cuda(0)
    using w = device.tensor(randomArray(32 * 16 * 9, 8, 0.1), [32, 16, 3, 3])
    const outs = [0, 1, 2].map(() => bssnNormalize(w))
    const values = await Promise.all(outs.map((o) => o.toArray()))
    for (const o of outs) o.dispose()
    // Training: each call runs one more power iteration, so the sigmas move slightly and the outputs differ a little.
    for (const v of values) expect(v.every(Number.isFinite)).toBe(true)
    expect(values[1]).not.toEqual(values[0])
    let worst = 0
    for (let k = 0; k < values[0].length; k++) worst = Math.max(worst, Math.abs(values[2][k] - values[1][k]))
    expect(worst).toBeLessThan(1e-2)
  })

  const emulatedOnly = emulated ? it : it.skip
  // The fused path's forward and backward are a cooperative kernel each; BSSN_CUDA_FUSED=0 keeps the streamed ones.
  emulatedOnly.each([
    ['', ['fusedForwardKernel', 'fusedBackwardKernel']],
    ['0', ['multiplyTransposedKernel', 'multiplyKernel', 'finishKernel', 'scaleKernel', 'gradDotKernel', 'backwardKernel']],
  ])('a steady-state forward is one graph launch (emulated device statistics; BSSN_CUDA_FUSED=%s)', (fused, kernels) => {
    const device = Device.cuda(0)
    const weights = shapes.map((s, i) => device.tensor(randomArray(s.reduce((a, b) => a * b, 1), 20 + i), s))
    process.env.BSSN_CUDA_FUSED = fused
    using norm = new BSSN(weights)
    norm.forward() // captures
    norm.backward(weights) // captures
    const stats = () => native().emulator!.stats()
    const before = stats()
    for (let i = 0; i < 3; i++) {
      norm.forward()
      norm.backward(weights)
    }
    const after = stats()
    expect(after.graphLaunches - before.graphLaunches).toBe(6)
    expect(after.captures - before.captures, 'nothing captured again').toBe(0)
    for (const kernel of kernels) expect((after.kernelLaunches[kernel] ?? 0) - (before.kernelLaunches[kernel] ?? 0), kernel).toBe(3)
    delete process.env.BSSN_CUDA_FUSED
    for (const t of weights) t.dispose()
  })

  emulatedOnly('a normalizer cycling through its calls captures each once (the graphs kept are the recently used)', () => {
    const device = Device.cuda(0)
    const weights = shapes.map((s, i) => device.tensor(randomArray(s.reduce((a, b) => a * b, 1), 60 + i), s))
    const outputs = shapes.map((s) => device.empty(s))
    using norm = new BSSN(weights)
    // Five graphs: forward and scale-only in training and eval, backward; a forward into other outputs replays the
    // training forward's (output pointers are read from a device table).
    const calls = [
      () => norm.train().forward(),
      () => norm.updateSigmas(),
      () => norm.eval().forward(),
      () => norm.updateSigmas(),
      () => norm.train().backward(weights),
      () => norm.forwardInto(outputs),
    ]
    const captures = () => native().emulator!.stats().captures
    const start = captures()
    calls.forEach((call) => call())
    expect(captures() - start, 'one capture per graph').toBe(5)
    const second = captures()
    for (let round = 0; round < 3; round++) calls.forEach((call) => call())
    expect(captures() - second, 'replays only').toBe(0)
    for (const t of [...weights, ...outputs]) t.dispose()
  })

  // A buffer whose last reference goes on another thread (here: a read over 64 MiB, whose staging buffer the
  // waiting thread frees) must not enqueue its free into the stream while the JS thread captures on it: the free
  // would become part of the graph, or invalidate the capture. The emulator holds the capture open
  // (BSSN_EMU_CAPTURE_HOLD_MS) so that the free lands inside it.
  emulatedOnly('a free from another thread during a capture waits for its end; the capture and the read both succeed', async () => {
    const device = Device.cuda(0)
    const n = 17 * 2 ** 20 // 68 MiB: staged, and freed by the waiting thread
    using big = device.rand([n], { seed: 2, low: 1, high: 2 })
    using w = device.tensor(randomArray(8 * 4 * 9, 3), [8, 4, 3, 3])
    using reference = new BSSN([w], { seed: 1 })
    const expected = await reference.forward()[0].toArray()
    await device.synchronize()
    const before = device.memoryStats().allocatedBytes
    process.env.BSSN_EMU_CAPTURE_HOLD_MS = '400'
    let forward: Float32Array
    let read: Promise<Float32Array>
    try {
      read = big.toArray()
      using norm = new BSSN([w], { seed: 1 })
      forward = await norm.forward()[0].toArray() // captured (held open while the read's staging buffer is freed)
    } finally {
      delete process.env.BSSN_EMU_CAPTURE_HOLD_MS
    }
    const values = await read!
    expect(values[n - 1]).toBeGreaterThanOrEqual(1)
    expect(forward!).toEqual(expected)
    await device.synchronize()
    expect(device.memoryStats().allocatedBytes, 'the staging buffer was freed').toBe(before)
  })
})
