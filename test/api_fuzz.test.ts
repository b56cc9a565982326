// Every public entry point, called with bad arguments (null, undefined, strings, numbers out of range, objects,
// wrong-shape and disposed tensors, one argument at a time): it may accept what it can use, but whatever it throws
// (or a promise it returns rejects with) is an Error with a `code` starting with ERR_BSSN_, never a bare TypeError
// from deep inside ("cannot read properties of null (reading 'join')").
import { afterAll, expect, it } from 'vitest'

import {
  Adam,
  BatchNorm2d,
  BSSN,
  bssnNormalize,
  Conv2d,
  ConvTranspose2d,
  Device,
  F,
  fans,
  Flatten,
  ganStep,
  hingeLossD,
  hingeLossG,
  initTensor,
  keep,
  LeakyReLU,
  Linear,
  mseLoss,
  noGrad,
  ReLU,
  Reshape,
  Sequential,
  SGD,
  SpectralNorm,
  Tensor,
  tidy,
} from '../src/index.js'

const d = Device.cpu()
const made: Array<{ dispose(): void }> = []
const t = (shape: number[], grad = false): Tensor => {
  const x = d.randn(shape, { seed: shape.length + shape[0] })
  x.requiresGrad = grad
  made.push(x)
  return x
}
afterAll(() => made.forEach((m) => m.dispose()))

const disposed = (): Tensor => {
  const x = d.randn([2, 3], { seed: 1 })
  x.dispose()
  return x
}
const loss = (): Tensor => F.sum(F.mul(t([2, 3], true), t([2, 3])))

// The bad values every argument gets in turn.
const bad: Array<[string, () => unknown]> = [
  ['null', () => null],
  ['undefined', () => undefined],
  ['a string', () => 'x'],
  ['NaN', () => NaN],
  ['-1', () => -1],
  ['1.5', () => 1.5],
  ['2 ** 40', () => 2 ** 40],
  ['an empty object', () => ({})],
  ['an empty array', () => []],
  ['an array of null', () => [null]],
  ['a function', () => () => 0],
  ['a 1-D tensor', () => t([7])],
  ['a 5-D tensor', () => t([1, 2, 1, 3, 1])],
  ['a disposed tensor', disposed],
]

interface Entry {
  name: string
  // Good arguments; each is replaced in turn by every bad value.
  args: () => unknown[]
  call: (...args: any[]) => unknown
  // The good call may fail with a coded error (no GPU here).
  mayFail?: boolean
  // Argument 0 is the receiver of a method: a tensor gets only the tensor bad values; an object is left alone.
  receiver?: 'tensor' | 'object'
}

const conv = () => [t([1, 2, 5, 5]), t([3, 2, 3, 3]), t([3]), { stride: 1, padding: 1 }]
const convT = () => [t([1, 2, 5, 5]), t([2, 3, 3, 3]), t([3]), { stride: 2, padding: 1, outputPadding: 1 }]
const bnState = () => ({ runningMean: t([3]), runningVar: d.tensor([1, 1, 1], [3]) })
const linearModel = () => {
  const m = new Linear(3, 4, { seed: 1 })
  made.push(m)
  return m
}

const entries: Entry[] = [
  // nn/functional
  ...(['relu', 'tanh', 'sigmoid', 'neg', 'sum', 'mean'] as const).map((f) => ({ name: `F.${f}`, args: () => [t([2, 3])], call: F[f] })),
  { name: 'F.leakyRelu', args: () => [t([2, 3]), 0.2], call: F.leakyRelu },
  { name: 'F.scale', args: () => [t([2, 3]), 2], call: F.scale },
  { name: 'F.addScalar', args: () => [t([2, 3]), 2], call: F.addScalar },
  ...(['add', 'sub', 'mul'] as const).map((f) => ({ name: `F.${f}`, args: () => [t([2, 3]), t([2, 3])], call: F[f] })),
  { name: 'F.matmul', args: () => [t([2, 3]), t([3, 4]), { transA: false, transB: false }], call: F.matmul },
  { name: 'F.addBias', args: () => [t([2, 3]), t([3]), 1], call: F.addBias },
  { name: 'F.linear', args: () => [t([2, 3]), t([4, 3]), t([4])], call: F.linear },
  { name: 'F.linear (activation)', args: () => [t([2, 3]), t([4, 3]), t([4]), { activation: 'leakyRelu', slope: 0.2 }], call: F.linear },
  { name: 'F.conv2d', args: conv, call: F.conv2d },
  { name: 'F.conv2d (activation)', args: () => [t([1, 2, 5, 5]), t([3, 2, 3, 3]), t([3]), { padding: 1, activation: 'tanh' }], call: F.conv2d },
  { name: 'F.convTranspose2d', args: convT, call: F.convTranspose2d },
  {
    name: 'F.batchNorm',
    args: () => [t([2, 3, 4, 4]), t([3]), t([3]), bnState(), { training: true, momentum: 0.1, eps: 1e-5 }],
    call: F.batchNorm,
  },
  // losses
  { name: 'hingeLossD', args: () => [t([4, 1]), t([4, 1])], call: hingeLossD },
  { name: 'hingeLossG', args: () => [t([4, 1])], call: hingeLossG },
  { name: 'mseLoss', args: () => [t([4, 1]), t([4, 1])], call: mseLoss },
  // Tensor
  { name: 'Tensor.backward', receiver: 'tensor', args: () => [loss(), undefined], call: (x: Tensor, g: Tensor) => x.backward(g) },
  { name: 'Tensor.backward (gradient)', receiver: 'tensor', args: () => [F.mul(t([2, 3], true), t([2, 3])), t([2, 3])], call: (x: Tensor, g: Tensor) => x.backward(g) },
  { name: 'Tensor.reshape', receiver: 'tensor', args: () => [t([2, 3]), [3, 2]], call: (x: Tensor, s: number[]) => x.reshape(s) },
  { name: 'Tensor.toArray', receiver: 'tensor', args: () => [t([2, 3])], call: (x: Tensor) => x.toArray() },
  { name: 'Tensor.clone', receiver: 'tensor', args: () => [t([2, 3])], call: (x: Tensor) => x.clone() },
  { name: 'Tensor.copyFrom', receiver: 'tensor', args: () => [t([2, 3]), t([2, 3])], call: (x: Tensor, s: Tensor) => x.copyFrom(s) },
  { name: 'Tensor.share', receiver: 'tensor', args: () => [t([2, 3])], call: (x: Tensor) => x.share() },
  { name: 'Tensor.dispose', receiver: 'tensor', args: () => [t([2, 3])], call: (x: Tensor) => x.dispose() },
  { name: 'Tensor.open', args: () => [t([2, 3]).share(), d], call: (s: never, dev: Device) => Tensor.open(s, dev).dispose() },
  // Device
  { name: 'Device.tensor', args: () => [[1, 2, 3, 4, 5, 6], [2, 3]], call: (data: number[], s: number[]) => d.tensor(data, s) },
  { name: 'Device.zeros', args: () => [[2, 3]], call: (s: number[]) => d.zeros(s) },
  { name: 'Device.randn', args: () => [[2, 3], { seed: 1, std: 2 }], call: (s: number[], o: object) => d.randn(s, o) },
  { name: 'Device.rand', args: () => [[2, 3], { seed: 1, low: 0, high: 2 }], call: (s: number[], o: object) => d.rand(s, o) },
  { name: 'Device.open', args: () => [t([2, 3]).share()], call: (s: never) => d.open(s) },
  { name: 'Device.profileKernels', args: () => [false], call: (on: boolean) => d.profileKernels(on) },
  { name: 'Device.equals', args: () => [d], call: (o: Device) => d.equals(o) },
  { name: 'Device.cuda', args: () => [0], call: (i: number) => Device.cuda(i), mayFail: true },
  { name: 'Device.synchronize', args: () => [], call: () => d.synchronize() },
  // normalize
  { name: 'new BSSN', args: () => [[t([4, 3])], { mode: 'bssn' }], call: (w: Tensor[], o: object) => made.push(new BSSN(w, o)) },
  {
    name: 'BSSN.backward',
    receiver: 'object',
    args: () => {
      const b = new BSSN([t([4, 3])])
      made.push(b)
      b.forward()
      return [b, [t([4, 3])]]
    },
    call: (b: BSSN, g: Tensor[]) => b.backward(g),
  },
  { name: 'BSSN.getState', receiver: 'object', args: () => [new BSSN([t([4, 3])]), 0], call: (b: BSSN, i: number) => b.getState(i) },
  {
    name: 'BSSN.setState',
    receiver: 'object',
    args: () => [new BSSN([t([4, 3])]), 0, { u: new Float32Array(4) }],
    call: (b: BSSN, i: number, s: never) => b.setState(i, s),
  },
  { name: 'bssnNormalize', args: () => [t([4, 3]), { mode: 'sn', training: true }], call: bssnNormalize as (...a: unknown[]) => unknown },
  // nn modules
  { name: 'new Linear', args: () => [3, 4, { bias: true, seed: 1, init: 'xavierUniform' }], call: (a: number, b: number, o: object) => made.push(new Linear(a, b, o)) },
  { name: 'Linear.forward', receiver: 'object', args: () => [linearModel(), t([2, 3])], call: (m: Linear, x: Tensor) => m.forward(x) },
  {
    name: 'new Conv2d',
    args: () => [2, 3, 3, { stride: 1, padding: 1, seed: 1 }],
    call: (a: number, b: number, k: number, o: object) => made.push(new Conv2d(a, b, k, o)),
  },
  {
    name: 'Conv2d.forward',
    receiver: 'object',
    args: () => {
      const m = new Conv2d(2, 3, 3, { padding: 1, seed: 1 })
      made.push(m)
      return [m, t([1, 2, 5, 5])]
    },
    call: (m: Conv2d, x: Tensor) => m.forward(x),
  },
  {
    name: 'new ConvTranspose2d',
    args: () => [2, 3, 3, { stride: 2, padding: 1, outputPadding: 1, seed: 1 }],
    call: (a: number, b: number, k: number, o: object) => made.push(new ConvTranspose2d(a, b, k, o)),
  },
  { name: 'new BatchNorm2d', args: () => [3, { eps: 1e-5, momentum: 0.1 }], call: (n: number, o: object) => made.push(new BatchNorm2d(n, o)) },
  {
    name: 'BatchNorm2d.forward',
    receiver: 'object',
    args: () => {
      const m = new BatchNorm2d(3)
      made.push(m)
      return [m, t([2, 3, 4, 4])]
    },
    call: (m: BatchNorm2d, x: Tensor) => m.forward(x),
  },
  { name: 'new Sequential', args: () => [new ReLU(), new Flatten()], call: (a: ReLU, b: Flatten) => new Sequential(a, b) },
  {
    name: 'Sequential.forward',
    receiver: 'object',
    args: () => [new Sequential(linearModel(), new ReLU()), t([2, 3])],
    call: (m: Sequential, x: Tensor) => m.forward(x),
  },
  { name: 'Flatten.forward', args: () => [t([2, 3, 4])], call: (x: Tensor) => new Flatten().forward(x) },
  { name: 'Reshape.forward', args: () => [[4, 3], t([2, 12])], call: (s: number[], x: Tensor) => new Reshape(s).forward(x) },
  { name: 'LeakyReLU.forward', args: () => [0.2, t([2, 3])], call: (s: number, x: Tensor) => new LeakyReLU(s).forward(x) },
  {
    name: 'new SpectralNorm',
    args: () => [linearModel(), { mode: 'sn' }],
    call: (m: Linear, o: object) => made.push(new SpectralNorm(m, o)),
  },
  {
    name: 'SpectralNorm.forward',
    receiver: 'object',
    args: () => {
      const sn = new SpectralNorm(linearModel())
      made.push(sn)
      return [sn]
    },
    call: (sn: SpectralNorm) => sn.forward(),
  },
  { name: 'initTensor', args: () => [d, [4, 3], 'kaimingNormal', { seed: 1, gain: 1 }], call: initTensor },
  { name: 'fans', args: () => [[4, 3, 3, 3]], call: fans },
  // autograd
  { name: 'tidy', args: () => [() => t([2])], call: tidy },
  { name: 'keep', args: () => [t([2])], call: keep },
  { name: 'noGrad', args: () => [() => 1], call: noGrad },
  // train
  { name: 'new Adam', args: () => [[t([2], true)], { lr: 0.1, betas: [0.5, 0.9], eps: 1e-8 }], call: (p: Tensor[], o: object) => new Adam(p, o) },
  { name: 'new SGD', args: () => [[t([2], true)], { lr: 0.1, momentum: 0.9 }], call: (p: Tensor[], o: never) => new SGD(p, o) },
  {
    name: 'Adam.loadState',
    receiver: 'object',
    args: () => {
      const p = t([2], true)
      return [new Adam([p]), 1, [{ m: t([2]), v: t([2]) }]]
    },
    call: (a: Adam, step: number, moments: never) => a.loadState(step, moments),
  },
  {
    name: 'ganStep',
    args: () => {
      const generator = new Sequential(new Linear(2, 3, { seed: 1 }))
      const discriminator = new Sequential(new Linear(3, 1, { seed: 2 }))
      made.push(generator, discriminator)
      return [
        {
          generator,
          discriminator,
          optG: new SGD(generator.parameters(), { lr: 0.1 }),
          optD: new SGD(discriminator.parameters(), { lr: 0.1 }),
          sampleZ: () => d.randn([4, 2], { seed: 3 }),
          sampleReal: () => d.randn([4, 3], { seed: 4 }),
        },
      ]
    },
    call: ganStep as (...a: unknown[]) => unknown,
  },
]

// What a call did: 'ok', or the thrown (or rejected) error's class and code.
async function outcome(call: () => unknown): Promise<string> {
  let result: unknown
  try {
    result = call()
  } catch (e) {
    return describeError(e, 'threw')
  }
  if (result instanceof Promise) {
    try {
      await result
    } catch (e) {
      return describeError(e, 'rejected')
    }
  }
  return 'ok'
}

function describeError(e: unknown, how: string): string {
  const code = (e as { code?: unknown })?.code
  if (e instanceof Error && typeof code === 'string' && code.startsWith('ERR_BSSN_')) return 'coded'
  return `${how} ${e instanceof Error ? e.constructor.name : typeof e} without a bssn code: ${String(e)}`
}

it('every public entry point answers bad arguments with coded errors only', async () => {
  const uncoded: string[] = []
  for (const entry of entries) {
    const good = entry.args()
    expect(await outcome(() => entry.call(...good)), `${entry.name} with good arguments`).toMatch(entry.mayFail ? /^(ok|coded)$/ : /^ok$/)
    for (let i = 0; i <= good.length; i++) {
      for (const [what, value] of bad) {
        if (i === 0 && (entry.receiver === 'object' || (entry.receiver === 'tensor' && !what.includes('tensor')))) continue
        const args = entry.args()
        args[i] = value()
        const result = await outcome(() => entry.call(...args))
        if (result !== 'ok' && result !== 'coded') uncoded.push(`${entry.name}: argument ${i} ${what}: ${result}`)
      }
    }
  }
  expect(uncoded).toEqual([])
})

it('promises reject rather than throw: toArray() of a disposed tensor, and every async method', async () => {
  const x = disposed()
  let sync: unknown
  let promise: Promise<unknown> | undefined
  try {
    promise = x.toArray()
  } catch (e) {
    sync = e
  }
  expect(sync).toBeUndefined()
  await expect(promise).rejects.toMatchObject({ code: 'ERR_BSSN_DISPOSED' })
  const b = new BSSN([t([4, 3])])
  b.dispose()
  for (const call of [() => b.sigmas(), () => b.getState(0), () => new BSSN([t([4, 3])]).getState(-1)]) {
    let p: Promise<unknown> | undefined
    expect(() => (p = call())).not.toThrow()
    await expect(p).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_BSSN_/) })
  }
})

it('dispose() never throws and is idempotent: tensors, modules, BSSN, optimizers', () => {
  const x = t([2, 3])
  x.dispose()
  expect(() => x.dispose()).not.toThrow()
  const b = new BSSN([t([4, 3])])
  b.dispose()
  expect(() => b.dispose()).not.toThrow()
  const m = new Linear(3, 4)
  m.dispose()
  expect(() => m.dispose()).not.toThrow()
  const opt = new Adam(m.parameters())
  opt.dispose()
  expect(() => opt.dispose()).not.toThrow()
})
