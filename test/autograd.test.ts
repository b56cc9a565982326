// Every differentiable op against a float64 reference: forward values, and gradients against central finite
// differences (in float64) of the reference, through loss = sum(G * op(inputs)) and loss.backward().
import { describe, expect, it } from 'vitest'

import { F, tidy, type Device, type Tensor } from '../src/index.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseArray } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'

type Ref = (inputs: Float64Array[]) => Float64Array

interface OpCase {
  name: string
  shapes: number[][]
  op: (inputs: Tensor[]) => Tensor
  ref: Ref
  outShape: number[]
}

const map = (f: (x: number) => number): Ref => ([x]) => x.map(f)
const zip = (f: (a: number, b: number) => number): Ref => ([a, b]) => a.map((x, i) => f(x, b[i]))
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x))

// [m, k] x [k, n] for row-major data with optional transposes.
function matmulRef(ta: boolean, tb: boolean, m: number, k: number, n: number): Ref {
  return ([a, b]) => {
    const out = new Float64Array(m * n)
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0
        for (let p = 0; p < k; p++) s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j])
        out[i * n + j] = s
      }
    return out
  }
}

// Direct float64 convolution (cross-correlation) of x [n, ci, h, w] with w [co, ci, kh, kw].
function convRef(n: number, ci: number, h: number, w: number, co: number, kh: number, kw: number, s: number, p: number, withBias: boolean): Ref {
  const oh = Math.floor((h + 2 * p - kh) / s) + 1
  const ow = Math.floor((w + 2 * p - kw) / s) + 1
  return ([x, wt, b]) => {
    const out = new Float64Array(n * co * oh * ow)
    for (let i = 0; i < n; i++)
      for (let o = 0; o < co; o++)
        for (let y = 0; y < oh; y++)
          for (let z = 0; z < ow; z++) {
            let acc = withBias ? b[o] : 0
            for (let c = 0; c < ci; c++)
              for (let ky = 0; ky < kh; ky++)
                for (let kx = 0; kx < kw; kx++) {
                  const iy = y * s - p + ky
                  const ix = z * s - p + kx
                  if (iy >= 0 && iy < h && ix >= 0 && ix < w) acc += x[((i * ci + c) * h + iy) * w + ix] * wt[((o * ci + c) * kh + ky) * kw + kx]
                }
            out[((i * co + o) * oh + y) * ow + z] = acc
          }
    return out
  }
}

// Transposed convolution: every input pixel scatters the kernel; x [n, ci, h, w], w [ci, co, kh, kw].
function convTransposeRef(n: number, ci: number, h: number, w: number, co: number, kh: number, kw: number, s: number, p: number): Ref {
  const oh = (h - 1) * s - 2 * p + kh
  const ow = (w - 1) * s - 2 * p + kw
  return ([x, wt]) => {
    const out = new Float64Array(n * co * oh * ow)
    for (let i = 0; i < n; i++)
      for (let c = 0; c < ci; c++)
        for (let y = 0; y < h; y++)
          for (let z = 0; z < w; z++)
            for (let o = 0; o < co; o++)
              for (let ky = 0; ky < kh; ky++)
                for (let kx = 0; kx < kw; kx++) {
                  const oy = y * s - p + ky
                  const ox = z * s - p + kx
                  if (oy >= 0 && oy < oh && ox >= 0 && ox < ow)
                    out[((i * co + o) * oh + oy) * ow + ox] += x[((i * ci + c) * h + y) * w + z] * wt[((c * co + o) * kh + ky) * kw + kx]
                }
    return out
  }
}

// Training-mode batch norm over [n, c, inner] in float64.
function batchNormRef(n: number, c: number, inner: number, eps: number): Ref {
  return ([x, g, b]) => {
    const out = new Float64Array(x.length)
    for (let ch = 0; ch < c; ch++) {
      const idx: number[] = []
      for (let i = 0; i < n; i++) for (let k = 0; k < inner; k++) idx.push((i * c + ch) * inner + k)
      const mean = idx.reduce((s, j) => s + x[j], 0) / idx.length
      const v = idx.reduce((s, j) => s + (x[j] - mean) ** 2, 0) / idx.length
      for (const j of idx) out[j] = ((x[j] - mean) / Math.sqrt(v + eps)) * g[ch] + b[ch]
    }
    return out
  }
}

const cases: OpCase[] = [
  {
    name: 'batchNorm (training)',
    shapes: [[3, 2, 2, 2], [2], [2]],
    op: ([x, g, b]) => F.batchNorm(x, g, b, { runningMean: x.device.zeros([2]), runningVar: x.device.zeros([2]) }, { training: true, eps: 1e-5 }),
    ref: batchNormRef(3, 2, 4, 1e-5),
    outShape: [3, 2, 2, 2],
  },
  { name: 'conv2d 3x3 pad 1', shapes: [[2, 3, 5, 5], [4, 3, 3, 3]], op: ([x, w]) => F.conv2d(x, w, undefined, { padding: 1 }), ref: convRef(2, 3, 5, 5, 4, 3, 3, 1, 1, false), outShape: [2, 4, 5, 5] },
  { name: 'conv2d 4x4 stride 2 pad 1 + bias', shapes: [[1, 2, 6, 6], [3, 2, 4, 4], [3]], op: ([x, w, b]) => F.conv2d(x, w, b, { stride: 2, padding: 1 }), ref: convRef(1, 2, 6, 6, 3, 4, 4, 2, 1, true), outShape: [1, 3, 3, 3] },
  { name: 'conv2d 1x1', shapes: [[2, 4, 3, 3], [5, 4, 1, 1]], op: ([x, w]) => F.conv2d(x, w), ref: convRef(2, 4, 3, 3, 5, 1, 1, 1, 0, false), outShape: [2, 5, 3, 3] },
  { name: 'convTranspose2d 4x4 stride 2 pad 1', shapes: [[2, 3, 3, 3], [3, 2, 4, 4]], op: ([x, w]) => F.convTranspose2d(x, w, undefined, { stride: 2, padding: 1 }), ref: convTransposeRef(2, 3, 3, 3, 2, 4, 4, 2, 1), outShape: [2, 2, 6, 6] },

  { name: 'relu', shapes: [[4, 5]], op: ([x]) => F.relu(x), ref: map((x) => Math.max(x, 0)), outShape: [4, 5] },
  { name: 'leakyRelu', shapes: [[4, 5]], op: ([x]) => F.leakyRelu(x, 0.2), ref: map((x) => (x > 0 ? x : 0.2 * x)), outShape: [4, 5] },
  { name: 'tanh', shapes: [[3, 7]], op: ([x]) => F.tanh(x), ref: map(Math.tanh), outShape: [3, 7] },
  { name: 'sigmoid', shapes: [[3, 7]], op: ([x]) => F.sigmoid(x), ref: map(sigmoid), outShape: [3, 7] },
  { name: 'scale', shapes: [[6]], op: ([x]) => F.scale(x, -2.5), ref: map((x) => -2.5 * x), outShape: [6] },
  { name: 'addScalar', shapes: [[6]], op: ([x]) => F.addScalar(x, 0.75), ref: map((x) => x + 0.75), outShape: [6] },
  { name: 'add', shapes: [[3, 4], [3, 4]], op: ([a, b]) => F.add(a, b), ref: zip((a, b) => a + b), outShape: [3, 4] },
  { name: 'sub', shapes: [[3, 4], [3, 4]], op: ([a, b]) => F.sub(a, b), ref: zip((a, b) => a - b), outShape: [3, 4] },
  { name: 'mul', shapes: [[3, 4], [3, 4]], op: ([a, b]) => F.mul(a, b), ref: zip((a, b) => a * b), outShape: [3, 4] },
  { name: 'sum', shapes: [[5, 3]], op: ([x]) => F.sum(x), ref: ([x]) => Float64Array.of(x.reduce((s, v) => s + v, 0)), outShape: [] },
  { name: 'mean', shapes: [[5, 3]], op: ([x]) => F.mean(x), ref: ([x]) => Float64Array.of(x.reduce((s, v) => s + v, 0) / 15), outShape: [] },
  { name: 'matmul', shapes: [[3, 4], [4, 5]], op: ([a, b]) => F.matmul(a, b), ref: matmulRef(false, false, 3, 4, 5), outShape: [3, 5] },
  { name: 'matmul A^T', shapes: [[4, 3], [4, 5]], op: ([a, b]) => F.matmul(a, b, { transA: true }), ref: matmulRef(true, false, 3, 4, 5), outShape: [3, 5] },
  { name: 'matmul B^T', shapes: [[3, 4], [5, 4]], op: ([a, b]) => F.matmul(a, b, { transB: true }), ref: matmulRef(false, true, 3, 4, 5), outShape: [3, 5] },
  { name: 'matmul A^T B^T', shapes: [[4, 3], [5, 4]], op: ([a, b]) => F.matmul(a, b, { transA: true, transB: true }), ref: matmulRef(true, true, 3, 4, 5), outShape: [3, 5] },
  {
    name: 'addBias (channels of [N, C, H])',
    shapes: [[2, 3, 4], [3]],
    op: ([x, b]) => F.addBias(x, b, 1),
    ref: ([x, b]) => x.map((v, i) => v + b[Math.floor(i / 4) % 3]),
    outShape: [2, 3, 4],
  },
  {
    name: 'linear',
    shapes: [[4, 3], [5, 3], [5]],
    op: ([x, w, b]) => F.linear(x, w, b),
    ref: ([x, w, b]) => matmulRef(false, true, 4, 3, 5)([x, w]).map((v, i) => v + b[i % 5]),
    outShape: [4, 5],
  },
  // Bias fused with the activation (one node, one launch each way), odd shapes.
  {
    name: 'linear + leakyRelu (fused)',
    shapes: [[5, 3], [7, 3], [7]],
    op: ([x, w, b]) => F.linear(x, w, b, { activation: 'leakyRelu', slope: 0.1 }),
    ref: ([x, w, b]) => matmulRef(false, true, 5, 3, 7)([x, w]).map((v, i) => v + b[i % 7]).map((v) => (v > 0 ? v : 0.1 * v)),
    outShape: [5, 7],
  },
  {
    name: 'linear + sigmoid (fused)',
    shapes: [[3, 4], [5, 4], [5]],
    op: ([x, w, b]) => F.linear(x, w, b, { activation: 'sigmoid' }),
    ref: ([x, w, b]) => matmulRef(false, true, 3, 4, 5)([x, w]).map((v, i) => sigmoid(v + b[i % 5])),
    outShape: [3, 5],
  },
  {
    name: 'conv2d 3x3 stride 2 pad 1 + bias + relu (fused)',
    shapes: [[2, 3, 5, 5], [3, 3, 3, 3], [3]],
    op: ([x, w, b]) => F.conv2d(x, w, b, { stride: 2, padding: 1, activation: 'relu' }),
    ref: (xs) => convRef(2, 3, 5, 5, 3, 3, 3, 2, 1, true)(xs).map((v) => Math.max(v, 0)),
    outShape: [2, 3, 3, 3],
  },
  {
    name: 'conv2d 3x3 pad 1 + bias + tanh (fused)',
    shapes: [[1, 2, 3, 5], [3, 2, 3, 3], [3]],
    op: ([x, w, b]) => F.conv2d(x, w, b, { padding: 1, activation: 'tanh' }),
    ref: (xs) => convRef(1, 2, 3, 5, 3, 3, 3, 1, 1, true)(xs).map(Math.tanh),
    outShape: [1, 3, 3, 5],
  },
  {
    name: 'convTranspose2d 4x4 stride 2 pad 1 + bias + leakyRelu (fused)',
    shapes: [[1, 3, 3, 3], [3, 2, 4, 4], [2]],
    op: ([x, w, b]) => F.convTranspose2d(x, w, b, { stride: 2, padding: 1, activation: 'leakyRelu', slope: 0.2 }),
    ref: ([x, w, b]) => convTransposeRef(1, 3, 3, 3, 2, 4, 4, 2, 1)([x, w]).map((v, i) => v + b[Math.floor(i / 36) % 2]).map((v) => (v > 0 ? v : 0.2 * v)),
    outShape: [1, 2, 6, 6],
  },
  { name: 'reshape', shapes: [[2, 6]], op: ([x]) => F.tanh(x.reshape([3, 4])), ref: map(Math.tanh), outShape: [3, 4] },
]

// d/d inputs of sum(G * ref(inputs)), by central differences in float64.
function numericGradients(ref: Ref, inputs: Float64Array[], g: Float64Array): Float64Array[] {
  const loss = (xs: Float64Array[]) => ref(xs).reduce((s, v, i) => s + v * g[i], 0)
  return inputs.map((x, which) =>
    x.map((_, k) => {
      const h = 1e-6 * Math.max(1, Math.abs(x[k]))
      const up = inputs.map((y, j) => (j === which ? y.map((v, i) => (i === k ? v + h : v)) : y))
      const down = inputs.map((y, j) => (j === which ? y.map((v, i) => (i === k ? v - h : v)) : y))
      return (loss(up) - loss(down)) / (2 * h)
    }),
  )
}

async function checkOp(device: Device, c: OpCase, seed: number) {
  const data = c.shapes.map((s, i) => randomArray(s.reduce((a, b) => a * b, 1), seed + i))
  const outSize = c.outShape.reduce((a, b) => a * b, 1)
  const g = randomArray(outSize, seed + 99)
  const inputs = data.map((d, i) => {
    const t = device.tensor(d, c.shapes[i])
    t.requiresGrad = true
    return t
  })
  const { value } = tidy(() => {
    const out = c.op(inputs)
    expect(out.shape).toEqual(c.outShape)
    const loss = F.sum(F.mul(out, device.tensor(g, c.outShape)))
    loss.backward()
    return { value: out }
  })
  const expected = c.ref(data.map((d) => Float64Array.from(d)))
  expectCloseArray(await value.toArray(), expected, 1e-5, `${c.name} forward`)
  const numeric = numericGradients(c.ref, data.map((d) => Float64Array.from(d)), Float64Array.from(g))
  for (const [i, t] of inputs.entries()) {
    expect(t.grad, `${c.name}: input ${i} has a gradient`).toBeDefined()
    expectCloseArray(await t.grad!.toArray(), numeric[i], 1e-4, `${c.name} d/dinput ${i}`)
  }
  value.dispose()
  inputs.forEach((t) => {
    t.grad?.dispose()
    t.dispose()
  })
}

forEachBackend((getDevice) => {
  describe('ops: forward against float64, gradients against finite differences', () => {
    // fp32 precision checks: TF32 convolutions (on by default, as PyTorch) would miss the 1e-5 bound by design;
    // test/tf32.test.ts checks them against TF32-rounded references.
    it.each(cases.map((c, i) => ({ ...c, seed: 1000 + i * 17 })))('$name', async (c) => {
      const device = getDevice()
      device.tf32 = { conv: false }
      try {
        await checkOp(device, c, c.seed)
      } finally {
        device.tf32 = { conv: true }
      }
    })
  })

  it('gradients accumulate across backward calls and through shared subexpressions', async () => {
    const device = getDevice()
    const x = device.tensor([0.5, -1.5, 2], [3])
    x.requiresGrad = true
    // y = x * x + x: dy/dx = 2x + 1, used twice in one graph
    tidy(() => F.sum(F.add(F.mul(x, x), x)).backward())
    expectCloseArray(await x.grad!.toArray(), [2, -2, 5], 1e-6)
    tidy(() => F.sum(F.add(F.mul(x, x), x)).backward())
    expectCloseArray(await x.grad!.toArray(), [4, -4, 10], 1e-6)
    x.grad!.dispose()
    x.dispose()
  })

  it('tidy frees the intermediates; only the result and gradients survive', async () => {
    const device = getDevice()
    const w = device.randn([16, 8], { seed: 1 })
    w.requiresGrad = true
    const x = device.randn([4, 8], { seed: 2 })
    await device.synchronize()
    const before = device.memoryStats().liveTensors
    const loss = tidy(() => {
      const l = F.mean(F.tanh(F.matmul(x, w, { transB: true })))
      l.backward()
      return l
    })
    // loss and w.grad are new; everything else from the step is gone
    expect(device.memoryStats().liveTensors).toBe(before + 2)
    expect(Number.isFinite((await loss.toArray())[0])).toBe(true)
    ;[loss, w.grad!, w, x].forEach((t) => t.dispose())
  })

  it('rejects misuse clearly', () => {
    const device = getDevice()
    using a = device.zeros([2, 3])
    using b = device.zeros([3, 2])
    expect(() => F.add(a, b)).toThrow(/shapes \[2, 3\] and \[3, 2\] differ/)
    expect(() => F.matmul(a, a)).toThrow(/inner dimensions differ/)
    expect(() => F.relu({} as Tensor)).toThrow(TypeError)
    expect(() => a.backward()).toThrow(/does not require gradients/)
    using v = device.zeros([3])
    v.requiresGrad = true
    expect(() => tidy(() => F.relu(v).backward())).toThrow(/one-element tensor/)
    expect(() => a.reshape([4])).toThrow(/cannot reshape \[2, 3\]/)
  })
})
