// BSSN.backward against central finite differences, in float64, of the reference forward with u and v frozen
// (PyTorch's semantics), for every mode, dim 0 and 1, and 1-D, 2-D, 4-D weights.
import { expect, it } from 'vitest'

import { BSSN, Device, normalizationModes } from '../src/index.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseArray } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'
import { referenceForward, toRefState, type RefState } from './helpers/reference.js'


// d/dW of sum(G * forward(W)) with the state frozen (eval-mode reference: sigma = u^T W v).
function finiteDifferenceGradient(
  w: Float32Array,
  g: Float32Array,
  shape: number[],
  dim: number,
  options: Parameters<typeof referenceForward>[3],
  state: RefState,
): Float64Array {
  const loss = (x: Float64Array) => {
    const copy = { ...state }
    const out = referenceForward(x, shape, dim, options, copy, 0).out
    let s = 0
    for (let k = 0; k < out.length; k++) s += g[k] * out[k]
    return s
  }
  const x = Float64Array.from(w)
  const grad = new Float64Array(x.length)
  for (let k = 0; k < x.length; k++) {
    const h = 1e-6 * Math.max(1, Math.abs(x[k]))
    const keep = x[k]
    x[k] = keep + h
    const up = loss(x)
    x[k] = keep - h
    const down = loss(x)
    x[k] = keep
    grad[k] = (up - down) / (2 * h)
  }
  return grad
}

const cases = [
  { shape: [6], dim: 0 },
  { shape: [5, 7], dim: 0 },
  { shape: [5, 7], dim: 1 },
  { shape: [4, 3, 2, 2], dim: 0 },
  { shape: [3, 4, 2, 2], dim: 1 },
  { shape: [4, 3, 1, 1], dim: 0 },
]

forEachBackend((getDevice) => {
  for (const mode of normalizationModes) {
    it.each(cases)(`${mode}: gradient matches finite differences, shape $shape dim $dim`, async ({ shape, dim }) => {
      const device = getDevice()
      const n = shape.reduce((a, b) => a * b, 1)
      const data = randomArray(n, 3 * n + dim)
      const grad = randomArray(n, 5 * n + dim + 1)
      const scale = mode === 'ssn' || mode === 'bssn' ? 1.6 : 1
      using w = device.tensor(data, shape)
      using g = device.tensor(grad, shape)
      using bssn = new BSSN([w], { mode, scale, dims: [dim], warmupIterations: 3, seed: 2 })
      bssn.forward()
      const [dw] = bssn.backward([g])
      const state = toRefState(await bssn.getState(0))
      const expected = finiteDifferenceGradient(data, grad, shape, dim, { mode, scale, eps: 1e-12 }, state)
      expectCloseArray(await dw.toArray(), expected, 1e-4, 'dL/dW')
    })
  }

  it('layers of many element chunks: forward and backward match the CPU backend, call after call', async () => {
    const device = getDevice()
    const cpu = Device.cpu()
    // 18432, 60000 and 17017 elements span several of the CUDA passes' chunks (16384 elements, fewer where a batch
    // has few; forced to 2044 with BSSN_CUDA_CHUNK_ELEMENTS: up to 30 per layer); [5], [3, 7] and the odd
    // sizes fit in one. Odd sizes leave elements past the passes' float4 steps; dim 1 of [7, 5, 3, 3] and dim 2
    // decode other layouts; [1, 8192] is SNGAN's Linear.
    const shapes = [[64, 32, 3, 3], [300, 200], [5], [3, 7], [17, 1001], [7, 5, 3, 3], [3, 4, 5, 7], [1, 8192], [13]]
    const dims = [0, 1, 0, 0, 1, 1, 2, 0, 0]
    const make = (d: Device, base: number) => shapes.map((s, i) => d.tensor(randomArray(s.reduce((a, b) => a * b, 1), base + i), s))
    for (const chunk of ['', '2044']) {
      process.env.BSSN_CUDA_CHUNK_ELEMENTS = chunk
      const [weights, cpuWeights] = [make(device, 80), make(cpu, 80)]
      try {
        using mine = new BSSN(weights, { dims, seed: 5 })
        using reference = new BSSN(cpuWeights, { dims, seed: 5 })
        for (let call = 0; call < 3; call++) {
          // New gradients each call: a pass that kept the last call's <G, W> would show.
          const [grads, cpuGrads] = [make(device, 90 + 10 * call), make(cpu, 90 + 10 * call)]
          const [outs, refOuts] = [mine.forward(), reference.forward()]
          const [dws, refDws] = [mine.backward(grads), reference.backward(cpuGrads)]
          for (let i = 0; i < shapes.length; i++) {
            const what = `chunks ${chunk || 'auto'} call ${call}`
            expectCloseArray(await outs[i].toArray(), await refOuts[i].toArray(), 1e-5, `${what} forward layer ${i}`)
            expectCloseArray(await dws[i].toArray(), await refDws[i].toArray(), 1e-5, `${what} backward layer ${i}`)
          }
          for (const t of [...grads, ...cpuGrads]) t.dispose()
        }
      } finally {
        delete process.env.BSSN_CUDA_CHUNK_ELEMENTS
        for (const t of [...weights, ...cpuWeights]) t.dispose()
      }
    }
  })

  it('batched backward equals per-layer backward, and the gradient tensors are reused', async () => {
    const device = getDevice()
    const shapes = [[8, 4, 3, 3], [10], [6, 8], [4, 8, 1, 1]]
    const weights = shapes.map((s, i) => device.tensor(randomArray(s.reduce((a, b) => a * b, 1), 40 + i), s))
    const grads = shapes.map((s, i) => device.tensor(randomArray(s.reduce((a, b) => a * b, 1), 60 + i), s))
    using batch = new BSSN(weights, { dims: [0, 0, 1, 0] })
    batch.forward()
    const first = batch.backward(grads)
    const again = batch.backward(grads)
    expect(again[0]).toBe(first[0])
    for (const [i, w] of weights.entries()) {
      using single = new BSSN([w], { dims: [[0, 0, 1, 0][i]], warmupIterations: 0 })
      single.setState(0, await batch.getState(i))
      single.forward()
      // same state as the batch after its forward: set again, as the single forward advanced it
      single.setState(0, await batch.getState(i))
      single.eval()
      single.forward()
      const [dw] = single.backward([grads[i]])
      expectCloseArray(await dw.toArray(), await first[i].toArray(), 1e-6, `layer ${i}`)
    }
    expect(() => batch.backward(grads.slice(1))).toThrow(/expected 4 gradient tensors, got 3/)
    expect(() => batch.backward([grads[1], grads[0], grads[2], grads[3]])).toThrow(/gradient 0 has shape \[10\], expected \[8, 4, 3, 3\]/)
    expect(() => batch.backward([{} as never])).toThrow(TypeError)
    ;[...weights, ...grads].forEach((t) => t.dispose())
  })

  it('an all-zero weight has a zero gradient, never NaN', async () => {
    const device = getDevice()
    using w = device.zeros([4, 3, 2, 2])
    using g = device.randn([4, 3, 2, 2], { seed: 1 })
    using bssn = new BSSN([w])
    bssn.forward()
    const [dw] = bssn.backward([g])
    expect((await dw.toArray()).every((x) => x === 0)).toBe(true)
  })
})
