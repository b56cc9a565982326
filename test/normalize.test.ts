// The batched SN/SSN/BSN/BSSN forward against the float64 reference, on every backend.
import { describe, expect, it, vi } from 'vitest'

import { BSSN, Device, normalizationModes, Tensor, type NormalizationMode } from '../src/index.js'
import { native } from '../src/native.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseArray, expectCloseNumber } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'
import { expectStatesClose, referenceForward, toRefState, type RefState } from './helpers/reference.js'

const SIGMA_TOL = 2e-6
const OUT_TOL = 5e-6
const STATE_TOL = 2e-5


function scaleFor(mode: NormalizationMode): number {
  return mode === 'ssn' || mode === 'bssn' ? 1.7 : 1
}

// Initial (seeded, un-warmed) state of a layer as a BSSN with these options would start from it.
async function initialState(w: Tensor, options: ConstructorParameters<typeof BSSN>[1]): Promise<RefState> {
  using probe = new BSSN([w], { ...options, warmupIterations: 0 })
  return toRefState(await probe.getState(0))
}

const cases: Array<{ shape: number[]; dim: number }> = [
  { shape: [7], dim: 0 },
  { shape: [5, 9], dim: 0 },
  { shape: [9, 5], dim: 1 },
  { shape: [6, 4, 3, 3], dim: 0 },
  { shape: [4, 6, 3, 3], dim: 1 },
  { shape: [3, 4, 5, 2], dim: 2 },
  { shape: [3, 4, 5, 2], dim: -1 },
  { shape: [3, 4, 2, 3, 2], dim: 0 },
  { shape: [3, 4, 2, 3, 2], dim: 1 },
  { shape: [2, 3, 4, 2, 3], dim: 3 },
  { shape: [1, 300], dim: 0 },
  { shape: [300, 1], dim: 0 },
  { shape: [1, 1], dim: 0 },
  { shape: [2, 1, 1, 1], dim: 0 },
  { shape: [1, 1, 3, 3], dim: 1 },
  { shape: [64, 3, 1, 1], dim: 0 },
  { shape: [4, 6, 1, 1], dim: 1 },
  { shape: [5, 1, 7], dim: 2 },
  { shape: [5, 3, 7], dim: 2 },
]

forEachBackend((getDevice) => {
  describe.each(normalizationModes)('mode %s', (mode) => {
    it.each(cases)('matches the float64 reference: shape $shape dim $dim', async ({ shape, dim }) => {
      const device = getDevice()
      const n = shape.reduce((a, b) => a * b, 1)
      const data = randomArray(n, n * 31 + dim + 7)
      using w = device.tensor(data, shape)
      const scale = scaleFor(mode)
      const options = { mode, scale, dims: [dim], seed: 11, warmupIterations: 3, powerIterations: 2 }
      const ref = { mode, scale, eps: 1e-12 }
      const state = await initialState(w, options)
      referenceForward(data, shape, dim, ref, state, 3)

      using bssn = new BSSN([w], options)
      for (let step = 0; step < 3; step++) {
        const [out] = bssn.forward()
        const expected = referenceForward(data, shape, dim, ref, state, 2)
        expectCloseArray(await out.toArray(), expected.out, OUT_TOL, `output step ${step}`)
        const [s] = await bssn.sigmas()
        expectCloseNumber(s.sigma1, expected.sigma1, SIGMA_TOL, 'sigma1')
        expectCloseNumber(s.divisor, expected.divisor, SIGMA_TOL, 'divisor')
        if (mode === 'bsn' || mode === 'bssn') expectCloseNumber(s.sigma2, expected.sigma2, SIGMA_TOL, 'sigma2')
        else expect(s.sigma2).toBeUndefined()
      }
      const got = await bssn.getState(0)
      if (shape.length > 1) {
        expectCloseArray(got.u, state.u1, STATE_TOL, 'u')
        expectCloseArray(got.v, state.v1, STATE_TOL, 'v')
      }
      if (shape.length > 2 && (mode === 'bsn' || mode === 'bssn')) {
        expectCloseArray(got.u2!, state.u2!, STATE_TOL, 'u2')
        expectCloseArray(got.v2!, state.v2!, STATE_TOL, 'v2')
      }
    })

    it('eval mode leaves the state unchanged and gives stable outputs', async () => {
      const device = getDevice()
      const shape = [8, 5, 3, 3]
      const data = randomArray(360, 5)
      using w = device.tensor(data, shape)
      const scale = scaleFor(mode)
      using bssn = new BSSN([w], { mode, scale, seed: 3 })
      bssn.forward()
      bssn.forward()
      const before = await bssn.getState(0)
      bssn.eval()
      expect(bssn.training).toBe(false)
      const first = await bssn.forward()[0].toArray()
      const second = await bssn.forward()[0].toArray()
      const after = await bssn.getState(0)
      expect(after).toEqual(before)
      expect(second).toEqual(first)
      // sigma = u^T M v from the stored state
      const expected = referenceForward(data, shape, 0, { mode, scale, eps: 1e-12 }, toRefState(before), 0)
      expectCloseArray(first, expected.out, OUT_TOL, 'eval output')
      const [s] = await bssn.sigmas()
      expectCloseNumber(s.sigma1, expected.sigma1, SIGMA_TOL, 'eval sigma1')
      bssn.train()
      bssn.forward()
      expect(await bssn.getState(0)).not.toEqual(before)
    })
  })

  it('all-zero weights give zeros, never NaN', async () => {
    const device = getDevice()
    for (const shape of [[6], [4, 3], [4, 3, 2, 2]]) {
      using w = device.zeros(shape)
      for (const mode of normalizationModes) {
        using bssn = new BSSN([w], { mode })
        const out = await bssn.forward()[0].toArray()
        expect(out.every((x) => x === 0)).toBe(true)
        const [s] = await bssn.sigmas()
        expect(s.sigma1).toBe(0)
        expect(s.divisor).toBe(0)
        bssn.eval()
        expect((await bssn.forward()[0].toArray()).every((x) => x === 0)).toBe(true)
      }
    }
  })

  it('the W^T u sums split over row ranges (CUDA: BSSN_CUDA_SPLIT_ROWS) give the CPU backend\'s results', async () => {
    const device = getDevice()
    const cpu = Device.cpu()
    const shapes = [[64, 32, 3, 3], [40, 70], [5, 3, 2, 2], [300, 2]]
    const dims = [0, 1, 0, 1]
    const make = (d: Device) => shapes.map((s, i) => d.tensor(randomArray(s.reduce((a, b) => a * b, 1), 30 + i), s))
    const reference = make(cpu)
    using refBssn = new BSSN(reference, { dims, seed: 9 })
    const expected = [0, 1, 2].map(() => refBssn.forward().map((t) => t.toArray()))
    const want = await Promise.all(expected.map((step) => Promise.all(step)))
    for (const split of ['1', '3', '16', '']) {
      process.env.BSSN_CUDA_SPLIT_ROWS = split
      const weights = make(device)
      try {
        using bssn = new BSSN(weights, { dims, seed: 9 })
        for (let step = 0; step < 3; step++) {
          const outs = bssn.forward()
          for (let i = 0; i < shapes.length; i++)
            expectCloseArray(await outs[i].toArray(), want[step][i], 1e-5, `split ${split || 'auto'} step ${step} layer ${i}`)
        }
      } finally {
        delete process.env.BSSN_CUDA_SPLIT_ROWS
        weights.forEach((w) => w.dispose())
      }
    }
    reference.forEach((w) => w.dispose())
  })

  // CUDA reads W once per step for both directions in tiles of up to 64 outer rows by a row segment (native/cuda/
  // normalize.cuh); these shapes have several row blocks (one partial), several segments, K = 1, 9, 16, 18, 25 and
  // dim 1 (outer = c), beside a K = 49 layer and a 2-D one that keep the per-item kernels in the same batch.
  it('the tiled passes (CUDA; BSSN_CUDA_TILED=0 turns them off) match the float64 reference, tiled or not, at any tile shape', async () => {
    const device = getDevice()
    const cases = [
      { shape: [70, 300, 3, 3], dim: 0 },
      { shape: [300, 70, 3, 3], dim: 1 },
      { shape: [40, 90, 1, 1], dim: 0 },
      { shape: [33, 100, 5, 5], dim: 0 },
      { shape: [64, 3, 4, 4], dim: 0 },
      { shape: [8, 4, 3, 3, 2], dim: 0 },
      { shape: [8, 6, 7, 7], dim: 0 },
      { shape: [24, 40], dim: 0 },
    ]
    const datas = cases.map(({ shape }, i) => randomArray(shape.reduce((a, b) => a * b, 1), 500 + i))
    const dims = cases.map((c) => c.dim)
    const options = { mode: 'bssn' as const, scale: 1.2, dims, seed: 13, warmupIterations: 2 }
    const ref = { mode: 'bssn' as const, scale: 1.2, eps: 1e-12 }
    // Besides the planned tile shape, forced ones (BSSN_CUDA_TILE_ROWS, BSSN_CUDA_TILE_STEPS): 32 and 64 rows (one
    // and two row groups), 50 (a partial second group), segments of 1 and 3 steps per thread (more per row).
    const shapes = [['', '', ''], ['0', '', ''], ['', '32', '1'], ['', '64', '3'], ['', '50', '8']]
    for (const [tiled, rows, steps] of shapes) {
      process.env.BSSN_CUDA_TILED = tiled
      process.env.BSSN_CUDA_TILE_ROWS = rows
      process.env.BSSN_CUDA_TILE_STEPS = steps
      const weights = cases.map(({ shape }, i) => device.tensor(datas[i], shape))
      try {
        using bssn = new BSSN(weights, options)
        const states = await Promise.all(cases.map(async (_, i) => toRefState(await bssn.getState(i))))
        for (let step = 0; step < 2; step++) {
          const outs = bssn.forward()
          const sigmas = await bssn.sigmas()
          for (const [i, { shape, dim }] of cases.entries()) {
            const expected = referenceForward(datas[i], shape, dim, ref, states[i], 1)
            const what = `${tiled === '0' ? 'untiled' : `tiled (${rows || 'auto'} rows, ${steps || 'auto'} steps)`} step ${step} ${JSON.stringify(shape)} dim ${dim}`
            expectCloseArray(await outs[i].toArray(), expected.out, OUT_TOL, `${what}: output`)
            expectCloseNumber(sigmas[i].sigma1, expected.sigma1, SIGMA_TOL, `${what}: sigma1`)
            expectCloseNumber(sigmas[i].sigma2, expected.sigma2, SIGMA_TOL, `${what}: sigma2`)
          }
        }
        await expectStatesClose(bssn, states, STATE_TOL)
      } finally {
        delete process.env.BSSN_CUDA_TILED
        delete process.env.BSSN_CUDA_TILE_ROWS
        delete process.env.BSSN_CUDA_TILE_STEPS
        weights.forEach((w) => w.dispose())
      }
    }
  })

  // CUDA splits a W v row longer than 1024 entries over warps (here the [1, 8192] Linear of SNGAN, rows read as they
  // lie and rows decoded, K = 49 and dim 2), a W^T u sum over many rows into ranges of at most 64 (2500 rows), and
  // finishes each layer in one block sized to the batch's longest vector (9000 entries: 1024 threads); beside them
  // odd sizes and many small layers in the same batch.
  it('long rows, tall layers, odd sizes and many small layers match the float64 reference, tiled or not', async () => {
    const device = getDevice()
    const cases = [
      { shape: [1, 8192], dim: 0 },
      { shape: [2, 9000], dim: 0 },
      { shape: [3, 2500], dim: 1 },
      { shape: [30, 6, 7, 7], dim: 0 },
      { shape: [40, 9, 10, 5], dim: 2 },
      { shape: [7, 13, 3, 3], dim: 0 },
      { shape: [5, 3, 1, 1], dim: 1 },
      { shape: [11], dim: 0 },
      ...Array.from({ length: 40 }, (_, i) => ({ shape: i % 2 ? [3, 2] : [2, 3, 1, 1], dim: 0 })),
    ]
    const datas = cases.map(({ shape }, i) => randomArray(shape.reduce((a, b) => a * b, 1), 700 + i))
    const dims = cases.map((c) => c.dim)
    for (const mode of ['bssn', 'ssn'] as const) {
      for (const tiled of ['', '0']) {
        process.env.BSSN_CUDA_TILED = tiled
        const weights = cases.map(({ shape }, i) => device.tensor(datas[i], shape))
        try {
          using bssn = new BSSN(weights, { mode, scale: 1.3, dims, seed: 17, warmupIterations: 1 })
          const states = await Promise.all(cases.map(async (_, i) => toRefState(await bssn.getState(i))))
          const ref = { mode, scale: 1.3, eps: 1e-12 }
          for (let step = 0; step < 2; step++) {
            const outs = bssn.forward()
            const sigmas = await bssn.sigmas()
            for (const [i, { shape, dim }] of cases.entries()) {
              const expected = referenceForward(datas[i], shape, dim, ref, states[i], 1)
              const what = `${mode} ${tiled === '0' ? 'untiled' : 'tiled'} step ${step} layer ${i} ${JSON.stringify(shape)} dim ${dim}`
              expectCloseArray(await outs[i].toArray(), expected.out, OUT_TOL, `${what}: output`)
              expectCloseNumber(sigmas[i].sigma1, expected.sigma1, SIGMA_TOL, `${what}: sigma1`)
              if (mode === 'bssn') expectCloseNumber(sigmas[i].sigma2, expected.sigma2, SIGMA_TOL, `${what}: sigma2`)
            }
          }
          for (const [i] of cases.entries()) {
            const got = await bssn.getState(i)
            expectCloseArray(got.u, states[i].u1, STATE_TOL, `${mode} layer ${i} u`)
            expectCloseArray(got.v, states[i].v1, STATE_TOL, `${mode} layer ${i} v`)
            if (got.u2) expectCloseArray(got.u2, states[i].u2!, STATE_TOL, `${mode} layer ${i} u2`)
          }
        } finally {
          delete process.env.BSSN_CUDA_TILED
          weights.forEach((w) => w.dispose())
        }
      }
    }
  })

  it('weights with huge sigmas (1e20 and up) normalize as their unscaled selves: no overflow in the products', async () => {
    const device = getDevice()
    const shape = [8, 6, 3, 3]
    const values = randomArray(8 * 6 * 9, 21)
    using small = device.tensor(values, shape)
    using huge = device.tensor(values.map((x) => x * 1e20), shape)
    for (const mode of normalizationModes) {
      using a = new BSSN([small], { mode, seed: 4 })
      using b = new BSSN([huge], { mode, seed: 4 })
      for (let step = 0; step < 2; step++) {
        const [x, y] = [await a.forward()[0].toArray(), await b.forward()[0].toArray()]
        expectCloseArray(y, x, 1e-5, `${mode} step ${step}`)
        const [[sa], [sb]] = [await a.sigmas(), await b.sigmas()]
        expect(Math.abs(sb.sigma1 / (sa.sigma1 * 1e20) - 1), `${mode} sigma1 scales with the weight`).toBeLessThan(1e-5)
      }
    }
  })

  it('several power iterations per forward match the reference', async () => {
    const device = getDevice()
    const shape = [16, 8, 3, 3]
    const data = randomArray(1152, 77)
    using w = device.tensor(data, shape)
    const options = { mode: 'bssn' as const, scale: 0.8, seed: 9, warmupIterations: 0, powerIterations: 5 }
    const state = await initialState(w, options)
    using bssn = new BSSN([w], options)
    const out = await bssn.forward()[0].toArray()
    const expected = referenceForward(data, shape, 0, { mode: 'bssn', scale: 0.8, eps: 1e-12 }, state, 5)
    expectCloseArray(out, expected.out, OUT_TOL)
  })

  it('a batch equals per-layer forwards', async () => {
    const device = getDevice()
    const shapes = [[16, 3, 3, 3], [32, 16, 4, 4], [10], [24, 32], [1, 24], [8, 4, 3, 3, 2]]
    const weights = shapes.map((s, i) => device.tensor(randomArray(s.reduce((a, b) => a * b, 1), 100 + i), s))
    const dims = [0, 1, 0, 1, 0, 2]
    using batch = new BSSN(weights, { mode: 'bssn', scale: 1.3, dims, seed: 5 })
    const singles = await Promise.all(
      weights.map(async (w, i) => {
        const single = new BSSN([w], { mode: 'bssn', scale: 1.3, dims: [dims[i]], warmupIterations: 0 })
        single.setState(0, await batch.getState(i))
        return single
      }),
    )
    const batched = batch.forward()
    for (const [i, single] of singles.entries()) {
      const a = await batched[i].toArray()
      const b = await single.forward()[0].toArray()
      expect(a).toEqual(b)
      expect((await batch.sigmas())[i]).toEqual((await single.sigmas())[0])
      single.dispose()
    }
    weights.forEach((w) => w.dispose())
  })

  it('one native call per forward, whatever the number of layers', async () => {
    const device = getDevice()
    const weights = Array.from({ length: 40 }, (_, i) => device.randn([8, 4, 3, 3], { seed: i }))
    using bssn = new BSSN(weights)
    const spy = vi.spyOn(native().NormalizerHandle.prototype, 'forward')
    try {
      bssn.forward()
      bssn.forward()
      expect(spy).toHaveBeenCalledTimes(2)
    } finally {
      spy.mockRestore()
      weights.forEach((w) => w.dispose())
    }
  })

  it('updateSigmas advances the state and sigmas like forward, without writing outputs', async () => {
    const device = getDevice()
    using w = device.randn([12, 6, 3, 3], { seed: 21 })
    using a = new BSSN([w], { seed: 2 })
    using b = new BSSN([w], { seed: 2 })
    for (let i = 0; i < 3; i++) {
      a.forward()
      b.updateSigmas()
    }
    expect(await b.sigmas()).toEqual(await a.sigmas())
    expect(await b.getState(0)).toEqual(await a.getState(0))
    expect(await b.forward()[0].toArray()).toEqual(await a.forward()[0].toArray())
  })

  it('forward returns the same owned tensors every step; their dispose() is a no-op', async () => {
    const device = getDevice()
    using w = device.randn([4, 3], { seed: 1 })
    const bssn = new BSSN([w])
    const a = bssn.forward()
    const b = bssn.forward()
    expect(a[0]).toBe(b[0])
    // An owned output's dispose() is a no-op (dispose never throws): it stays usable until the BSSN goes.
    expect(() => a[0].dispose()).not.toThrow()
    expect(a[0].disposed).toBe(false)
    expect((await a[0].toArray()).length).toBe(a[0].size)
    bssn.dispose()
    expect(a[0].disposed).toBe(true)
    expect(() => bssn.forward()).toThrow('BSSN was disposed')
    await expect(a[0].toArray()).rejects.toThrow(/was disposed/)
  })

  it('getState / setState round-trip and drive the next forward', async () => {
    const device = getDevice()
    const shape = [6, 5, 2, 2]
    const data = randomArray(120, 8)
    using w = device.tensor(data, shape)
    using bssn = new BSSN([w], { warmupIterations: 0 })
    const custom = {
      u: randomArray(6, 1),
      v: randomArray(20, 2),
      u2: randomArray(5, 3),
      v2: randomArray(24, 4),
    }
    bssn.setState(0, custom)
    expect(await bssn.getState(0)).toEqual(custom)
    const out = await bssn.forward()[0].toArray()
    const expected = referenceForward(data, shape, 0, { mode: 'bssn', scale: 1, eps: 1e-12 }, toRefState(custom), 1)
    expectCloseArray(out, expected.out, OUT_TOL)
    // partial: only u, v (as PyTorch's spectral_norm state has)
    bssn.setState(0, { u: custom.u, v: custom.v })
    expect((await bssn.getState(0)).u2).toEqual(await bssn.getState(0).then((s) => s.u2))
    expect(() => bssn.setState(0, { u: new Float32Array(5) })).toThrow(RangeError)
    expect(() => bssn.setState(0, { u: [1, 2] as unknown as Float32Array })).toThrow(TypeError)
    expect(() => bssn.setState(3, { u: custom.u })).toThrow(RangeError)
  })

  it('1-D weights have no state; sigma is exactly ||w||', async () => {
    const device = getDevice()
    const data = randomArray(33, 4)
    using w = device.tensor(data, [33])
    using bssn = new BSSN([w], { mode: 'ssn', scale: 2 })
    const state = await bssn.getState(0)
    expect(state.u.length + state.v.length).toBe(0)
    const out = await bssn.forward()[0].toArray()
    const norm = Math.hypot(...data)
    expectCloseNumber((await bssn.sigmas())[0].sigma1, norm, 1e-6)
    expectCloseArray(out, Array.from(data, (x) => (2 * x) / norm), OUT_TOL)
  })

  it('rejects bad input with errors that say what was expected', () => {
    const device = getDevice()
    using w = device.randn([4, 3, 2, 2], { seed: 1 })
    expect(() => new BSSN([])).toThrow(RangeError)
    expect(() => new BSSN(w as unknown as Tensor[])).toThrow(TypeError)
    expect(() => new BSSN([{} as Tensor])).toThrow(/weights\[0\] to be a Tensor/)
    expect(() => new BSSN([w], { mode: 'xx' as NormalizationMode })).toThrow(TypeError)
    expect(() => new BSSN([w], { mode: 'sn', scale: 2 })).toThrow(/scale applies to modes/)
    expect(() => new BSSN([w], { powerIterations: 0 })).toThrow(RangeError)
    expect(() => new BSSN([w], { warmupIterations: 1.5 })).toThrow(RangeError)
    expect(() => new BSSN([w], { eps: 0 })).toThrow(RangeError)
    expect(() => new BSSN([w], { eps: '1' as unknown as number })).toThrow(TypeError)
    expect(() => new BSSN([w], { dims: [4] })).toThrow(/dim 4 is out of range/)
    expect(() => new BSSN([w], { dims: [0, 1] })).toThrow(/one dim per weight/)
    expect(() => new BSSN([w], { foo: 1 } as never)).toThrow(/unknown option 'foo'/)
    using empty = device.zeros([0, 3])
    expect(() => new BSSN([empty])).toThrow(/non-empty/)
    using scalar = device.tensor([1], [])
    expect(() => new BSSN([scalar])).toThrow(/at least 1 dimension/)
    const gone = device.randn([2, 2], { seed: 2 })
    gone.dispose()
    expect(() => new BSSN([gone])).toThrow(/was disposed/)
    const bssn = new BSSN([w, device.randn([3, 3], { seed: 3 })])
    bssn.weights[1].dispose()
    expect(() => bssn.forward()).toThrow('weight 1 was disposed')
    bssn.dispose()
  })
})

describe('devices', () => {
  it('rejects weights on different devices', () => {
    // Two CPU handles are one device; a mixed batch needs CUDA, which forEachBackend covers when present.
    const a = Device.cpu().randn([2, 2], { seed: 1 })
    const b = Device.cpu().randn([2, 2], { seed: 2 })
    using bssn = new BSSN([a, b])
    expect(bssn.size).toBe(2)
    a.dispose()
    b.dispose()
  })
})

describe('the scale c', () => {
  it('must be > 0', () => {
    const w = Device.cpu().randn([4, 3])
    for (const scale of [0, -1.5]) expect(() => new BSSN([w], { mode: 'bssn', scale })).toThrow(/expected scale > 0/)
    w.dispose()
  })
})
