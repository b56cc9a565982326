// The CPU backend grown up: products and convolutions on a CPU BLAS against the reference loops, a caching
// allocator (reservedBytes, emptyCache), and a bounded stream queue, so long runs that never read stay bounded.
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'

import { Adam, bssnNormalize, Device, F, ganStep, SpectralNorm, type Tensor } from '../src/index.js'
import { mlpDiscriminator, mlpGenerator } from '../src/models/mlp.js'
import { native, packageRoot } from '../src/native.js'
import { expectCloseArray } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'

const cpu = () => Device.cpu()
const info = Device.cpu().info()
const blasReason = typeof info.blas === 'string' ? undefined : `no CPU BLAS: ${info.blasError}`

// Runs `compute` on the BLAS path and on the reference loops; returns both results.
async function bothPaths(compute: () => Promise<Float32Array[]>): Promise<[Float32Array[], Float32Array[]]> {
  try {
    native().setCpuBlas(true)
    const blas = await compute()
    native().setCpuBlas(false)
    const reference = await compute()
    return [blas, reference]
  } finally {
    native().setCpuBlas(true)
  }
}

describe.skipIf(blasReason !== undefined)(`CPU BLAS path against the reference loops${blasReason ? ` (skipped: ${blasReason})` : ''}`, () => {
  afterEach(() => native().setCpuBlas(true))

  it('names the BLAS in device.info()', () => {
    expect(String(info.blas)).toMatch(/\S/)
  })

  it.each([
    [1, 1, 1], [7, 5, 3], [33, 17, 65], [128, 1, 300], [5, 300, 2], [300, 257, 129],
  ])('matmul %i x %i x %i in every transposition', async (m, n, k) => {
    for (const transA of [false, true])
      for (const transB of [false, true]) {
        const a = randomArray(m * k, m + 10 * k + (transA ? 1 : 0))
        const b = randomArray(k * n, n + 10 * k + (transB ? 2 : 0))
        const [blas, reference] = await bothPaths(async () => {
          const ta = cpu().tensor(a, transA ? [k, m] : [m, k])
          const tb = cpu().tensor(b, transB ? [n, k] : [k, n])
          const c = F.matmul(ta, tb, { transA, transB })
          const out = [await c.toArray()]
          ;[ta, tb, c].forEach((t) => t.dispose())
          return out
        })
        expectCloseArray(blas[0], reference[0], 2e-6, `transA ${transA} transB ${transB}`)
      }
  })

  // [n, cIn, h, w, cOut, kh, kw, stride, pad]: odd sizes, strides and pads, 1x1 and 5x5 kernels, and a batch that
  // spans two column chunks.
  it.each([
    [1, 1, 1, 1, 1, 1, 1, 1, 0], [3, 2, 7, 5, 4, 3, 3, 1, 1], [2, 3, 9, 11, 5, 5, 5, 2, 2], [4, 5, 8, 8, 3, 4, 4, 2, 1],
    [2, 4, 10, 7, 6, 1, 1, 3, 0], [1, 6, 6, 6, 2, 3, 2, 1, 0], [30, 16, 32, 32, 8, 3, 3, 1, 1],
  ])('conv2d forward, data and filter gradients [%i, %i, %i, %i] * [%i, _, %i, %i] stride %i pad %i', async (n, cIn, h, w, cOut, kh, kw, s, p) => {
    const x = randomArray(n * cIn * h * w, 1 + n + h)
    const wt = randomArray(cOut * cIn * kh * kw, 2 + cOut + kw, 0.3)
    const [blas, reference] = await bothPaths(async () => {
      const tx = cpu().tensor(x, [n, cIn, h, w])
      const tw = cpu().tensor(wt, [cOut, cIn, kh, kw])
      tx.requiresGrad = tw.requiresGrad = true
      const y = F.conv2d(tx, tw, undefined, { stride: s, padding: p })
      const dy = cpu().tensor(randomArray(y.size, 3 + n), y.shape)
      y.backward(dy)
      const out = await Promise.all([y, tx.grad!, tw.grad!].map((t: Tensor) => t.toArray()))
      ;[tx.grad!, tw.grad!, tx, tw, y, dy].forEach((t) => t.dispose())
      return out
    })
    ;['forward', 'data gradient', 'filter gradient'].forEach((what, i) => expectCloseArray(blas[i], reference[i], 2e-6, what))
  })
})

// The soaks take minutes under a sanitizer and add nothing the short tests do not check there.
describe.skipIf(process.env.BSSN_UNDER_SANITIZER === '1')('bounded memory on the CPU', () => {
  it('10^4 MLP GAN steps with a loss read every 1000: allocated bytes bounded, reserved bytes flat after warm-up', async () => {
    const device = cpu()
    const batch = 32
    const G = mlpGenerator({ device, seed: 1, width: 32, depth: 2 })
    const D = mlpDiscriminator({ device, seed: 2, width: 32, depth: 2 })
    const sn = new SpectralNorm(D, { mode: 'bssn' })
    const optG = new Adam(G.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
    const optD = new Adam(D.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
    const real = device.randn([batch, 2], { seed: 3 })
    await device.synchronize()
    const base = device.memoryStats().allocatedBytes
    let seed = 10
    let maxAllocated = 0
    const reserved: number[] = []
    for (let step = 1; step <= 10_000; step++) {
      const { lossD, lossG } = ganStep({ generator: G, discriminator: D, optG, optD, normalization: sn,
        sampleZ: () => device.randn([batch, 2], { seed: seed++ }), sampleReal: () => real })
      if (step % 1000 === 0) {
        expect(Number.isFinite((await lossD.toArray())[0])).toBe(true)
        reserved.push(device.memoryStats().reservedBytes)
      }
      lossD.dispose()
      lossG.dispose()
      if (step % 50 === 0) maxAllocated = Math.max(maxAllocated, device.memoryStats().allocatedBytes)
    }
    // The queue's byte bound (256 MiB by default) is far above what this model's queued steps hold: the real bound
    // here is the op count, 64 ops, well under one step's tensors. 4 MiB is generous and fixed.
    expect(maxAllocated - base).toBeLessThan(4 * 2 ** 20)
    // Flat after warm-up: a block or two more or less in flight at the sample, never growth (a leak over 8000
    // steps would reserve megabytes).
    expect(Math.max(...reserved.slice(1)) - reserved[1]).toBeLessThan(2 ** 20)
    ;[sn, optG, optD, G, D, real].forEach((x) => x.dispose())
  }, 300_000)

  it('10^5 bssnNormalize calls with no reads stay bounded', async () => {
    const device = cpu()
    const w = device.randn([16, 8, 3, 3], { seed: 1 })
    await device.synchronize()
    const base = device.memoryStats().allocatedBytes
    let maxAllocated = 0
    for (let i = 0; i < 100_000; i++) {
      bssnNormalize(w).dispose()
      if (i % 1000 === 0) maxAllocated = Math.max(maxAllocated, device.memoryStats().allocatedBytes)
    }
    await device.synchronize()
    expect(maxAllocated - base).toBeLessThan(64 * 16 * 8 * 9 * 4 + 2 ** 20)
    w.dispose()
    await device.synchronize()
    expect(device.memoryStats().allocatedBytes).toBeLessThanOrEqual(base - 16 * 8 * 9 * 4)
  }, 120_000)

  it('a small queue bound (BSSN_CPU_QUEUE_OPS) holds queued work to a few ops', () => {
    const code = `
      const bssn = await import(${JSON.stringify(path.join(packageRoot, 'dist', 'index.js'))})
      const device = bssn.Device.cpu()
      let max = 0
      for (let i = 0; i < 200; i++) {
        const t = device.randn([256, 1024], { seed: i })  // 1 MiB each, disposed at once: only the queue holds it
        t.dispose()
        max = Math.max(max, device.memoryStats().allocatedBytes)
      }
      await device.synchronize()
      console.log(JSON.stringify({ max, end: device.memoryStats().allocatedBytes }))
    `
    const run = (ops: string) =>
      JSON.parse(
        execFileSync(process.execPath, ['--input-type=module', '-e', code], { env: { ...process.env, BSSN_CPU_QUEUE_OPS: ops }, encoding: 'utf8' }),
      ) as { max: number; end: number }
    const small = run('4')
    expect(small.max).toBeLessThanOrEqual(5 * 2 ** 20)
    expect(small.end).toBe(0)
  })

  it('freed blocks are cached and reused (reservedBytes flat), and emptyCache returns them', async () => {
    const device = cpu()
    // Each buffer is freed once its fill has run: the next one reuses its block.
    const churn = async () => {
      for (let i = 0; i < 10; i++) {
        device.zeros([3, 1000, 1000]).dispose()
        await device.synchronize()
      }
      return device.memoryStats()
    }
    // Start from an empty cache: a block an earlier test freed (its free queued behind its work) would be reused.
    await device.synchronize()
    device.emptyCache()
    const before = device.memoryStats()
    const first = await churn()
    const second = await churn()
    expect(first.allocatedBytes).toBe(before.allocatedBytes)
    expect(first.reservedBytes - before.reservedBytes).toBeGreaterThanOrEqual(12e6)  // kept for reuse
    expect(first.reservedBytes - before.reservedBytes).toBeLessThan(2 * 12e6)  // one block, not ten
    expect(second.reservedBytes).toBe(first.reservedBytes)  // and reused: nothing new from the system
    device.emptyCache()
    expect(device.memoryStats().reservedBytes).toBeLessThanOrEqual(before.reservedBytes)
  })
})
