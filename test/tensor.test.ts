// Devices and tensors: creation, read-back, disposal, memory accounting and argument errors.
import { describe, expect, it } from 'vitest'

import { BSSN, Device, Tensor } from '../src/index.js'
import { native } from '../src/native.js'
import { forEachBackend, requireCuda } from './helpers/backends.js'
import { settledStats } from './helpers/memory.js'

forEachBackend((getDevice) => {
  it('round-trips data and shape', async () => {
    const device = getDevice()
    const data = Float32Array.from({ length: 24 }, (_, i) => i * 0.5 - 3)
    using t = device.tensor(data, [2, 3, 4])
    expect(t.shape).toEqual([2, 3, 4])
    expect(Object.isFrozen(t.shape)).toBe(true)
    expect(t.size).toBe(24)
    expect(t.dtype).toBe('float32')
    expect(t.device.kind).toBe(device.kind)
    expect(await t.toArray()).toEqual(data)
    using fromList = device.tensor([1, 2.5, -3], [3])
    expect(Array.from(await fromList.toArray())).toEqual([1, 2.5, -3])
  })

  it('zeros, and randn deterministic for a seed with standard-normal statistics', async () => {
    const device = getDevice()
    using z = device.zeros([5, 7])
    expect((await z.toArray()).every((x) => x === 0)).toBe(true)
    using a = device.randn([100, 100], { seed: 123 })
    using b = device.randn([100, 100], { seed: 123 })
    using c = device.randn([100, 100], { seed: 124 })
    const [x, y, w] = await Promise.all([a.toArray(), b.toArray(), c.toArray()])
    expect(x).toEqual(y)
    expect(x).not.toEqual(w)
    const mean = x.reduce((s, v) => s + v, 0) / x.length
    const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length
    expect(Math.abs(mean)).toBeLessThan(0.03)
    expect(Math.abs(variance - 1)).toBeLessThan(0.05)
  })

  it('clone copies into new memory', async () => {
    const device = getDevice()
    using a = device.randn([3, 5], { seed: 3 })
    using b = a.clone()
    expect(b.shape).toEqual([3, 5])
    expect(await b.toArray()).toEqual(await a.toArray())
    using c = device.zeros([3, 5])
    expect(c.copyFrom(a)).toBe(c)
    expect(await c.toArray()).toEqual(await a.toArray())
    using wrong = device.zeros([5, 3])
    expect(() => wrong.copyFrom(a)).toThrow(/expected a source of shape \[5, 3\], got \[3, 5\]/)
    a.dispose()
    expect((await b.toArray()).length).toBe(15)
    expect(() => c.copyFrom(a)).toThrow(/source tensor was disposed/)
  })

  it('timestamps are ordered and measure stream time', async () => {
    const device = getDevice()
    using w = device.randn([256, 256, 3, 3], { seed: 1 })
    using bssn = new BSSN([w], { warmupIterations: 0 })
    const t0 = device.timestamp()
    for (let i = 0; i < 3; i++) bssn.forward()
    const t1 = device.timestamp()
    const [a, b] = await Promise.all([t0, t1])
    expect(b).toBeGreaterThan(a)
    expect(a).toBeGreaterThanOrEqual(0)
  })

  it('kernel timing names each normalization kernel with its device time, and only while on', async () => {
    const device = getDevice()
    using w = device.randn([64, 32, 3, 3], { seed: 1 })
    using g = device.randn([64, 32, 3, 3], { seed: 2 })
    using bssn = new BSSN([w])
    bssn.forward() // the warm-up, untimed
    await device.kernelTimes()
    device.profileKernels(true)
    bssn.forward()
    bssn.backward([g])
    const times = await device.kernelTimes()
    device.profileKernels(false)
    // CUDA: a weight that fits on chip takes the fused kernels, unless BSSN_CUDA_FUSED=0 selects the streamed ones.
    const cuda = process.env.BSSN_CUDA_FUSED === '0' ? ['multiplyTransposed', 'multiply', 'finish', 'scale', 'gradDots', 'backward'] : ['fused', 'fusedBackward']
    const expected = device.kind === 'cuda' ? cuda : ['normalize', 'normalizeBackward']
    expect(times.map((t) => t.kernel)).toEqual(expected)
    for (const t of times) expect(Number.isFinite(t.ms) && t.ms >= 0, `${t.kernel}: ${t.ms} ms`).toBe(true)
    bssn.forward()
    expect(await device.kernelTimes()).toEqual([])
    expect(() => device.profileKernels('yes' as never)).toThrow(TypeError)
  })

  it('reads larger than 64 MiB come back whole, in stream order', async () => {
    const device = getDevice()
    const n = 17 * 2 ** 20 // 68 MiB: beyond the CUDA backend's pinned staging blocks
    using t = device.rand([n], { seed: 5, low: 1, high: 2 })
    const read = t.toArray()
    using zeros = device.zeros([n])
    t.copyFrom(zeros) // enqueued after the read: the read must not see it
    const values = await read
    using expected = Device.cpu().rand([n], { seed: 5, low: 1, high: 2 })
    const reference = await expected.toArray()
    expect(values.length).toBe(n)
    let mismatches = 0
    for (let i = 0; i < n; i++) if (values[i] !== reference[i]) mismatches++
    expect(mismatches).toBe(0)
    expect((await t.toArray())[n - 1]).toBe(0)
  })

  it('timestamps taken seconds apart stay consistent (CUDA re-anchors them every second)', async () => {
    const device = getDevice()
    const hostStart = performance.now()
    const first = await device.timestamp()
    const marks: number[] = []
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 600))
      // Several per pass: one of them becomes the next anchor, the others are measured from it.
      const pass = await Promise.all([device.timestamp(), device.timestamp(), device.timestamp()])
      marks.push(...pass)
    }
    const hostMs = performance.now() - hostStart
    const all = [first, ...marks]
    for (let i = 1; i < all.length; i++) expect(all[i], `timestamp ${i} after ${i - 1}`).toBeGreaterThanOrEqual(all[i - 1])
    // Device time between the first and last matches the host's, within scheduling noise.
    expect(all[all.length - 1] - first).toBeGreaterThan(1700)
    expect(all[all.length - 1] - first).toBeLessThan(hostMs + 50)
  })

  it('dispose frees at once; using a disposed tensor is an error', async () => {
    const device = getDevice()
    const base = await settledStats(device)
    const t = device.randn([256, 256], { seed: 1 })
    expect(device.memoryStats().liveTensors).toBe(base.liveTensors + 1)
    expect(device.memoryStats().allocatedBytes).toBe(base.allocatedBytes + 256 * 256 * 4)
    t.dispose()
    t.dispose() // twice is fine
    expect(t.disposed).toBe(true)
    await expect(t.toArray()).rejects.toThrow(/tensor \[256, 256\] was disposed/)
    expect(() => new BSSN([t])).toThrow(/was disposed/)
    await device.synchronize()
    expect(device.memoryStats()).toMatchObject({ allocatedBytes: base.allocatedBytes, liveTensors: base.liveTensors })
    {
      using scoped = device.zeros([10])
      expect(scoped.disposed).toBe(false)
    }
    expect(device.memoryStats().liveTensors).toBe(base.liveTensors)
  })

  it('a BSSN, its outputs and its state go back to baseline memory when disposed', async () => {
    const device = getDevice()
    const base = await settledStats(device)
    const weights = [device.randn([64, 32, 3, 3], { seed: 1 }), device.randn([10, 64], { seed: 2 })]
    const bssn = new BSSN(weights)
    for (let i = 0; i < 5; i++) bssn.forward()
    await bssn.sigmas()
    expect(device.memoryStats().allocatedBytes).toBeGreaterThan(base.allocatedBytes)
    bssn.dispose()
    weights.forEach((w) => w.dispose())
    await device.synchronize()
    expect(device.memoryStats()).toMatchObject({ allocatedBytes: base.allocatedBytes, liveTensors: base.liveTensors })
  })

  it('memory stays flat over many steps', async () => {
    const device = getDevice()
    using w = device.randn([32, 16, 3, 3], { seed: 1 })
    using bssn = new BSSN([w])
    bssn.forward()
    const before = await settledStats(device)
    for (let i = 0; i < 500; i++) bssn.forward()
    await bssn.sigmas()
    await device.synchronize()
    expect(device.memoryStats()).toMatchObject({ allocatedBytes: before.allocatedBytes, liveTensors: before.liveTensors })
  })

  it('never blocks the event loop: forward returns at once and reads resolve later', async () => {
    const device = getDevice()
    using w = device.randn([1024, 1024, 3, 3], { seed: 5 })
    using bssn = new BSSN([w], { warmupIterations: 0, powerIterations: 3 })
    let ticks = 0
    const timer = setInterval(() => ticks++, 1)
    const start = performance.now()
    bssn.forward()
    const enqueueMs = performance.now() - start
    await bssn.sigmas()
    const totalMs = performance.now() - start
    clearInterval(timer)
    expect(enqueueMs).toBeLessThan(totalMs)
    // The work took long enough for timers to fire while we waited: the JS thread stayed free.
    if (totalMs > 20) expect(ticks).toBeGreaterThan(0)
  })

  it('rejects bad arguments with TypeError / RangeError', () => {
    const device = getDevice()
    expect(() => device.tensor(new Float64Array(4) as unknown as Float32Array, [4])).toThrow(TypeError)
    expect(() => device.tensor('abc' as unknown as number[], [3])).toThrow(/Float32Array or an array of numbers/)
    expect(() => device.tensor([1, 'x'] as unknown as number[], [2])).toThrow(/data\[1\] to be a number/)
    expect(() => device.tensor([1, 2, 3], [2, 2])).toThrow(Object.assign(new RangeError('expected 4 values for shape [2, 2], got 3'), { code: 'ERR_BSSN_OUT_OF_RANGE' }))
    expect(() => device.zeros([2, -1])).toThrow(RangeError)
    expect(() => device.zeros([2.5])).toThrow(RangeError)
    expect(() => device.zeros('2' as unknown as number[])).toThrow(TypeError)
    expect(() => device.zeros([2 ** 30, 2 ** 30, 4])).toThrow(/too many elements/)
    expect(() => device.randn([2], { seed: -1 })).toThrow(RangeError)
  })
})

describe('native handles', () => {
  it('a handle of the wrong kind cannot be unwrapped', () => {
    const device = Device.cpu()
    using t = device.zeros([2])
    const binding = native()
    // A device handle passed where a tensor handle is expected.
    expect(() => new binding.NormalizerHandle([device.handle as never], {} as never)).toThrow(TypeError)
    // A tensor's method borrowed onto a foreign object.
    const toArray = t.handle.toArray
    expect(() => toArray.call({})).toThrow(TypeError)
    expect(() => toArray.call(device.handle)).toThrow(TypeError)
    expect(() => new (t.handle.constructor as new () => unknown)()).toThrow(/cannot be constructed directly/)
    expect(() => new Tensor(device.handle as never, device)).toThrow()
  })
})

describe('Device', () => {
  it('cpu() and auto()', () => {
    const cpu = Device.cpu()
    expect(cpu.kind).toBe('cpu')
    expect(cpu.name).toBe('CPU')
    expect(cpu.fallbackReason).toBeUndefined()
    const auto = Device.auto()
    const status = native().cudaStatus()
    if (status.available) {
      expect(auto.kind).toBe('cuda')
    } else {
      expect(requireCuda, 'BSSN_REQUIRE_CUDA=1 but CUDA is unusable: ' + status.reason).toBe(false)
      expect(auto.kind).toBe('cpu')
      expect(auto.fallbackReason).toBe(status.reason)
      expect(() => Device.cuda(0)).toThrow(Error)
    }
    expect(() => Device.cuda(-1)).toThrow(RangeError)
    expect(() => Device.cuda('0' as unknown as number)).toThrow(TypeError)
  })
})

it('postMessage and structuredClone of a tensor throw a DataCloneError saying what to send instead', async () => {
  const { MessageChannel } = await import('node:worker_threads')
  using t = Device.cpu().randn([2, 3], { seed: 1 })
  expect(() => structuredClone(t)).toThrow(/cannot be sent with postMessage or structuredClone: send await tensor.toArray\(\)/)
  const { port1, port2 } = new MessageChannel()
  try {
    expect(() => port1.postMessage(t)).toThrow(/cannot be sent with postMessage/)
  } finally {
    port1.close()
    port2.close()
  }
})
