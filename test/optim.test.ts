// The multi-tensor optimizers (one native call per step, the step count on the device) against float64
// references and against the old per-tensor kernel's fp32 arithmetic, on tensors of odd sizes: one element, more
// than one block's chunk, and more tensors than one launch's list holds.
import { expect, it } from 'vitest'

import { Adam, SGD, type Device, type Tensor } from '../src/index.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseArray } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'

// 1 element, a chunk and a bit (1024 elements per block), and 70 small tensors: two launches' lists.
const sizes = [1, 2500, 7, 1025, ...Array.from({ length: 66 }, (_, i) => 1 + ((i * 7) % 13))]
const f = Math.fround

interface Options { lr: number; b1: number; b2: number; eps: number; wd: number }

// One Adam step of tensor i in float64, and as the old per-tensor kernel computed it (fp32 moments, double
// bias corrections), so the new kernel is held to both.
function adamReference(p: Float64Array, m: Float64Array, v: Float64Array, g: Float32Array, t: number, o: Options, fp32: boolean): void {
  const r = fp32 ? f : (x: number) => x
  const c1 = 1 - r(o.b1) ** t, c2 = 1 - r(o.b2) ** t
  for (let i = 0; i < p.length; i++) {
    const gi = r(g[i] + r(r(o.wd) * p[i]))
    m[i] = r(r(r(o.b1) * m[i]) + r(r(1 - r(o.b1)) * gi))
    v[i] = r(r(r(o.b2) * v[i]) + r(r(r(1 - r(o.b2)) * gi) * gi))
    p[i] = r(p[i] - (r(o.lr) * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + r(o.eps)))
  }
}

function params(device: Device, seed: number): Tensor[] {
  return sizes.map((n, i) => {
    const p = device.tensor(randomArray(n, seed + i), [n])
    p.requiresGrad = true
    return p
  })
}

forEachBackend((getDevice) => {
  it('multi-tensor Adam matches float64 and the per-tensor fp32 arithmetic over 4 steps, skipping tensors without a gradient', async () => {
    const device = getDevice()
    const o: Options = { lr: 0.01, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1 }
    const ps = params(device, 100)
    const adam = new Adam(ps, { lr: o.lr, betas: [o.b1, o.b2], eps: o.eps, weightDecay: o.wd })
    const init = await Promise.all(ps.map((p) => p.toArray()))
    const ref = [false, true].map((fp32) => ({
      fp32,
      p: init.map((a) => Float64Array.from(a)),
      m: sizes.map((n) => new Float64Array(n)),
      v: sizes.map((n) => new Float64Array(n)),
    }))
    const skipped = 2 // tensor 2 never gets a gradient: untouched, no moments
    for (let t = 1; t <= 4; t++) {
      ps.forEach((p, i) => {
        if (i === skipped) return
        p.grad?.dispose()
        const g = randomArray(sizes[i], 1000 * t + i)
        p.grad = device.tensor(g, [sizes[i]])
        for (const r of ref) adamReference(r.p[i], r.m[i], r.v[i], g, t, o, r.fp32)
      })
      adam.step()
    }
    expect(adam.stepCount).toBe(4)
    const got = await Promise.all(ps.map((p) => p.toArray()))
    expect(Array.from(got[skipped])).toEqual(Array.from(init[skipped]))
    expect(adam.state().moments[skipped]).toBeUndefined()
    for (const [i, p] of got.entries()) {
      expect(Array.from(p).some((x, j) => x !== init[i][j]) || i === skipped).toBe(true)
      expectCloseArray(p, ref[0].p[i], 1e-5, `params[${i}] vs float64`)
      expectCloseArray(p, ref[1].p[i], 2e-6, `params[${i}] vs the per-tensor fp32 arithmetic`)
    }
    adam.dispose()
    for (const p of ps) p.dispose()
  })

  it('Adam loadState writes the device step count; noteReplayedSteps advances the host mirror, which a fresh count starts from', async () => {
    const device = getDevice()
    const o: Options = { lr: 0.02, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0 }
    const n = 33
    const p = device.tensor(randomArray(n, 7), [n])
    p.requiresGrad = true
    const adam = new Adam([p], { lr: o.lr, betas: [o.b1, o.b2], eps: o.eps })
    p.grad = device.tensor(randomArray(n, 11), [n])
    adam.step() // the device count exists now: loadState overwrites it in place
    // Nonzero moments at step 1000, whose bias corrections differ visibly from step 2's (c1 / sqrt(c2) is not 1).
    const m0 = randomArray(n, 8, 0.1), v0 = randomArray(n, 9, 0.1).map((x) => x * x)
    const [m, v] = [device.tensor(m0, [n]), device.tensor(v0, [n])]
    adam.loadState(1000, [{ m, v }])
    const rp = Float64Array.from(await p.toArray()), rm = Float64Array.from(m0), rv = Float64Array.from(v0)
    const step = (t: number) => {
      const g = randomArray(n, 10 + t)
      p.grad!.dispose()
      p.grad = device.tensor(g, [n])
      adam.step()
      adamReference(rp, rm, rv, g, t, o, false)
    }
    step(1001)
    expectCloseArray(await p.toArray(), rp, 1e-5, 'after loadState(1000)')
    expect(adam.stepCount).toBe(1001)
    adam.noteReplayedSteps(5)
    expect(adam.stepCount).toBe(1006)
    expect(adam.state().step).toBe(1006)
    expect(() => adam.noteReplayedSteps(-1007)).toThrow(RangeError) // below 0 steps
    adam.noteReplayedSteps(-1) // a failed capture takes back the step it counted
    expect(adam.stepCount).toBe(1005)
    adam.noteReplayedSteps(1)
    // dispose() drops the moments and the device count; the next step starts both afresh, counting from the host's.
    adam.dispose()
    rm.fill(0), rv.fill(0)
    step(1007)
    expectCloseArray(await p.toArray(), rp, 1e-5, 'after dispose() at step 1006')
    adam.dispose()
    for (const t of [p, m, v]) t.dispose()
  })

  it('multi-tensor SGD with and without momentum matches float64, a tensor joining late starting its own buffer', async () => {
    const device = getDevice()
    for (const momentum of [0, 0.9]) {
      const [lr, wd] = [0.05, 0.01]
      const ps = params(device, 200)
      const sgd = new SGD(ps, { lr, momentum, weightDecay: wd })
      const ref = (await Promise.all(ps.map((p) => p.toArray()))).map((a) => Float64Array.from(a))
      const buf = sizes.map((n) => new Float64Array(n))
      const late = 3 // gets its first gradient at step 2: its first update is buf = d
      for (let t = 1; t <= 3; t++) {
        ps.forEach((p, i) => {
          if (i === late && t === 1) return
          p.grad?.dispose()
          const g = randomArray(sizes[i], 5000 * t + i)
          p.grad = device.tensor(g, [sizes[i]])
          for (let j = 0; j < sizes[i]; j++) {
            const d = g[j] + wd * ref[i][j]
            buf[i][j] = momentum * buf[i][j] + d
            ref[i][j] -= lr * (momentum ? buf[i][j] : d)
          }
        })
        sgd.step()
      }
      const got = await Promise.all(ps.map((p) => p.toArray()))
      for (const [i, p] of got.entries()) expectCloseArray(p, ref[i], 1e-5, `momentum ${momentum}: params[${i}]`)
      sgd.dispose()
      for (const p of ps) p.dispose()
    }
  })
})
