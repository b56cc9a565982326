// SpectralNorm over a model: gradients reach the raw weights through the batched BSSN backward, and match
// finite differences of the float64 reference with u, v frozen; one native call per step each way.
import { expect, it, vi } from 'vitest'

import { F, Linear, Sequential, SpectralNorm, Tanh, tidy } from '../src/index.js'
import { native } from '../src/native.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseArray } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'
import { referenceForward, toRefState } from './helpers/reference.js'


forEachBackend((getDevice) => {
  it('gradients of a spectrally normalized network match finite differences', async () => {
    const device = getDevice()
    const l1 = new Linear(3, 4, { device, seed: 5 })
    const l2 = new Linear(4, 2, { device, seed: 6 })
    const model = new Sequential(l1, new Tanh(), l2)
    const sn = new SpectralNorm(model, { mode: 'bssn', scale: 1.3, warmupIterations: 2 })
    const xData = randomArray(15, 7)
    const gData = randomArray(10, 8)
    using x = device.tensor(xData, [5, 3])
    using g = device.tensor(gData, [5, 2])
    tidy(() => {
      sn.forward()
      F.sum(F.mul(model.forward(x), g)).backward()
    })
    const states = [toRefState(await sn.normalizer.getState(0)), toRefState(await sn.normalizer.getState(1))]
    const w1 = Float64Array.from(await l1.weight.toArray())
    const w2 = Float64Array.from(await l2.weight.toArray())
    const b1 = await l1.bias!.toArray()
    const b2 = await l2.bias!.toArray()

    // float64 loss of the raw weights, normalization in eval mode with the frozen state
    const loss = (a: Float64Array, b: Float64Array) => {
      const opts = { mode: 'bssn' as const, scale: 1.3, eps: 1e-12 }
      const n1 = referenceForward(a, [4, 3], 0, opts, { ...states[0] }, 0).out
      const n2 = referenceForward(b, [2, 4], 0, opts, { ...states[1] }, 0).out
      let total = 0
      for (let r = 0; r < 5; r++) {
        const h = [0, 1, 2, 3].map((o) => Math.tanh(b1[o] + [0, 1, 2].reduce((s, i) => s + n1[o * 3 + i] * xData[r * 3 + i], 0)))
        for (let o = 0; o < 2; o++) total += gData[r * 2 + o] * (b2[o] + h.reduce((s, v, i) => s + n2[o * 4 + i] * v, 0))
      }
      return total
    }
    const numeric = (w: Float64Array, f: (v: Float64Array) => number) =>
      w.map((_, k) => {
        const h = 1e-6
        const up = w.slice()
        const down = w.slice()
        up[k] += h
        down[k] -= h
        return (f(up) - f(down)) / (2 * h)
      })
    expectCloseArray(await l1.weight.grad!.toArray(), numeric(w1, (v) => loss(v, w2)), 1e-4, 'dL/dW1')
    expectCloseArray(await l2.weight.grad!.toArray(), numeric(w2, (v) => loss(w1, v)), 1e-4, 'dL/dW2')
    sn.dispose()
    model.dispose()
  })

  it('one native forward and one native backward per step, whatever the layer count', () => {
    const device = getDevice()
    const layers = Array.from({ length: 12 }, (_, i) => new Linear(6, 6, { device, seed: i }))
    const model = new Sequential(...layers)
    const sn = new SpectralNorm(model)
    using x = device.randn([2, 6], { seed: 1 })
    const forward = vi.spyOn(native().NormalizerHandle.prototype, 'forward')
    const backward = vi.spyOn(native().NormalizerHandle.prototype, 'backward')
    try {
      tidy(() => {
        sn.forward()
        F.mean(model.forward(x)).backward()
      })
      expect(forward).toHaveBeenCalledTimes(1)
      expect(backward).toHaveBeenCalledTimes(1)
      expect(layers.every((l) => l.weight.grad !== undefined)).toBe(true)
    } finally {
      forward.mockRestore()
      backward.mockRestore()
      sn.dispose()
      model.dispose()
    }
  })
})
