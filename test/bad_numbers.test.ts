// Bad numbers in weights (README "Bad numbers"): a non-finite weight gives NaN (output and sigmas) and is counted,
// without poisoning the power-iteration state; weights at any finite scale normalize as the same weight scaled
// into range would, on every backend, and the CPU and CUDA agree.
import { describe, expect, it } from 'vitest'

import { BSSN, Device, type NormalizationMode } from '../src/index.js'
import { cudaSkipReason, forEachBackend } from './helpers/backends.js'
import { expectCloseArray, expectCloseNumber } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'

const FLOAT_MAX = 3.4028234663852886e38

// Shapes that take each kernel path: a vector, a matrix, a conv kernel along dims 0 and 1 (the CUDA tiled passes in
// bsn/bssn) and a weight whose dim has axes both sides (the per-item passes).
const shapes: Array<{ shape: number[]; dim: number }> = [
  { shape: [7], dim: 0 },
  { shape: [4, 3], dim: 0 },
  { shape: [6, 4, 3, 3], dim: 0 },
  { shape: [4, 6, 3, 3], dim: 1 },
  { shape: [5, 3, 7], dim: 2 },
]
const modes: NormalizationMode[] = ['sn', 'bssn']
const optionsFor = (mode: NormalizationMode, dim: number) => ({ mode, scale: mode === 'bssn' ? 1.3 : 1, dims: [dim], seed: 3 })

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1)
// Unit-scale values in [-1, 1] (so that 2e38 times them stays finite).
const unitWeight = (n: number, seed: number) => randomArray(n, seed, 0.3).map((x) => Math.max(-1, Math.min(1, x)))

// `data` times 2^k, exact in float32 (a power of two), as a float32 array.
const timesPow2 = (data: Float32Array, k: number) => Float32Array.from(data, (x) => x * 2 ** k)

// Extreme weights: `unit` times `scale` rounded to float32, and the power of two that brings them back to unit scale.
const extremes: Array<{ name: string; make: (unit: Float32Array) => Float32Array; k: number }> = [
  { name: '1e38', make: (u) => Float32Array.from(u, (x) => x * 1e38), k: -126 },
  { name: '2e38', make: (u) => Float32Array.from(u, (x) => x * 2e38), k: -127 },
  { name: '1e-30', make: (u) => Float32Array.from(u, (x) => x * 1e-30), k: 100 },
  { name: '1e-38 (denormal region)', make: (u) => Float32Array.from(u, (x) => x * 1e-38), k: 126 },
  { name: 'mixed 1e30 and 1e-30', make: (u) => Float32Array.from(u, (x, i) => x * (i % 2 ? 1e30 : 1e-30)), k: -100 },
]

interface Result {
  out: Float32Array
  grad: Float32Array
  sigma1: number
  divisor: number
  nonFiniteSteps: number
}

// Two training forwards and a backward with a fixed gradient.
async function run(device: Device, data: Float32Array, shape: number[], mode: NormalizationMode, dim: number): Promise<Result> {
  using w = device.tensor(data, shape)
  using norm = new BSSN([w], optionsFor(mode, dim))
  norm.forward()
  const [out] = norm.forward()
  using g = device.tensor(randomArray(data.length, 99), shape)
  const [grad] = norm.backward([g])
  const [s] = await norm.sigmas()
  return { out: await out.toArray(), grad: await grad.toArray(), sigma1: s.sigma1, divisor: s.divisor, nonFiniteSteps: s.nonFiniteSteps }
}

const allFinite = (a: Float32Array) => a.every((x) => Number.isFinite(x))

forEachBackend((getDevice) => {
  describe.each(modes)('mode %s', (mode) => {
    describe.each(shapes)('shape $shape dim $dim', ({ shape, dim }) => {
      it.each([NaN, Infinity, -Infinity])('one %s element gives NaN, is counted, and leaves the state usable', async (bad) => {
        const device = getDevice()
        const data = unitWeight(numel(shape), 5)
        using w = device.tensor(data, shape)
        using norm = new BSSN([w], optionsFor(mode, dim))
        const poisoned = data.slice()
        poisoned[Math.floor(data.length / 2)] = bad
        using p = device.tensor(poisoned, shape)
        w.copyFrom(p)
        const [out] = norm.forward()
        expect((await out.toArray()).every((x) => Number.isNaN(x)), 'the output is all NaN').toBe(true)
        const [s] = await norm.sigmas()
        expect(s.sigma1).toBeNaN()
        expect(s.divisor).toBeNaN()
        for (const v of Object.values(await norm.getState(0))) expect(allFinite(v as Float32Array), 'u and v stay finite').toBe(true)

        // Good weights again: the state goes on as if the bad forward had not happened.
        using good = device.tensor(data, shape)
        w.copyFrom(good)
        for (let i = 0; i < 20; i++) norm.forward()
        using fresh = new BSSN([good], optionsFor(mode, dim))
        for (let i = 0; i < 20; i++) fresh.forward()
        const [a] = await norm.sigmas()
        const [b] = await fresh.sigmas()
        expectCloseNumber(a.sigma1, b.sigma1, 1e-5, 'sigma1 after recovery')
        expectCloseNumber(a.divisor, b.divisor, 1e-5, 'divisor after recovery')
        expect(s.nonFiniteSteps, 'the bad forward is counted').toBe(1)
        expect(a.nonFiniteSteps, 'the count stays').toBe(1)
        expect(b.nonFiniteSteps).toBe(0)
      })

      it.each(extremes)('weights at $name normalize as the same weights at unit scale', async ({ make, k }) => {
        const device = getDevice()
        const ext = make(unitWeight(numel(shape), 7))
        expect(allFinite(ext)).toBe(true)
        const ref = timesPow2(ext, k)  // the same weight, scaled into range exactly
        const [e, r] = [await run(device, ext, shape, mode, dim), await run(device, ref, shape, mode, dim)]
        expect(allFinite(e.out) && allFinite(e.grad), 'finite output and gradient').toBe(true)
        expectCloseArray(e.out, r.out, 1e-5, 'normalized weight')
        // d(W / sigma(W)) / dW scales as 1 / W: the gradient is 2^k times the unit-scale one (denormal gradients keep
        // fewer digits, hence the looser bound).
        expectCloseArray(timesPow2(e.grad, -k), r.grad, 1e-4, 'gradient')
        const sigma = r.sigma1 * 2 ** -k
        if (sigma > FLOAT_MAX) expect(e.sigma1).toBe(Infinity)
        else expectCloseNumber(e.sigma1, sigma, 1e-5, 'sigma1')
        expect(e.nonFiniteSteps).toBe(0)
      })
    })
  })

  it('each power-iteration step that meets a non-finite weight is counted', async () => {
    const device = getDevice()
    for (const shape of [[7], [4, 3], [6, 4, 3, 3]]) {
      const data = unitWeight(numel(shape), 2)
      data[1] = NaN
      using w = device.tensor(data, shape)
      using norm = new BSSN([w], { warmupIterations: 2, powerIterations: 3 })
      norm.forward()
      norm.eval().forward()
      expect((await norm.sigmas())[0].nonFiniteSteps, `shape ${shape}: 2 warm-up, 3 training, 1 eval`).toBe(6)
    }
  })

  it('a weight whose sigma is past float range reports Infinity and still normalizes right', async () => {
    const device = getDevice()
    const e = await run(device, new Float32Array(12).fill(2e38), [4, 3], 'sn', 0)
    expect(e.sigma1).toBe(Infinity)  // 2e38 * sqrt(12)
    expectCloseArray(e.out, new Float32Array(12).fill(1 / Math.sqrt(12)), 1e-6, 'normalized weight')
    expect(allFinite(e.grad)).toBe(true)
  })

  it('an all-zero weight gives zeros and keeps its state for later weights', async () => {
    const device = getDevice()
    const data = unitWeight(24, 8)
    using w = device.zeros([4, 6])
    using norm = new BSSN([w], { seed: 4 })
    const [out] = norm.forward()
    expect(Array.from(await out.toArray())).toEqual(new Array(24).fill(0))
    expect((await norm.sigmas())[0].sigma1).toBe(0)
    using good = device.tensor(data, [4, 6])
    w.copyFrom(good)
    norm.forward()
    using fresh = new BSSN([good], { seed: 4, warmupIterations: 1 })
    expectCloseNumber((await norm.sigmas())[0].sigma1, (await fresh.sigmas())[0].sigma1, 1e-5, 'sigma1 after zeros')
  })

  it('setState refuses non-finite values', () => {
    using w = getDevice().tensor(unitWeight(12, 1), [4, 3])
    using norm = new BSSN([w])
    const u = new Float32Array(4).fill(0.5)
    u[2] = NaN
    expect(() => norm.setState(0, { u })).toThrow(expect.objectContaining({ code: 'ERR_BSSN_OUT_OF_RANGE' }))
  })
})

const cudaReason = cudaSkipReason()
describe.skipIf(cudaReason !== undefined)(`the CPU and CUDA agree on extreme weights${cudaReason ? ` (skipped: ${cudaReason})` : ''}`, () => {
  it.each(extremes)('$name', async ({ make }) => {
    for (const { shape, dim } of shapes) {
      const data = make(unitWeight(numel(shape), 11))
      const [c, g] = [await run(Device.cpu(), data, shape, 'bssn', dim), await run(Device.cuda(0), data, shape, 'bssn', dim)]
      expectCloseArray(g.out, c.out, 1e-5, `normalized weight, shape ${shape}`)
      if (c.sigma1 === Infinity) expect(g.sigma1).toBe(Infinity)
      else expectCloseNumber(g.sigma1, c.sigma1, 1e-5, `sigma1, shape ${shape}`)
    }
  })
})
