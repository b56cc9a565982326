// CUDA against the CPU backend (the reference implementation) on fresh random inputs, whole discriminators
// included, plus the CUDA-only failure paths. Skips visibly without a usable GPU; fails under BSSN_REQUIRE_CUDA=1.
import { describe, expect, it } from 'vitest'

import { BSSN, bssnNormalize, Device, normalizationModes, type Tensor } from '../../src/index.js'
import { snganCnnD, snganResnetD, mlp2dD, bigganDeep } from '../../src/cli/workloads.js'
import { cudaSkipReason } from '../helpers/backends.js'
import { expectCloseArray, expectCloseNumber } from '../helpers/expect.js'
import { randomArray } from '../helpers/random.js'
import { settledStats } from '../helpers/memory.js'

const reason = cudaSkipReason()
const suite = reason === undefined ? describe : describe.skip

suite(`CUDA matches the CPU backend${reason ? ` (skipped: ${reason})` : ''}`, () => {
  const cpu = Device.cpu()
  const cuda = () => Device.cuda(0)

  // The same host data on both devices.
  function pair(shape: number[], seed: number, scale = 1): [Tensor, Tensor] {
    const data = randomArray(shape.reduce((a, b) => a * b, 1), seed, scale)
    return [cpu.tensor(data, shape), cuda().tensor(data, shape)]
  }

  async function compare(shapes: number[][], options: ConstructorParameters<typeof BSSN>[1], steps: number, seed: number) {
    const pairs = shapes.map((s, i) => pair(s, seed + i, 0.1))
    const a = new BSSN(pairs.map((p) => p[0]), options)
    const b = new BSSN(pairs.map((p) => p[1]), options)
    try {
      for (let step = 0; step < steps; step++) {
        const outA = a.forward()
        const outB = b.forward()
        const [sa, sb] = await Promise.all([a.sigmas(), b.sigmas()])
        for (let i = 0; i < shapes.length; i++) {
          expectCloseNumber(sb[i].sigma1, sa[i].sigma1, 1e-5, `layer ${i} sigma1`)
          expectCloseNumber(sb[i].divisor, sa[i].divisor, 1e-5, `layer ${i} divisor`)
          if (sa[i].sigma2 !== undefined) expectCloseNumber(sb[i].sigma2, sa[i].sigma2!, 1e-5, `layer ${i} sigma2`)
          expectCloseArray(await outB[i].toArray(), await outA[i].toArray(), 2e-5, `layer ${i} output`)
        }
      }
      for (let i = 0; i < shapes.length; i++) {
        const [ga, gb] = await Promise.all([a.getState(i), b.getState(i)])
        expectCloseArray(gb.u, ga.u, 1e-4, `layer ${i} u`)
        if (ga.u2) expectCloseArray(gb.u2!, ga.u2, 1e-4, `layer ${i} u2`)
      }
    } finally {
      a.dispose()
      b.dispose()
      pairs.flat().forEach((t) => t.dispose())
    }
  }

  it.each(normalizationModes)('mixed shapes, dims and kinds in one batch: %s', async (mode) => {
    const shapes = [[16, 3, 3, 3], [32, 16, 4, 4], [10], [24, 32], [1, 24], [8, 4, 3, 3, 2], [6, 9, 1, 1], [300, 1], [1, 1]]
    const dims = [0, 1, 0, 1, 0, 2, 0, 0, 0]
    const scale = mode === 'ssn' || mode === 'bssn' ? 1.3 : 1
    await compare(shapes, { mode, scale, dims, seed: 4, powerIterations: 2 }, 3, 10)
  })

  it.each([mlp2dD, snganCnnD, snganResnetD])('whole discriminator: $name', async (workload) => {
    await compare(workload.shapes, { mode: 'bssn' }, 2, 50)
  })

  // Under compute-sanitizer this one would take many minutes: the other workloads cover the same kernels.
  it.skipIf(process.env.BSSN_UNDER_SANITIZER === '1')('BigGAN-128 D (88 M weights)', async () => {
    await compare(bigganDeep.shapes, { mode: 'bssn', warmupIterations: 2 }, 1, 90)
  }, 300_000)

  // Under AddressSanitizer (emulated device) the first four SNGAN layers and its linear one: the same kernels and plans (streamed,
  // with a dim-2 layer), on less data; all of SNGAN D took 115-153 s per bidirectional mode there in CI.
  const backwardLayers = process.env.BSSN_UNDER_SANITIZER === '1' ? [...snganCnnD.shapes.slice(0, 4), snganCnnD.shapes.at(-1)!] : snganCnnD.shapes
  it.each(normalizationModes)('backward matches the CPU backend: %s', async (mode) => {
    const shapes = [...backwardLayers, [10], [6, 9, 1, 1], [5, 3, 7]]
    const dims = shapes.map((s) => (s.length === 3 ? 2 : 0))
    const weights = shapes.map((s, i) => pair(s, 200 + i, 0.1))
    const grads = shapes.map((s, i) => pair(s, 300 + i))
    const scale = mode === 'ssn' || mode === 'bssn' ? 1.3 : 1
    const a = new BSSN(weights.map((p) => p[0]), { mode, scale, dims })
    const b = new BSSN(weights.map((p) => p[1]), { mode, scale, dims })
    try {
      a.forward()
      b.forward()
      const ga = a.backward(grads.map((p) => p[0]))
      const gb = b.backward(grads.map((p) => p[1]))
      for (let i = 0; i < shapes.length; i++) expectCloseArray(await gb[i].toArray(), await ga[i].toArray(), 5e-5, `layer ${i} dW`)
    } finally {
      a.dispose()
      b.dispose()
      ;[...weights, ...grads].flat().forEach((t) => t.dispose())
    }
    // SNGAN CNN D's shapes with a dim-2 layer take the streamed kernels, planned for 132 SMs.
  }, 600_000)

  it('eval mode and updateSigmas', async () => {
    const [wa, wb] = pair([64, 32, 3, 3], 7)
    using a = new BSSN([wa], { seed: 1 })
    using b = new BSSN([wb], { seed: 1 })
    a.forward()
    b.updateSigmas()
    a.eval()
    b.eval()
    expectCloseArray(await b.forward()[0].toArray(), await a.forward()[0].toArray(), 2e-5)
    expect(await b.getState(0).then((s) => s.u.length)).toBe(64)
    wa.dispose()
    wb.dispose()
  })

  it('randn matches the CPU stream of the same seed', async () => {
    using a = cpu.randn([1000], { seed: 77, std: 2 })
    using b = cuda().randn([1000], { seed: 77, std: 2 })
    expectCloseArray(await b.toArray(), await a.toArray(), 1e-6)
  })

  it('all-zero weights give zeros on the GPU too', async () => {
    using w = cuda().zeros([8, 4, 3, 3])
    using out = bssnNormalize(w)
    expect((await out.toArray()).every((x) => x === 0)).toBe(true)
  })

  // compute-sanitizer reports the deliberately failing 4 TiB request as an API error, failing its run.
  it.skipIf(process.env.BSSN_UNDER_SANITIZER === '1')('out of memory is an Error naming the call and the size; the device stays usable', async () => {
    const device = cuda()
    expect(() => device.zeros([2 ** 40])).toThrow(/cudaMallocAsync: out of memory.*requested 4398046511104 bytes/)
    // the failed allocation must not surface as an error of the next kernel launch
    using t = device.randn([4], { seed: 1 })
    expect((await t.toArray()).length).toBe(4)
  })

  it('mixing devices in one batch is a TypeError', () => {
    using a = cpu.zeros([2, 2])
    using b = cuda().zeros([2, 2])
    expect(() => new BSSN([a, b])).toThrow(TypeError)
  })

  it('creating and disposing tensors in a loop keeps memory flat', async () => {
    const device = cuda()
    const base = await settledStats(device)
    for (let i = 0; i < 1000; i++) device.zeros([1024]).dispose()
    await device.synchronize()
    expect(device.memoryStats()).toMatchObject({ allocatedBytes: base.allocatedBytes, liveTensors: base.liveTensors })
  })

  it('the device name says what it is', () => {
    expect(cuda().name).toMatch(/\(cuda:0\)$/)
    expect(Device.auto().kind).toBe('cuda')
  })
})
