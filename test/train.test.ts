// Training with the stack: optimizers against their reference updates, the GAN losses, a small network that
// learns, and device memory that stays flat over 10^4 steps.
import { expect, it } from 'vitest'

import { Adam, F, hingeLossD, hingeLossG, Linear, mseLoss, noGrad, SGD, Sequential, Tanh, tidy, type Tensor } from '../src/index.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseArray, expectCloseNumber } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'

forEachBackend((getDevice) => {
  it('Adam and SGD updates match their reference formulas', async () => {
    const device = getDevice()
    const p0 = randomArray(10, 1)
    const grads = [randomArray(10, 2), randomArray(10, 3), randomArray(10, 4)]
    const pa = device.tensor(p0, [10])
    const ps = device.tensor(p0, [10])
    pa.requiresGrad = ps.requiresGrad = true
    const adam = new Adam([pa], { lr: 0.01, betas: [0.8, 0.95], eps: 1e-6, weightDecay: 0.1 })
    const sgd = new SGD([ps], { lr: 0.05, momentum: 0.9, weightDecay: 0.01 })
    // float64 references
    const ra = Float64Array.from(p0), m = new Float64Array(10), v = new Float64Array(10)
    const rs = Float64Array.from(p0), buf = new Float64Array(10)
    for (const [t, g] of grads.entries()) {
      pa.grad = device.tensor(g, [10])
      ps.grad = device.tensor(g, [10])
      adam.step()
      sgd.step()
      adam.zeroGrad()
      sgd.zeroGrad()
      for (let i = 0; i < 10; i++) {
        const ga = g[i] + 0.1 * ra[i]
        m[i] = 0.8 * m[i] + 0.2 * ga
        v[i] = 0.95 * v[i] + 0.05 * ga * ga
        ra[i] -= (0.01 * (m[i] / (1 - 0.8 ** (t + 1)))) / (Math.sqrt(v[i] / (1 - 0.95 ** (t + 1))) + 1e-6)
        const gs = g[i] + 0.01 * rs[i]
        buf[i] = t === 0 ? gs : 0.9 * buf[i] + gs
        rs[i] -= 0.05 * buf[i]
      }
    }
    expectCloseArray(await pa.toArray(), ra, 1e-5, 'Adam')
    expectCloseArray(await ps.toArray(), rs, 1e-5, 'SGD')
    expect(pa.grad).toBeUndefined()
    adam.dispose()
    sgd.dispose()
    pa.dispose()
    ps.dispose()
  })

  it('hinge and MSE losses', async () => {
    const device = getDevice()
    const real = [0.5, 2, -1, 0.9]
    const fake = [-2, 0.3, -0.5, 1.5]
    using r = device.tensor(real, [4, 1])
    using f = device.tensor(fake, [4, 1])
    const [d, g, mse] = tidy(() => [hingeLossD(r, f), hingeLossG(f), mseLoss(r, f)])
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
    expectCloseNumber((await d.toArray())[0], mean(real.map((x) => Math.max(0, 1 - x))) + mean(fake.map((x) => Math.max(0, 1 + x))), 1e-6, 'D hinge')
    expectCloseNumber((await g.toArray())[0], -mean(fake), 1e-6, 'G hinge')
    expectCloseNumber((await mse.toArray())[0], mean(real.map((x, i) => (x - fake[i]) ** 2)), 1e-6, 'MSE')
    ;[d, g, mse].forEach((t) => t.dispose())
  })

  it('a two-layer network learns a small regression', async () => {
    const device = getDevice()
    const n = 64
    const xs = randomArray(n * 2, 11)
    const ys = Float32Array.from({ length: n }, (_, i) => 0.5 * Math.sin(2 * xs[2 * i]) + 0.3 * xs[2 * i + 1] ** 2)
    using x = device.tensor(xs, [n, 2])
    using y = device.tensor(ys, [n, 1])
    const model = new Sequential(new Linear(2, 32, { device, seed: 1 }), new Tanh(), new Linear(32, 1, { device, seed: 2 }))
    const opt = new Adam(model.parameters(), { lr: 0.02 })
    const lossAt = async () => {
      using loss = tidy(() => noGrad(() => mseLoss(model.forward(x), y)))
      return (await loss.toArray())[0]
    }
    const initial = await lossAt()
    for (let step = 0; step < 300; step++) {
      tidy(() => {
        opt.zeroGrad()
        mseLoss(model.forward(x), y).backward()
        opt.step()
      })
    }
    const final = await lossAt()
    expect(final).toBeLessThan(0.01)
    expect(final).toBeLessThan(initial / 10)
    opt.dispose()
    model.dispose()
  })

  // Under a sanitizer the soak takes minutes and adds nothing the short tests do not check.
  it.skipIf(process.env.BSSN_UNDER_SANITIZER === '1')('device memory stays flat over 10^4 training steps', async () => {
    const device = getDevice()
    using x = device.randn([8, 4], { seed: 1 })
    const model = new Sequential(new Linear(4, 8, { device, seed: 3 }), new Tanh(), new Linear(8, 1, { device, seed: 4 }))
    const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9 })
    const step = () =>
      tidy(() => {
        opt.zeroGrad()
        F.mean(model.forward(x)).backward()
        opt.step()
      })
    for (let i = 0; i < 10; i++) step()
    await device.synchronize()
    const before = device.memoryStats()
    for (let i = 0; i < 10_000; i++) step()
    await device.synchronize()
    const after = device.memoryStats()
    // Never more than before (garbage of earlier tests may be collected meanwhile, never added).
    expect(after.allocatedBytes).toBeLessThanOrEqual(before.allocatedBytes)
    expect(after.liveTensors).toBeLessThanOrEqual(before.liveTensors)
    const params: Tensor[] = model.parameters()
    expect((await params[0].toArray()).every(Number.isFinite)).toBe(true)
    opt.dispose()
    model.dispose()
  }, 120_000)
})
