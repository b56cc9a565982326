// bssnNormalize: state per weight handle, advanced across calls and batches, released on dispose.
import { expect, it } from 'vitest'

import { BSSN, bssnNormalize, Tensor } from '../src/index.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseArray } from './helpers/expect.js'
import { settledStats } from './helpers/memory.js'

forEachBackend((getDevice) => {
  it('repeated calls advance the same state as a BSSN object would', async () => {
    const device = getDevice()
    using w = device.randn([16, 8, 3, 3], { seed: 4 })
    using bssn = new BSSN([w], { mode: 'bssn', scale: 1.5 })
    for (let step = 0; step < 4; step++) {
      using out = bssnNormalize(w, { mode: 'bssn', scale: 1.5 })
      expect(out).toBeInstanceOf(Tensor)
      expect(out.shape).toEqual(w.shape)
      expect(await out.toArray()).toEqual(await bssn.forward()[0].toArray())
    }
  })

  it('returns caller-owned tensors; a batch is one call with the same per-weight state', async () => {
    const device = getDevice()
    const a = device.randn([8, 4, 3, 3], { seed: 1 })
    const b = device.randn([6, 8], { seed: 2 })
    // The warmed-up starting state of [a, b] (seed 0, as bssnNormalize's default).
    using ref = new BSSN([a, b])
    const start = [await ref.getState(0), await ref.getState(1)]
    // a alone, then a and b together, then a alone: a's state follows it from batch to batch.
    bssnNormalize(a).dispose()
    const [oa, ob] = bssnNormalize([a, b])
    const oa2 = bssnNormalize(a)
    // Replay: a advanced 1, 2, 3 times; b once.
    using replay = new BSSN([a, b], { warmupIterations: 0 })
    replay.setState(0, start[0])
    replay.setState(1, start[1])
    const first = await Promise.all(replay.forward().map((t) => t.toArray()))
    const second = await replay.forward()[0].toArray()
    const third = await replay.forward()[0].toArray()
    expect(await ob.toArray()).toEqual(first[1])
    expect(await oa.toArray()).toEqual(second)
    expect(await oa2.toArray()).toEqual(third)
    for (const t of [oa, ob, oa2, a, b]) t.dispose()
  })

  it('training: false evaluates without advancing the state', async () => {
    const device = getDevice()
    using w = device.randn([10, 5, 2, 2], { seed: 9 })
    const options = { warmupIterations: 0 }
    bssnNormalize(w, options).dispose()
    using e1 = bssnNormalize(w, { ...options, training: false })
    using e2 = bssnNormalize(w, { ...options, training: false })
    expect(await e1.toArray()).toEqual(await e2.toArray())
    // The second training iteration from a random start moves the state well beyond rounding.
    using t2 = bssnNormalize(w, options)
    expect(await t2.toArray()).not.toEqual(await e1.toArray())
  })

  it('releases the state when the weight is disposed (memory back to baseline)', async () => {
    const device = getDevice()
    const base = await settledStats(device)
    const w = device.randn([64, 32, 3, 3], { seed: 1 })
    const v = device.randn([32, 64], { seed: 2 })
    for (let i = 0; i < 3; i++) bssnNormalize([w, v]).forEach((t) => t.dispose())
    bssnNormalize(w).dispose()
    w.dispose()
    // v keeps its state (moved out of the freed batch): the next call continues it.
    using again = bssnNormalize(v)
    expect(again.shape).toEqual([32, 64])
    again.dispose()
    v.dispose()
    await device.synchronize()
    expect(device.memoryStats()).toMatchObject({ allocatedBytes: base.allocatedBytes, liveTensors: base.liveTensors })
  })

  it('calls with ever-changing scale, eps and mode hold a bounded number of buffers, and apply them per call', async () => {
    const device = getDevice()
    using w = device.randn([8, 4, 3, 3], { seed: 3 })
    const call = (i: number) => bssnNormalize(w, { mode: i % 2 ? 'ssn' : 'bssn', scale: 1 + i / 64, eps: 1e-12 * (1 + i) })
    for (let i = 0; i < 4; i++) call(i).dispose()
    await device.synchronize()
    const held = device.memoryStats()
    for (let i = 4; i < 300; i++) call(i).dispose()
    await device.synchronize()
    expect(device.memoryStats()).toMatchObject({ liveBuffers: held.liveBuffers, allocatedBytes: held.allocatedBytes })
    // Eval calls from one state: scale multiplies the output, per call.
    using a = bssnNormalize(w, { scale: 2, training: false })
    using b = bssnNormalize(w, { scale: 3, training: false })
    expectCloseArray(await b.toArray(), (await a.toArray()).map((x) => x * 1.5), 1e-6, 'scale 3 vs 1.5 x scale 2')
    // Training calls advance one state whatever the scale: as a BSSN object with the same steps would.
    using v = device.randn([6, 5], { seed: 5 })
    using ref = new BSSN([v], { mode: 'ssn', scale: 2 })
    for (let i = 0; i < 3; i++) bssnNormalize(v, { mode: 'ssn', scale: 1 + i }).dispose()
    using last = bssnNormalize(v, { mode: 'ssn', scale: 2 })
    for (let i = 0; i < 3; i++) ref.forward()
    expect(await last.toArray()).toEqual(await ref.forward()[0].toArray())
  })

  it('rejects bad input', () => {
    const device = getDevice()
    using w = device.randn([3, 3], { seed: 1 })
    expect(() => bssnNormalize([])).toThrow(RangeError)
    expect(() => bssnNormalize([w, w])).toThrow(/repeats/)
    expect(() => bssnNormalize({} as Tensor)).toThrow(TypeError)
    expect(() => bssnNormalize(w, { training: 'yes' as unknown as boolean })).toThrow(TypeError)
    expect(() => bssnNormalize(w, { mode: 'sn', scale: 3 })).toThrow(RangeError)
  })
})
