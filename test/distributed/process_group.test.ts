// What data-parallel training checks before any rank meets another, and the tape's gradient hooks it is built on
// (CPU; the collectives themselves are in test/emulated/distributed.test.ts).
import { describe, expect, it } from 'vitest'

import { Device, DistributedDataParallel, F, Linear, Sequential, initDistributed } from '../../src/index.js'
import { setGradHook, type GradHook } from '../../src/autograd/tape.js'
import type { Tensor } from '../../src/tensor.js'

const env = { rank: 0, worldSize: 2, localRank: 0, masterAddr: '127.0.0.1', masterPort: 1 }

describe('initDistributed refuses what cannot work, before the rendezvous', () => {
  it('without the launch environment: a TypeError naming the variables', async () => {
    const saved = ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'].map((k) => [k, process.env[k]] as const)
    saved.forEach(([k]) => delete process.env[k])
    try {
      await expect(initDistributed()).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_BSSN_INVALID_ARGUMENT', message: expect.stringMatching(/RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT/) })
    } finally {
      saved.forEach(([k, v]) => v !== undefined && (process.env[k] = v))
    }
  })

  it('on the CPU: NCCL needs a CUDA device', async () => {
    await expect(initDistributed({ env, device: Device.cpu() })).rejects.toMatchObject({ name: 'TypeError', message: expect.stringMatching(/needs a CUDA device/) })
  })

  it('bad options: coded TypeError / RangeError', async () => {
    await expect(initDistributed({ env, device: Device.cpu(), timeoutMs: 0 })).rejects.toMatchObject({ code: 'ERR_BSSN_OUT_OF_RANGE' })
    await expect(initDistributed({ env, device: 'cuda' as unknown as Device })).rejects.toMatchObject({ code: 'ERR_BSSN_INVALID_ARGUMENT' })
    await expect(initDistributed('x' as never)).rejects.toMatchObject({ code: 'ERR_BSSN_INVALID_ARGUMENT' })
  })

  it('DistributedDataParallel takes a Module and a ProcessGroup', () => {
    const m = new Sequential(new Linear(2, 2, { device: Device.cpu(), seed: 1 }))
    expect(() => new DistributedDataParallel({} as never, {} as never)).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/expected a Module/) }))
    expect(() => new DistributedDataParallel(m, {} as never)).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/ProcessGroup/) }))
    m.dispose()
  })
})

describe('gradient hooks (what the bucketed all-reduce starts from)', () => {
  it('each hooked leaf is reported once, when its last contribution is in; the hook hears the end of each backward once', async () => {
    const device = Device.cpu()
    const a = new Linear(3, 4, { device, seed: 1 })
    const b = new Linear(4, 1, { device, seed: 2 })
    const events: string[] = []
    const names = new Map<Tensor, string>([[a.weight, 'a.w'], [a.bias!, 'a.b'], [b.weight, 'b.w'], [b.bias!, 'b.b']])
    const hook: GradHook = {
      // Complete when reported: its value is read now and compared with the final one below.
      gradReady: (leaf) => events.push(`${names.get(leaf)}`),
      backwardEnded: () => events.push('end'),
    }
    for (const t of names.keys()) setGradHook(t, hook)
    const x = device.randn([5, 3], { seed: 3 })
    // b is used twice: its gradient is complete only after both uses' backward ran.
    const h = a.forward(x)
    const loss = F.sum(F.add(b.forward(h), b.forward(F.mul(h, h))))
    loss.backward()
    expect(events.filter((e) => e !== 'end').sort()).toEqual(['a.b', 'a.w', 'b.b', 'b.w'])
    expect(events.filter((e) => e === 'end')).toHaveLength(1)
    expect(events[events.length - 1]).toBe('end')
    // b's parameters are complete before a's (backward reaches a last).
    expect(events.indexOf('b.w')).toBeLessThan(events.indexOf('a.w'))
    // A frozen leaf is not waited for, nor reported.
    events.length = 0
    a.zeroGrad()
    b.zeroGrad()
    b.weight.requiresGrad = false
    F.sum(b.forward(a.forward(x))).backward()
    expect(events.sort()).toEqual(['a.b', 'a.w', 'b.b', 'end'])
    b.weight.requiresGrad = true
    for (const t of names.keys()) setGradHook(t, undefined)
    events.length = 0
    F.sum(b.forward(a.forward(x))).backward()
    expect(events).toEqual([])
    ;[a, b].forEach((m) => m.dispose())
  })
})
