// BatchNorm2d: running statistics as PyTorch updates them, eval mode uses them.
import { expect, it } from 'vitest'

import { BatchNorm2d, tidy } from '../src/index.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseArray } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'

forEachBackend((getDevice) => {
  it('updates running mean and unbiased variance with momentum, and eval normalizes with them', async () => {
    const device = getDevice()
    const bn = new BatchNorm2d(2, { device, momentum: 0.3 })
    const data = randomArray(2 * 2 * 3, 5, 2)
    using x = device.tensor(data, [2, 2, 3, 1])
    tidy(() => bn.forward(x))
    const mean = [0, 1].map((c) => [0, 1, 2, 6 + 0, 6 + 1, 6 + 2].map((o) => data[c * 3 + o]))
    const m = mean.map((xs) => xs.reduce((a, b) => a + b, 0) / xs.length)
    const unbiased = mean.map((xs, c) => xs.reduce((a, b) => a + (b - m[c]) ** 2, 0) / (xs.length - 1))
    expectCloseArray(await bn.runningMean.toArray(), m.map((v) => 0.3 * v), 1e-6, 'running mean')
    expectCloseArray(await bn.runningVar.toArray(), unbiased.map((v) => 0.7 + 0.3 * v), 1e-6, 'running var')
    bn.eval()
    const y = tidy(() => bn.forward(x))
    const rm = await bn.runningMean.toArray()
    const rv = await bn.runningVar.toArray()
    const expected = Array.from(data, (v, i) => {
      const c = Math.floor(i / 3) % 2
      return (v - rm[c]) / Math.sqrt(rv[c] + 1e-5)
    })
    expectCloseArray(await y.toArray(), expected, 1e-5, 'eval output')
    expect(y.requiresGrad).toBe(false)
    y.dispose()
    bn.dispose()
  })
})
