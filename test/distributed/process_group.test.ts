// What data-parallel training checks before any rank meets another, and the tape's gradient hooks it is built on
// (CPU; the collectives themselves are in test/emulated/distributed.test.ts).
import { describe, expect, it } from 'vitest'

import { Device, DistributedDataParallel, F, Linear, ProcessGroup, Sequential, initDistributed } from '../../src/index.js'
import { bssnError } from '../../src/errors.js'
import type { NativeNccl, NativeNcclComm } from '../../src/native.js'
import type { Rendezvous } from '../../src/distributed/rendezvous.js'
import { record, setGradHook, type GradHook } from '../../src/autograd/tape.js'
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
      backwardFailed: (e) => events.push(`failed: ${(e as Error).message}`),
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
    // A backward that throws after b's gradients were reported: the hook hears of the failure, not of an end.
    events.length = 0
    a.zeroGrad()
    b.zeroGrad()
    const hidden = a.forward(x)
    const boom = record(device.zeros(hidden.shape), [hidden], 'boom', () => {
      throw new Error('boom')
    })
    expect(() => F.sum(b.forward(boom)).backward()).toThrow('boom')
    expect(events.sort()).toEqual(['b.b', 'b.w', 'failed: boom'])
    for (const t of names.keys()) setGradHook(t, undefined)
    events.length = 0
    F.sum(b.forward(a.forward(x))).backward()
    expect(events).toEqual([])
    ;[a, b].forEach((m) => m.dispose())
  })
})

// The watchdog against a scripted NCCL: poll() completes what the test says, when it says.
function scripted(device: Device, timeoutMs: number) {
  const state = { enqueued: 0, completed: 0, reported: 0, aborted: false, failWith: undefined as Error | undefined }
  const nccl = {
    allReduce: () => void state.enqueued++,
    broadcast: () => void state.enqueued++,
    join: () => {},
    poll: () => {
      if (state.failWith) throw state.failWith
      const n = state.completed - state.reported
      state.reported = state.completed
      return n
    },
    abort: () => void (state.aborted = true),
  } as unknown as NativeNccl
  const meeting = { barrier: async () => {}, close: () => {} } as unknown as Rendezvous
  const group = new ProcessGroup({ rank: 1, worldSize: 2, localRank: 1, masterAddr: '127.0.0.1', masterPort: 1 }, device, nccl, {} as NativeNcclComm, meeting, timeoutMs)
  return { group, state }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('the process group\'s watchdog', () => {
  it('a run that always has a collective in flight, each finishing quickly, never times out', async () => {
    const device = Device.cpu()
    const { group, state } = scripted(device, 150)
    const t = device.zeros([4])
    const started = performance.now()
    while (performance.now() - started < 600) {
      group.allReduce(t, 'avg') // one more in flight before the previous ones are seen complete
      await sleep(20)
      state.completed = state.enqueued - 1
    }
    expect(group.failure).toBeUndefined()
    state.completed = state.enqueued
    await group.synchronize()
    t.dispose()
  })

  it('a collective that never finishes: the communicator is aborted and every waiter gets ERR_BSSN_COLLECTIVE_FAILED', async () => {
    const device = Device.cpu()
    const { group, state } = scripted(device, 100)
    const t = device.zeros([4])
    const failures: Error[] = []
    group.onFailure((e) => failures.push(e))
    group.broadcast(t, 0)
    const started = performance.now()
    await expect(group.synchronize()).rejects.toMatchObject({ code: 'ERR_BSSN_COLLECTIVE_FAILED', message: expect.stringMatching(/rank 1: a collective did not finish within 100 ms/) })
    expect(performance.now() - started).toBeGreaterThanOrEqual(90)
    expect(state.aborted).toBe(true)
    expect(failures).toHaveLength(1)
    expect(() => group.check()).toThrow(expect.objectContaining({ code: 'ERR_BSSN_COLLECTIVE_FAILED' }))
    expect(() => group.allReduce(t)).toThrow(expect.objectContaining({ code: 'ERR_BSSN_COLLECTIVE_FAILED' }))
    t.dispose()
  })

  it('NCCL\'s asynchronous error (a peer died) fails the group at the next poll', async () => {
    const device = Device.cpu()
    const { group, state } = scripted(device, 60_000)
    const t = device.zeros([4])
    group.allReduce([t], 'sum')
    const waiting = group.synchronize()
    state.failWith = Object.assign(new Error('an NCCL collective failed: remote process exited'), { code: 'ERR_BSSN_COLLECTIVE_FAILED' })
    await expect(waiting).rejects.toMatchObject({ code: 'ERR_BSSN_COLLECTIVE_FAILED', message: expect.stringMatching(/rank 1: an NCCL collective failed/) })
    t.dispose()
  })

  it('a bucket went, then zero-filling a gradient backward never reached runs out of memory: the group is ended, the error is the caller\'s', async () => {
    const device = Device.cpu()
    const { group, state } = scripted(device, 60_000)
    const model = new Sequential(new Linear(3, 4, { device, seed: 1 }), new Linear(3, 1, { device, seed: 2 }))
    const ddp = new DistributedDataParallel(model, group, { bucketBytes: 1 }) // one bucket per parameter
    const zeros = Device.prototype.zeros
    Device.prototype.zeros = () => {
      throw bssnError('out of memory (test)', 'ERR_BSSN_OUT_OF_MEMORY')
    }
    try {
      // Only the last layer takes part: its bucket goes during backward, the first layer's gradients are zero-filled at the end.
      const x = device.randn([5, 3], { seed: 3 })
      expect(() => F.sum((model.layers[1] as Linear).forward(x)).backward()).toThrow(expect.objectContaining({ code: 'ERR_BSSN_OUT_OF_MEMORY' }))
    } finally {
      Device.prototype.zeros = zeros
    }
    expect(state.enqueued).toBeGreaterThan(0)
    expect(state.aborted).toBe(true)
    expect(group.failure).toMatchObject({ code: 'ERR_BSSN_COLLECTIVE_FAILED', message: expect.stringMatching(/out of memory \(test\).*the group was ended/) })
    ddp.dispose()
    model.dispose()
  })

  it('collectives check their arguments; after destroy() every call is ERR_BSSN_DISPOSED, waits included', async () => {
    const device = Device.cpu()
    const { group } = scripted(device, 1000)
    const t = device.zeros([2])
    expect(() => group.allReduce(t, 'max' as never)).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/'sum' or 'avg'/) }))
    expect(() => group.broadcast(t, 2)).toThrow(expect.objectContaining({ name: 'RangeError' }))
    expect(() => group.allReduce({} as never)).toThrow(expect.objectContaining({ name: 'TypeError' }))
    group.destroy()
    expect(() => group.allReduce(t)).toThrow(expect.objectContaining({ code: 'ERR_BSSN_DISPOSED' }))
    await expect(group.synchronize()).rejects.toMatchObject({ code: 'ERR_BSSN_DISPOSED' })
    await expect(group.barrier()).rejects.toMatchObject({ code: 'ERR_BSSN_DISPOSED' })
    t.dispose()
  })
})
