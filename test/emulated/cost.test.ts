// Counting what a GPU would pay (native/emulator/README.md), checked on planted kernels of known traffic
// (native/emulator/probes.cu): sectors per warp-wide access, total and distinct sectors, the longest thread, graph
// nodes, synchronizations, allocations and copies. Skips visibly outside the emulated build, and in the
// AddressSanitizer build, whose kernels cannot carry the counting instrumentation.
import { describe, expect, it } from 'vitest'

import { mlp2dD } from '../../src/cli/workloads.js'
import { native, type NativeEmulator, type NativeEmulatorCost, type NativeEmulatorLaunchCost } from '../../src/native.js'
import { emulated } from '../helpers/backends.js'
import { callCost, describeKernels } from '../helpers/cost.js'
import { expectCloseArray } from '../helpers/expect.js'
import { randomArray, rng } from '../helpers/random.js'

if (process.env.BSSN_EMULATED === '1' && !emulated) throw new Error('BSSN_EMULATED=1 but the loaded addon is not the emulated build')
const available = emulated && native().emulator!.cost.available
const underSanitizer = process.env.BSSN_UNDER_SANITIZER === '1'
if (emulated && !available && !underSanitizer) throw new Error('the emulated build has no cost counting (its kernels are not instrumented)')
const reason = !emulated
  ? ' (skipped: needs the emulated build, npm run test:emulated)'
  : !available
    ? ' (skipped: counting is off in the AddressSanitizer build, whose runtime owns the instrumentation entry points)'
    : ''
const suite = available ? describe : describe.skip
const emu = (): NativeEmulator => native().emulator!

// Runs `body` between start() and stop(): its counts.
function counted(body: () => void): NativeEmulatorCost {
  emu().cost.start()
  try {
    body()
  } catch (e) {
    emu().cost.stop() // a failing body leaves counting off for the other tests
    throw e
  }
  return emu().cost.stop()
}

// The one launch of `kernel` in `cost`.
function launchOf(cost: NativeEmulatorCost, kernel: string): NativeEmulatorLaunchCost {
  const runs = cost.kernels.filter((k) => k.kernel === kernel)
  expect(runs.length, `launches of ${kernel}`).toBe(1)
  return runs[0]
}

const perAccess = (c: { warpAccesses: number; sectors: number }) => c.sectors / c.warpAccesses

suite(`counting what a GPU would pay${reason}`, () => {
  const n = 8192 // 32 blocks of 256 threads, 256 warps

  it('a coalesced fp32 copy: 4 sectors per warp-wide load and store, every sector once, two accesses per thread', () => {
    const input = randomArray(n, 1)
    let out: number[] = []
    const cost = counted(() => (out = emu().probes.costKernel('copy', input)))
    expectCloseArray(out, input, 1e-7, 'copy')
    const k = launchOf(cost, 'costCopyKernel')
    expect(k.loads).toEqual({ warpAccesses: n / 32, sectors: (n * 4) / 32, distinctSectors: (n * 4) / 32, bytes: n * 4 })
    expect(k.stores).toEqual({ warpAccesses: n / 32, sectors: (n * 4) / 32, distinctSectors: (n * 4) / 32, bytes: n * 4 })
    expect(perAccess(k.loads)).toBe(4)
    expect(k.maxThreadAccesses).toBe(2)
    expect([k.blocks, k.replay]).toEqual([n / 256, 0])
    expect(cost.launches).toBe(1)
  })

  it('a stride-8 read: 32 sectors per warp-wide load (each lane its own sector), the store still 4', () => {
    const input = randomArray(8 * 4096, 2)
    let out: number[] = []
    const cost = counted(() => (out = emu().probes.costKernel('strided', input)))
    expectCloseArray(out, Array.from({ length: 4096 }, (_, i) => input[8 * i]), 1e-7, 'strided')
    const k = launchOf(cost, 'costStridedKernel')
    expect(k.loads).toEqual({ warpAccesses: 4096 / 32, sectors: 4096, distinctSectors: 4096, bytes: 4096 * 4 })
    expect((k.loads.sectors * 128) / k.loads.bytes).toBe(32)
    expect(perAccess(k.loads)).toBe(32)
    expect(perAccess(k.stores)).toBe(4)
  })

  it('reading the input twice counts twice the total sectors and the same distinct ones', () => {
    const input = randomArray(n, 3)
    let out: number[] = []
    const copy = launchOf(counted(() => emu().probes.costKernel('copy', input)), 'costCopyKernel')
    const twice = launchOf(counted(() => (out = emu().probes.costKernel('readTwice', input))), 'costReadTwiceKernel')
    expectCloseArray(out, Array.from({ length: n }, (_, i) => 2 * input[i] + input[n - 1 - i]), 1e-6, 'readTwice')
    expect(twice.loads.sectors).toBe(2 * copy.loads.sectors)
    expect(twice.loads.warpAccesses).toBe(2 * copy.loads.warpAccesses)
    expect(twice.loads.distinctSectors).toBe(copy.loads.distinctSectors)
    expect(perAccess(twice.loads)).toBe(4)
    expect(twice.stores).toEqual(copy.stores)
  })

  it('a float4 copy: 16 sectors per warp-wide access (512 bytes), a quarter of the accesses of the fp32 copy', () => {
    const input = randomArray(n, 4)
    let out: number[] = []
    const k = launchOf(counted(() => (out = emu().probes.costKernel('copy4', input))), 'costCopy4Kernel')
    expectCloseArray(out, input, 1e-7, 'copy4')
    expect(k.loads).toEqual({ warpAccesses: n / 4 / 32, sectors: (n * 4) / 32, distinctSectors: (n * 4) / 32, bytes: n * 4 })
    expect(k.stores).toEqual(k.loads)
    expect(perAccess(k.loads)).toBe(16)
    // As coalesced as the fp32 copy, per byte asked for.
    expect((k.loads.sectors * 128) / k.loads.bytes).toBe(4)
  })

  it('a kernel that touches only shared memory counts no global traffic, but its launch and blocks', () => {
    const cost = counted(() => emu().probes.costKernel('sharedOnly', randomArray(256, 5)))
    const k = launchOf(cost, 'costSharedOnlyKernel')
    expect(k.loads).toEqual({ warpAccesses: 0, sectors: 0, distinctSectors: 0, bytes: 0 })
    expect(k.stores).toEqual({ warpAccesses: 0, sectors: 0, distinctSectors: 0, bytes: 0 })
    expect([k.blocks, k.maxThreadAccesses]).toEqual([4, 0])
  })

  it('one thread walking the input: its accesses are the longest thread, each load a warp access of one sector', () => {
    const m = 1000
    const input = randomArray(m, 6)
    let out: number[] = []
    const k = launchOf(counted(() => (out = emu().probes.costKernel('serialSum', input))), 'costSerialSumKernel')
    expectCloseArray(out, [input.reduce((a, b) => a + b, 0)], 1e-5, 'serialSum')
    expect(k.maxThreadAccesses).toBe(m + 1)
    expect(k.loads).toEqual({ warpAccesses: m, sectors: m, distinctSectors: (m * 4) / 32, bytes: m * 4 })
  })

  it('the host side of a call: allocations, blocking copies and frees as synchronizations, bytes each way', () => {
    const input = randomArray(n, 7)
    const cost = counted(() => emu().probes.costKernel('copy', input))
    // Two cudaMalloc; a blocking upload and download; two cudaFree, which wait for the device.
    expect(cost).toMatchObject({ deviceAllocations: 2, pinnedAllocations: 0, synchronizations: 4, bytesToDevice: n * 4, bytesToHost: n * 4 })
    const bytes = 4096
    const host = counted(() => emu().probes.costHostCalls(bytes))
    // Stream, event and device synchronize, and cudaFreeHost; the pinned copies are asynchronous.
    expect(host).toMatchObject({ deviceAllocations: 1, pinnedAllocations: 1, synchronizations: 4, bytesToDevice: bytes, bytesToHost: bytes })
    expect([host.launches, host.loads.sectors]).toEqual([0, 0])
  })

  it('a graph replay counts as one graph launch of its nodes, each tagged with its replay', () => {
    const input = randomArray(1000, 8)
    const random = rng(9)
    const scalars = [1.5 + random(), random() - 0.5, -(1.5 + random()), 2 + random()].map(Math.fround)
    const replays = 3
    const cost = counted(() => emu().probes.graphReplay(input, scalars, replays, 0))
    expect([cost.graphLaunches, cost.graphNodes, cost.launches]).toEqual([replays, 4 * replays, 4 * replays])
    for (let r = 1; r <= replays; r++) expect(cost.kernels.filter((k) => k.replay === r).map((k) => k.kernel)).toHaveLength(4)
    // Every node stores, read-modify-writes (out = out * a + b, acc += out) included: a store after a load of the same
    // address counts (g++'s AddressSanitizer instrumentation would drop it).
    expect(cost.kernels.every((k) => k.loads.sectors > 0 && k.stores.sectors > 0)).toBe(true)
  })

  it('nothing counts outside start() and stop()', () => {
    emu().probes.costKernel('copy', randomArray(n, 10))
    const cost = counted(() => {})
    expect([cost.launches, cost.loads.sectors, cost.synchronizations, cost.deviceAllocations, cost.kernels.length]).toEqual([0, 0, 0, 0, 0])
  })
})

// The helper the budgets of issue 23 are asserted with (test/helpers/cost.ts): facts any correct normalization has,
// whatever its kernels; the budgets themselves belong with the kernels that meet them.
suite(`a workload's call, counted${reason}`, () => {
  it('MLP-2D D: the forward reads W and writes W_hat at least once, the scale-only forward writes no W_hat; the figures add up', async () => {
    const forward = await callCost(mlp2dD, 'training forward')
    console.log(`MLP-2D D, training forward:\n${describeKernels(forward)}`)
    expect(forward.figures.distinctReadPasses).toBeGreaterThanOrEqual(1)
    expect(forward.figures.distinctWritePasses).toBeGreaterThanOrEqual(1)
    expect(forward.figures.weightBytes).toBe(4 * (512 * 2 + 2 * 512 * 512 + 512))
    const { raw } = forward
    const sum = (f: (k: NativeEmulatorLaunchCost) => number) => raw.kernels.reduce((a, k) => a + f(k), 0)
    expect(sum((k) => k.loads.distinctSectors + k.stores.distinctSectors)).toBe(raw.loads.distinctSectors + raw.stores.distinctSectors)
    expect(sum((k) => k.loads.sectors)).toBe(raw.loads.sectors)
    expect(raw.kernels.length).toBe(forward.figures.launches)
    // Replays and plain launches together are every launch.
    expect(forward.figures.graphNodes).toBeLessThanOrEqual(forward.figures.launches)
    const scaleOnly = await callCost(mlp2dD, 'scale-only')
    expect(scaleOnly.figures.distinctReadPasses).toBeGreaterThanOrEqual(1)
    expect(scaleOnly.figures.distinctWritePasses).toBeLessThan(0.5)
  })
})
