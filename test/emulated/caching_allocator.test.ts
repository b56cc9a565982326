// The CUDA caching allocator (native/cuda/caching_allocator.h) on the emulated device: after warm-up, creating and
// disposing tensors allocates nothing from CUDA, reused blocks hold each new tensor's values, an out-of-memory
// retries after returning the cache, and a private pool's memory serves only its own allocations and goes once its
// holder and its buffers have gone. Allocations are counted by the emulator (native/emulator/README.md).
import { describe, expect, it } from 'vitest'

import { Device, type Tensor } from '../../src/index.js'
import { native, type NativeEmulator } from '../../src/native.js'
import { emulated } from '../helpers/backends.js'
import { randomArray as seeded } from '../helpers/random.js'

if (process.env.BSSN_EMULATED === '1' && !emulated) throw new Error('BSSN_EMULATED=1 but the loaded addon is not the emulated build')
const counting = emulated && native().emulator!.cost.available
const suite = counting ? describe : describe.skip
const emu = (): NativeEmulator => native().emulator!

// Mixed sizes in floats: small classes, one over 1 MiB (a large class), one over the pinned pool's reads.
const sizes = [1, 3, 100, 1000, 5000, 70_000, 300_000]

// Random values, a new stream each call (never zeros: a reused block's stale values must not pass).
let seed = 2400
const randomArray = (n: number): Float32Array => seeded(n, ++seed)

// Checks `got` is `want` bit for bit (toEqual walks a large array slowly): the first index that differs, or -1.
function expectSame(got: Float32Array, want: Float32Array): void {
  expect(got.length).toBe(want.length)
  let bad = -1
  for (let i = 0; i < want.length && bad < 0; ++i) if (!Object.is(got[i], want[i])) bad = i
  expect(bad, bad < 0 ? '' : `index ${bad}: ${got[bad]} instead of ${want[bad]}`).toBe(-1)
}

// Device allocations made while `body` runs.
async function allocations(body: () => Promise<void>): Promise<number> {
  emu().cost.start()
  try {
    await body()
  } catch (e) {
    emu().cost.stop() // a failing body leaves counting off for the other tests
    throw e
  }
  return emu().cost.stop().deviceAllocations
}

// Creates a tensor of each size from random values, copies it on the device and reads the copy back: the copy's
// memory came from the cache (poisoned first, BSSN_POISON_ALLOCATIONS=1), so a stale block would show.
async function roundTrip(device: Device): Promise<void> {
  for (const n of sizes) {
    const data = randomArray(n)
    const source = device.tensor(data, [n])
    const copy = source.clone()
    source.dispose()
    expectSame(await copy.toArray(), data)
    copy.dispose()
  }
}

suite(`CUDA caching allocator (emulated)${counting ? '' : ' (skipped: needs the emulated build with counting)'}`, () => {
  it('after warm-up, tensors of mixed sizes are created and disposed with 0 device allocations, values intact', async () => {
    const device = Device.cuda(0)
    await roundTrip(device) // warm-up: fills the cache
    const made = await allocations(async () => {
      for (let round = 0; round < 3; ++round) await roundTrip(device)
    })
    expect(made).toBe(0)
    expect(emu().privatePool.cachedBytes(device.handle)).toBeGreaterThan(0)
  })

  it('returns its cache and retries when CUDA runs out of memory', async () => {
    const device = Device.cuda(0)
    device.emptyCache() // the suite's other files share this process's device: its cache holds only what follows
    await roundTrip(device)
    expect(emu().privatePool.cachedBytes(device.handle)).toBeGreaterThan(0)
    emu().failAllocation(1) // the next CUDA allocation fails
    const data = randomArray(12_345) // a size class nothing cached fits
    const t = device.tensor(data, [data.length])
    expect(emu().privatePool.cachedBytes(device.handle)).toBe(0) // given back before the retry
    expectSame(await t.toArray(), data)
    t.dispose()
  })

  it('a private pool serves only its own allocations, reuses within itself, and goes with its last holder', async () => {
    const device = Device.cuda(0)
    const pool = emu().privatePool.begin(device.handle)
    let kept: Tensor[] = []
    try {
      const first = sizes.map((n) => device.tensor(randomArray(n), [n]))
      for (const t of first) t.dispose() // back to the pool
      const reused = await allocations(async () => {
        kept = sizes.map((n) => device.tensor(randomArray(n), [n]))
      })
      expect(reused).toBe(0)
      for (const t of kept.slice(1)) t.dispose()
      kept = kept.slice(0, 1)
    } finally {
      emu().privatePool.end(device.handle)
    }
    const poolBytes = emu().privatePool.reservedBytes(pool)
    expect(poolBytes).toBeGreaterThan(0)
    // Outside, with the general cache empty: every allocation is new, though the pool has free blocks of each size.
    device.emptyCache()
    const outside: Tensor[] = []
    const made = await allocations(async () => {
      for (const n of sizes) outside.push(device.tensor(randomArray(n), [n]))
    })
    expect(made).toBe(sizes.length)
    for (const t of outside) t.dispose()
    device.emptyCache()
    const before = device.memoryStats().reservedBytes
    emu().privatePool.release(pool) // a buffer of the pool still holds it
    expect(device.memoryStats().reservedBytes).toBe(before)
    const data = randomArray(1)
    const source = device.tensor(data, [1])
    kept[0]!.copyFrom(source)
    source.dispose()
    expectSame(await kept[0]!.toArray(), data)
    device.emptyCache() // the source's block
    const held = device.memoryStats().reservedBytes
    kept[0]!.dispose() // the last holder
    expect(held - device.memoryStats().reservedBytes).toBe(poolBytes)
  })

  it('allocations inside a capture come from the private pool, with no allocation enqueued on the stream', async () => {
    const device = Device.cuda(0)
    device.emptyCache() // no cached block: without a pool the allocation is a cudaMallocAsync, refused in a capture
    expect(emu().privatePool.capture(device.handle, false).outcome).toMatch(/cudaMallocAsync/)
    const { outcome, values } = emu().privatePool.capture(device.handle, true)
    expect(outcome).toBe('ok')
    expect(values.length).toBe(1000)
    expect(values.every((v) => v === 3)).toBe(true)
  })
})
