// A layer's bias fused with its activation (ops.biasActivation and its backward, the `activation` option, the
// Sequential peephole): bit for bit the unfused addBias + activation pair, against float64, and fewer launches.
import { describe, expect, it } from 'vitest'

import { Conv2d, Device, F, LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Tanh, type Module, type Tensor } from '../src/index.js'
import { BinaryOpCode, native, UnaryOpCode } from '../src/native.js'
import { emulated, forEachBackend } from './helpers/backends.js'
import { costSkipReason } from './helpers/cost.js'
import { expectCloseArray } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'

const ops = () => native().ops
const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length)
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1)

const activations = [
  { name: 'relu', op: UnaryOpCode.Relu, p: 0, f: (v: number) => Math.max(v, 0), d: (v: number) => (v > 0 ? 1 : 0) },
  { name: 'leakyRelu', op: UnaryOpCode.LeakyRelu, p: 0.1, f: (v: number) => (v > 0 ? v : 0.1 * v), d: (v: number) => (v > 0 ? 1 : 0.1) },
  { name: 'tanh', op: UnaryOpCode.Tanh, p: 0, f: Math.tanh, d: (v: number) => 1 - Math.tanh(v) ** 2 },
  { name: 'sigmoid', op: UnaryOpCode.Sigmoid, p: 0, f: (v: number) => 1 / (1 + Math.exp(-v)), d: (v: number) => Math.exp(-v) / (1 + Math.exp(-v)) ** 2 },
]
// [outer, channels, inner] shapes: odd sizes, a linear layer's [N, C] (inner 1) and one channel.
const shapes = [
  [3, 5, 7],
  [9, 13],
  [2, 1, 3, 5],
]

forEachBackend((getDevice) => {
  describe('ops.biasActivation and its backward', () => {
    const cases = activations.flatMap((a) => shapes.map((shape, s) => ({ ...a, shape, seed: 10 * s + a.op })))
    it.each(cases)('$name over [$shape]: the unfused pair bit for bit, and float64', async ({ op, p, f, d, shape, seed }) => {
      const device = getDevice()
      const n = size(shape)
      const channels = shape[1]
      const inner = n / (shape[0] * channels)
      const poisoned = (s: readonly number[]) => device.tensor(new Float32Array(size(s)).fill(Number.NaN), s)
      const xs = randomArray(n, seed)
      const bs = randomArray(channels, seed + 1, 0.5)
      const dys = randomArray(n, seed + 2)
      const db0s = randomArray(channels, seed + 3)
      using x = device.tensor(xs, shape)
      using b = device.tensor(bs, [channels])
      using dy = device.tensor(dys, shape)
      // Fused.
      using y = poisoned(shape)
      ops().biasActivation(op, p, x.handle, b.handle, y.handle, 1)
      using dx = poisoned(shape)
      using db = poisoned([channels])
      ops().biasActivationBackward(op, p, y.handle, dy.handle, dx.handle, db.handle, false, 1)
      using dbAcc = device.tensor(db0s, [channels])
      ops().biasActivationBackward(op, p, y.handle, dy.handle, null, dbAcc.handle, true, 1)
      using dxOnly = poisoned(shape)
      ops().biasActivationBackward(op, p, y.handle, dy.handle, dxOnly.handle, null, false, 1)
      // Unfused: addBias, the activation; its backward from the pre-activation (relu) or y, then sumToBias.
      using pre = poisoned(shape)
      ops().addBias(x.handle, b.handle, pre.handle, 1)
      using yu = poisoned(shape)
      ops().unary(op, p, pre.handle, yu.handle)
      using dxu = poisoned(shape)
      ops().unaryBackward(op, p, pre.handle, yu.handle, dy.handle, dxu.handle)
      using dbu = poisoned([channels])
      ops().sumToBias(dxu.handle, dbu.handle, 1)
      using dbAccU = device.tensor(db0s, [channels])
      ops().binary(BinaryOpCode.Add, dbAccU.handle, dbu.handle, dbAccU.handle)

      const [yv, yuv, dxv, dxuv, dbv, dbuv, accv, accuv, dxOnlyv] = await Promise.all(
        [y, yu, dx, dxu, db, dbu, dbAcc, dbAccU, dxOnly].map((t) => t.toArray()),
      )
      expect(bits(yv)).toEqual(bits(yuv))
      expect(bits(dxv)).toEqual(bits(dxuv))
      expect(bits(dbv)).toEqual(bits(dbuv))
      expect(bits(accv)).toEqual(bits(accuv))
      expect(bits(dxOnlyv)).toEqual(bits(dxuv))
      // float64: y = f(x + b), dx = dy f'(x + b), db = the sum of dx over outer and inner.
      const pre64 = Float64Array.from(xs, (v, i) => v + bs[Math.floor(i / inner) % channels])
      const dx64 = pre64.map((v, i) => dys[i] * d(v))
      const db64 = new Float64Array(channels)
      dx64.forEach((v, i) => (db64[Math.floor(i / inner) % channels] += v))
      expectCloseArray(yv, pre64.map(f), 1e-6, 'y')
      expectCloseArray(dxv, dx64, 1e-6, 'dx')
      expectCloseArray(dbv, db64, 1e-6, 'db')
      expectCloseArray(accv, db64.map((v, c) => v + db0s[c]), 1e-6, 'db accumulated')
    })

    it('refuses what it cannot compute: a negative slope backward, a non-activation, a wrong bias size', () => {
      const device = getDevice()
      using y = device.randn([2, 3], { seed: 1 })
      using dy = device.randn([2, 3], { seed: 2 })
      using db = device.zeros([3])
      using bad = device.zeros([4])
      expect(() => ops().biasActivationBackward(UnaryOpCode.LeakyRelu, -0.5, y.handle, dy.handle, null, db.handle, false, 1)).toThrow(RangeError)
      expect(() => ops().biasActivation(UnaryOpCode.Scale, 2, y.handle, db.handle, y.handle, 1)).toThrow()
      expect(() => ops().biasActivation(UnaryOpCode.Relu, 0, y.handle, bad.handle, y.handle, 1)).toThrow(RangeError)
      expect(() => ops().biasActivationBackward(UnaryOpCode.Relu, 0, y.handle, dy.handle, null, bad.handle, false, 1)).toThrow(RangeError)
    })
  })

  // Output and every gradient of `run(input)` under loss = sum(G * out).
  async function outputsAndGrads(device: Device, run: (x: Tensor) => Tensor, params: Tensor[], xs: Float32Array, shape: number[], seed: number) {
    using x = device.tensor(xs, shape)
    x.requiresGrad = true
    for (const t of params) {
      t.grad?.dispose()
      t.grad = undefined
    }
    const out = run(x)
    using g = device.tensor(randomArray(out.size, seed), out.shape)
    using loss = F.sum(F.mul(out, g))
    loss.backward()
    const values = await Promise.all([out, x.grad!, ...params.map((t) => t.grad!)].map((t) => t.toArray()))
    out.dispose()
    x.grad!.dispose()
    return values
  }

  describe('the activation option and the Sequential peephole', () => {
    it.each(activations.map((a) => a.name as F.Activation))('conv2d and linear with activation %s: the unfused layers bit for bit', async (activation) => {
      const device = getDevice()
      const slope = activation === 'leakyRelu' ? 0.2 : undefined
      const unfused = (t: Tensor) =>
        activation === 'relu' ? F.relu(t) : activation === 'leakyRelu' ? F.leakyRelu(t, 0.2) : activation === 'tanh' ? F.tanh(t) : F.sigmoid(t)
      using w = device.tensor(randomArray(4 * 3 * 3 * 3, 5, 0.3), [4, 3, 3, 3])
      using b = device.tensor(randomArray(4, 6, 0.3), [4])
      using lw = device.tensor(randomArray(5 * 7, 7, 0.3), [5, 7])
      using lb = device.tensor(randomArray(5, 8, 0.3), [5])
      for (const t of [w, b, lw, lb]) t.requiresGrad = true
      const xs = randomArray(2 * 3 * 5 * 7, 9)
      const conv = { stride: 2, padding: 1 }
      const fused = await outputsAndGrads(device, (x) => F.conv2d(x, w, b, { ...conv, activation, slope }), [w, b], xs, [2, 3, 5, 7], 11)
      const pair = await outputsAndGrads(device, (x) => unfused(F.conv2d(x, w, b, conv)), [w, b], xs, [2, 3, 5, 7], 11)
      fused.forEach((v, i) => expect(bits(v), `conv2d output/gradient ${i}`).toEqual(bits(pair[i])))
      const ls = randomArray(3 * 7, 12)
      const lf = await outputsAndGrads(device, (x) => F.linear(x, lw, lb, { activation, slope }), [lw, lb], ls, [3, 7], 13)
      const lp = await outputsAndGrads(device, (x) => unfused(F.linear(x, lw, lb)), [lw, lb], ls, [3, 7], 13)
      lf.forEach((v, i) => expect(bits(v), `linear output/gradient ${i}`).toEqual(bits(lp[i])))
      for (const t of [w, b, lw, lb]) t.grad?.dispose()
    })

    it('rejects a bad activation option', () => {
      const device = getDevice()
      using x = device.zeros([2, 3])
      using w = device.zeros([4, 3])
      using b = device.zeros([4])
      expect(() => F.linear(x, w, b, { activation: 'gelu' as F.Activation })).toThrow(TypeError)
      expect(() => F.linear(x, w, b, { slope: 0.1 })).toThrow(TypeError)
      expect(() => F.linear(x, w, b, { activation: 'tanh', slope: 0.1 })).toThrow(TypeError)
      expect(() => F.linear(x, w, b, { activation: 'leakyRelu', slope: Number.NaN })).toThrow(RangeError)
    })

    // Conv2d + LeakyReLU twice (as the SNGAN discriminator), a negative slope (not fused), Linear + ReLU / Sigmoid.
    function model(device: Device): { net: Sequential; layers: Module[] } {
      const layers: Module[] = [
        new Conv2d(3, 4, 3, { padding: 1, device, seed: 1 }),
        new LeakyReLU(0.1),
        new Conv2d(4, 4, 3, { stride: 2, padding: 1, device, seed: 2 }),
        new LeakyReLU(0.1),
        new Conv2d(4, 2, 3, { padding: 1, device, seed: 3 }),
        new LeakyReLU(-0.3),
        new Conv2d(2, 3, 1, { device, seed: 4 }),
        new Tanh(),
      ]
      return { net: new Sequential(...layers), layers }
    }

    it('Sequential gives what its layers give one by one, bit for bit', async () => {
      const device = getDevice()
      const { net, layers } = model(device)
      const xs = randomArray(2 * 3 * 5 * 7, 21)
      const fused = await outputsAndGrads(device, (x) => net.forward(x), net.parameters(), xs, [2, 3, 5, 7], 22)
      const oneByOne = await outputsAndGrads(device, (x) => layers.reduce((h, l) => l.forward(h), x), net.parameters(), xs, [2, 3, 5, 7], 22)
      fused.forEach((v, i) => expect(bits(v), `output/gradient ${i}`).toEqual(bits(oneByOne[i])))
      const mlp = new Sequential(new Linear(6, 5, { device, seed: 5 }), new ReLU(), new Linear(5, 2, { device, seed: 6 }), new Sigmoid())
      const ms = randomArray(4 * 6, 23)
      const m1 = await outputsAndGrads(device, (x) => mlp.forward(x), mlp.parameters(), ms, [4, 6], 24)
      const m2 = await outputsAndGrads(device, (x) => mlp.layers.reduce((h, l) => l.forward(h), x), mlp.parameters(), ms, [4, 6], 24)
      m1.forEach((v, i) => expect(bits(v), `mlp output/gradient ${i}`).toEqual(bits(m2[i])))
      net.dispose()
      mlp.dispose()
    })

    it('Sequential runs one launch per fused layer each way (counted on the emulated device)', async (ctx) => {
        const device = getDevice()
        if (device.kind !== 'cuda' || !emulated || costSkipReason() !== undefined) ctx.skip()
        const emulator = native().emulator!
        const { net, layers } = model(device)
        const count = async (run: (x: Tensor) => Tensor) => {
          await outputsAndGrads(device, run, net.parameters(), randomArray(2 * 3 * 5 * 7, 31), [2, 3, 5, 7], 32) // warm-up
          await device.synchronize()
          emulator.cost.start()
          let cost
          try {
            await outputsAndGrads(device, run, net.parameters(), randomArray(2 * 3 * 5 * 7, 31), [2, 3, 5, 7], 32)
          } finally {
            cost = emulator.cost.stop()
          }
          const names: Record<string, number> = {}
          for (const k of cost.kernels) names[k.kernel] = (names[k.kernel] ?? 0) + 1
          return { launches: cost.launches, names }
        }
        const fused = await count((x) => net.forward(x))
        const oneByOne = await count((x) => layers.reduce((h, l) => l.forward(h), x))
        // Three pairs fused (the negative slope is not): each saves the activation's launch forward and the
        // activation's backward beside the bias reduction.
        expect(fused.names.biasActivationKernel, JSON.stringify(fused.names)).toBe(3)
        expect(fused.names.biasActivationBackwardKernel).toBe(3)
        expect(fused.names.addBiasKernel).toBe(1)
        expect(fused.names.sumToBiasKernel).toBe(1)
        expect(oneByOne.names.addBiasKernel).toBe(4)
        expect(oneByOne.launches - fused.launches, `${JSON.stringify(oneByOne.names)} vs ${JSON.stringify(fused.names)}`).toBeGreaterThanOrEqual(6)
        net.dispose()
    })
  })
})
