// The emulated CUDA device itself (npm run test:emulated): its execution model catches what a GPU punishes, its
// faults on demand reach JS as errors, and the real CUDA backend's every kernel runs under it with grid-stride
// loops forced to wrap. Skips visibly in other builds; BSSN_EMULATED=1 (set by the script) makes that a failure.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { Adam, BSSN, Device, F, ganStep, SGD, snganCnnDiscriminator, snganCnnGenerator, SpectralNorm, type Tensor } from '../../src/index.js'
import { native, packageRoot, type NativeEmulator } from '../../src/native.js'
import { smallCnnDiscriminator, smallCnnGenerator } from '../../src/models/dcgan.js'
import { emulated } from '../helpers/backends.js'
import { expectCloseArray } from '../helpers/expect.js'
import { randomArray } from '../helpers/random.js'
import { settledStats } from '../helpers/memory.js'

if (process.env.BSSN_EMULATED === '1' && !emulated) throw new Error('BSSN_EMULATED=1 but the loaded addon is not the emulated build')
const suite = emulated ? describe : describe.skip
const reason = emulated ? '' : ' (skipped: needs the emulated build, npm run test:emulated)'
const emu = (): NativeEmulator => native().emulator!

// Runs `code` (an ES module body with `addon`, `bssn` and `emit(value)` in scope) in a fresh Node process on the
// same addon: for faults that end the CUDA context, as on a GPU. Returns what it emitted.
function inChild(code: string, env: NodeJS.ProcessEnv = {}): { result: unknown; stderr: string } {
  const prelude = `
    import { createRequire } from 'node:module'
    const addon = createRequire(import.meta.url)(process.env.BSSN_ADDON)
    const bssn = await import(${JSON.stringify(path.join(packageRoot, 'dist', 'index.js'))})
    const emit = (v) => console.log('RESULT ' + JSON.stringify(v))
  `
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', prelude + code], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  })
  const line = out.split('\n').find((l) => l.startsWith('RESULT '))
  if (!line) throw new Error(`the child emitted nothing; stdout: ${out}`)
  return { result: JSON.parse(line.slice(7)), stderr: '' }
}

suite(`the execution model${reason}`, () => {
  it('a block reduction is exact with its barrier and wrong without it (threads really interleave)', () => {
    const [withBarrier, ...withoutBarrier] = emu().probes.blockSums()
    expect(withBarrier).toBe((256 * 257) / 2)
    // Warp 0 gathers the other warps' partials: wrong in the block whose order runs it first.
    expect(withoutBarrier.some((sum) => sum !== (256 * 257) / 2)).toBe(true)
  })

  it('a missing barrier shows whichever side writes: a thread-0 broadcast read without it goes wrong too', () => {
    expect(emu().probes.broadcastWithoutBarrier()).toBeGreaterThan(0)
  })

  it('a full-mask shuffle and ballot wait only for lanes that have not exited (PTX semantics)', () => {
    const out = emu().probes.exitedLanes()
    expect(out.slice(0, 16)).toEqual(Array.from({ length: 16 }, (_, l) => 100 + (l ^ 1)))
    expect(out.slice(16)).toEqual(Array(16).fill(0xffff))
  })

  it('warp shuffles and ballots deliver the lanes CUDA defines', () => {
    const rows = emu().probes.warpOps()
    const n = 64
    const v = (t: number) => 100 + t
    const expected = [
      (t: number) => v((t & ~31) + 5),
      (t: number) => v((t & ~7) + 3),
      (t: number) => (t % 32 >= 2 ? v(t - 2) : v(t)),
      (t: number) => (t % 32 < 29 ? v(t + 3) : v(t)),
      (t: number) => v(t ^ 1),
      (t: number) => (((t % 32) ^ 16) < ((t % 32) & ~15) + 16 ? v(t ^ 16) : v(t)),
      () => 0xaaaaaaaa,
    ]
    expected.forEach((f, r) => expect(rows[r], `row ${r}`).toEqual(Array.from({ length: n }, (_, t) => f(t))))
  })

  it('atomicAdd on float and double across blocks, and dynamic shared memory per block', () => {
    expect(emu().probes.atomicsAndDynamicShared()).toEqual([1024, 1024, 299, 0])
  })

  it('launches a GPU refuses fail with cudaErrorInvalidConfiguration, and only those', () => {
    const limits = emu().probes.launchLimits()
    for (const [what, error] of Object.entries(limits))
      expect(error, what).toBe(what.endsWith('(allowed)') ? 'cudaSuccess' : 'cudaErrorInvalidConfiguration')
    expect(Object.keys(limits).length).toBe(8)
  })

  it('streams run asynchronously: a download read before its event is stale', () => {
    expect(emu().probes.staleRead()).toEqual([-1, 42])
  })

  it.each([
    ['divergentBarrier', /divergentBarrierKernel, block \(\d,0,0\): __syncthreads\(\) reached by 128 of 256 threads; 128 exited/],
    ['barrierInOneWarp', /barrierInOneWarpKernel, block \(0,0,0\): __syncthreads\(\) reached by 32 of 64 threads/],
    ['missingLane', /missingLaneKernel.*__shfl_down_sync: lane 30 reads lane 31, which has exited/],
    ['maskMismatch', /maskMismatchKernel.*__shfl_down_sync: lane 15 reads lane 16, which is not in mask 0x0000ffff/],
    ['maskWithoutSelf', /maskWithoutSelfKernel.*__shfl_sync called by lane 1 .* with mask 0x00000001, which does not name the calling lane/],
  ])('a kernel that breaks the model (%s) is a sticky launch failure naming it, not a hang', (which, pattern) => {
    const { result } = inChild(`emit(addon.emulator.probes.fatal(${JSON.stringify(which)}))`)
    expect(result).toMatch(/^cudaErrorLaunchFailure: unspecified launch failure \[emulator: kernel /)
    expect(result).toMatch(pattern)
  })
})

suite(`cooperative launches and the grid barrier${reason}`, () => {
  // An H100's residency: 132 SMs, 2048 threads and 32 blocks each, 228 KiB of shared memory with 1 KiB reserved
  // per block, 227 KiB per block with the opt-in.
  it('the device reports an H100\'s residency limits, and the occupancy calculator follows them', () => {
    const { values } = emu().probes.cooperative()
    expect(values).toMatchObject({
      multiProcessorCount: [132],
      cooperativeLaunch: [1],
      maxSharedMemoryPerMultiprocessor: [233472],
      maxSharedMemoryPerBlockOptin: [232448],
      reservedSharedMemoryPerBlock: [1024],
      maxThreadsPerMultiProcessor: [2048],
      maxBlocksPerMultiprocessor: [32],
      'occupancy 64 threads': [32],
      'occupancy 256 threads': [8],
      'occupancy 1024 threads': [2],
      'occupancy 32 threads, 115712 B': [2],
      'occupancy 32 threads, 115713 B': [1],
      'occupancy 32 threads, 232448 B': [1],
      'occupancy beyond the opt-in': [0],
    })
  })

  it('dynamic shared memory past 48 KiB needs the opt-in; a grid the card cannot hold resident is refused', () => {
    const { statuses } = emu().probes.cooperative()
    expect(statuses).toMatchObject({
      'set 232449 bytes': 'cudaErrorInvalidValue',
      '100000 bytes before the opt-in': 'cudaErrorInvalidConfiguration',
      'opt in 100000 bytes': 'cudaSuccess',
      'opt in 232448 bytes': 'cudaSuccess',
      'cooperative 133 blocks of 232448 B': 'cudaErrorCooperativeLaunchTooLarge',
      'cudaGetLastError after it': 'cudaErrorCooperativeLaunchTooLarge',
      'cooperative 265 blocks of 1024 threads': 'cudaErrorCooperativeLaunchTooLarge',
      'cooperative 1025 threads': 'cudaErrorInvalidConfiguration',
      'cooperative 132 blocks of 232448 B': 'cudaSuccess',
      'cooperative 264 blocks of 115712 B': 'cudaSuccess',
      synchronize: 'cudaSuccess',
      // Refused while capturing: the capture is invalidated, as by any failed launch.
      'exchange captured': 'cudaSuccess',
      'too large captured': 'cudaErrorCooperativeLaunchTooLarge',
      'end capture after a refused launch': 'cudaErrorStreamCaptureInvalidated',
    })
  })

  it('the grid barrier orders every block\'s writes before every read, and shared memory lives across it', () => {
    const { statuses, values } = emu().probes.cooperative()
    expect(statuses).toMatchObject({
      'exchange (helper)': 'cudaSuccess',
      'exchange synchronize': 'cudaSuccess',
      'exchange (cudaLaunchCooperativeKernel)': 'cudaSuccess',
      'exchange without the barrier': 'cudaSuccess',
      'last error at the end': 'cudaSuccess',
    })
    expect(values).toMatchObject({
      'wrong (helper)': [0],
      'wrong (cudaLaunchCooperativeKernel)': [0],
      'wrong (graph replay 0)': [0],
      'wrong (graph replay 1)': [0],
    })
    // The same kernel without its barrier: blocks run ahead and read values not yet written (NaN).
    expect(values['wrong (no barrier)']![0]).toBeGreaterThan(0)
  })

  it.each([
    ['gridMissingArrival', /gridMissingArrivalKernel, block \(2,0,0\): grid.sync\(\) reached by 192 of 256 threads of the grid; 64 exited/],
    ['gridSyncNotCooperative', /gridSyncNotCooperativeKernel, block \(\d,0,0\): grid.sync\(\) in a kernel not launched with cudaLaunchCooperativeKernel/],
    ['gridSyncBesideBarrier', /gridSyncBesideBarrierKernel, block \(\d,0,0\): __syncthreads\(\) reached by 32 of 64 threads; 32 wait at grid.sync\(\)/],
  ])('a grid barrier that cannot complete (%s) is a sticky launch failure naming it, not a hang', (which, pattern) => {
    const { result } = inChild(`emit(addon.emulator.probes.fatal(${JSON.stringify(which)}))`)
    expect(result).toMatch(/^cudaErrorLaunchFailure: unspecified launch failure \[emulator: kernel /)
    expect(result).toMatch(pattern)
  })
})

suite(`faults on demand reach JS as errors${reason}`, () => {
  it('out of memory at the n-th allocation: an Error naming the call and size, nothing leaked, the device usable', async () => {
    const device = Device.cuda(0)
    using w = device.randn([32, 16, 3, 3], { seed: 1 })
    const before = await settledStats(device)
    // The caching allocator's blocks go back first: each allocation then reaches CUDA, and what it kept is not a leak.
    const returned = async (): Promise<number> => {
      device.emptyCache()
      await device.synchronize()
      return emu().stats().deviceBytes
    }
    const emuBefore = await returned()
    for (let n = 1; n <= 4; n++) {
      emu().failAllocation(n, 2) // and the allocator's retry after returning its cache
      let error: unknown
      try {
        const norm = new BSSN([w], { mode: 'bssn' })
        norm.forward()
        norm.dispose()
      } catch (e) {
        error = e
      }
      emu().failAllocation(0)
      // Some counts land after the constructor (in forward): either way no abort, and an Error naming the call.
      if (error) expect(String(error)).toMatch(/cudaMallocAsync: out of memory.*requested \d+ bytes/)
      await device.synchronize()
      expect(device.memoryStats()).toMatchObject({ allocatedBytes: before.allocatedBytes, liveTensors: before.liveTensors })
      expect(await returned()).toBe(emuBefore)
    }
    using t = device.randn([8], { seed: 2 })
    expect((await t.toArray()).length).toBe(8)
  })

  it('a sticky launch failure: the next call or read throws naming the fault, the device stays unusable, no abort, nothing leaked', () => {
    const { result } = inChild(`
      const device = bssn.Device.cuda(0)
      const w = device.randn([16, 8, 3, 3], { seed: 1 })
      await device.synchronize()
      addon.emulator.failLaunch(1)
      // The fault happens on the stream: it surfaces at whichever call or read comes next, as on a GPU.
      let first
      try {
        const out = bssn.bssnNormalize(w)
        first = await out.toArray().then(() => 'resolved', (e) => String(e))
        out.dispose()
      } catch (e) {
        first = String(e)
      }
      const next = (() => { try { device.zeros([4]); return 'worked' } catch (e) { return String(e) } })()
      const read = await (async () => w.toArray())().then(() => 'resolved', (e) => String(e))
      w.dispose()
      emit({ first, next, read, after: device.memoryStats() })
    `)
    const r = result as { first: string; next: string; read: string; after: { allocatedBytes: number; liveTensors: number; liveBuffers: number } }
    expect(r.first).toMatch(/unspecified launch failure \[emulator: kernel \w+ faulted \(injected by bssnEmuFailLaunch\)\]/)
    expect(r.next).toMatch(/is unusable after an earlier error: .*unspecified launch failure.*restart the process/)
    expect(r.read).toMatch(/unusable after an earlier error|unspecified launch failure/)
    expect(r.after).toMatchObject({ allocatedBytes: 0, liveTensors: 0, liveBuffers: 0 })
  })

  it.each([
    ['cuBLAS', 'BSSN_CUBLAS_PATH', 'F.matmul(device.randn([4, 3], { seed: 1 }), device.randn([3, 2], { seed: 2 }))'],
    ['cuDNN', 'BSSN_CUDNN_PATH', 'F.conv2d(device.randn([1, 2, 5, 5], { seed: 1 }), device.randn([3, 2, 3, 3], { seed: 2 }))'],
  ])('a missing %s: an Error saying what was tried, the rest of the device keeps working', (name, variable, op) => {
    const { result } = inChild(
      `
      const device = bssn.Device.cuda(0)
      const F = bssn.F
      const failure = (() => { try { ${op}; return 'worked' } catch (e) { return String(e) } })()
      const t = device.randn([3], { seed: 5 })
      emit({ failure, info: device.info(), values: Array.from(await t.toArray()) })
    `,
      { [variable]: '/nonexistent/lib-missing.so' },
    )
    const r = result as { failure: string; info: Record<string, string>; values: number[] }
    expect(r.failure).toMatch(new RegExp(`${name} could not be loaded; tried:\\n  /nonexistent/lib-missing.so: cannot open shared object file`))
    expect(r.info[name === 'cuBLAS' ? 'cublasError' : 'cudnnError']).toMatch(/could not be loaded/)
    expect(r.values.length).toBe(3)
  })

  it('the device says plainly that it is emulated, and the benchmarks refuse it', () => {
    const device = Device.cuda(0)
    expect(device.emulated).toBe(true)
    expect(String(device.info().emulated)).toMatch(/kernels on the CPU.*not GPU figures/)
    expect(() =>
      execFileSync(process.execPath, [path.join(packageRoot, 'bench', 'train.mjs'), '--device', 'cuda', '--steps', '1'], {
        encoding: 'utf8',
        stdio: 'pipe',
      }),
    ).toThrow(/emulated CUDA device: its timings are not GPU figures/)
  })
})

// Every __global__ kernel of native/cuda, by name.
function cudaKernels(): string[] {
  const dir = path.join(packageRoot, 'native', 'cuda')
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cu'))
    .flatMap((f) => [...readFileSync(path.join(dir, f), 'utf8').matchAll(/__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)/g)].map((m) => m[1]))
}

suite(`the CUDA backend with grid-stride loops forced to wrap (grids capped at 3 blocks)${reason}`, () => {
  let oldCap = 0
  const launchesBefore: Record<string, number> = {}
  beforeAll(() => {
    oldCap = emu().setMaxGridBlocks(3)
    Object.assign(launchesBefore, emu().stats().kernelLaunches)
  })
  afterAll(() => {
    emu().setMaxGridBlocks(oldCap)
  })

  // Two SNGAN steps with BSSN on D, from the same seeds on both backends: every training op (cuDNN and cuBLAS
  // calls, elementwise, bias, batch norm, sums, Adam, BSSN forward and backward) against the CPU reference; with
  // the fused training forward (D fits on chip) and with the streamed kernels (BSSN_CUDA_FUSED=0).
  // Under AddressSanitizer both variants train the small CNN (16x16, 4 channels) instead, whose D fits on chip too:
  // with SNGAN's, the streamed variant took 297 s there and the fused one 73 s; the same kernels run, on less data.
  const model = process.env.BSSN_UNDER_SANITIZER === '1' ? 'small CNN' : 'SNGAN'
  it.each([
    ['', model],
    ['0', model],
  ])('two GAN training steps with BSSN match the CPU backend (BSSN_CUDA_FUSED=%s, %s)', async (fused, model) => {
    const sngan = model === 'SNGAN'
    const [size, zDim] = sngan ? [32, 128] : [16, 32]
    const run = async (device: Device) => {
      process.env.BSSN_CUDA_FUSED = fused
      const G = sngan ? snganCnnGenerator({ device, seed: 1 }) : smallCnnGenerator({ device, seed: 1, channels: 4 })
      const D = sngan ? snganCnnDiscriminator({ device, seed: 2 }) : smallCnnDiscriminator({ device, seed: 2, channels: 4 })
      const sn = new SpectralNorm(D, { mode: 'bssn' })
      const optG = new Adam(G.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
      const optD = new Adam(D.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
      const real = device.rand([2, 3, size, size], { seed: 3, low: -1, high: 1 })
      const losses: number[] = []
      let seed = 10
      for (let step = 0; step < 2; step++) {
        const { lossD, lossG } = ganStep({ generator: G, discriminator: D, optG, optD, normalization: sn,
          sampleZ: () => device.randn([2, zDim], { seed: seed++ }), sampleReal: () => real })
        losses.push((await lossD.toArray())[0], (await lossG.toArray())[0])
        lossD.dispose()
        lossG.dispose()
      }
      const params = await Promise.all([...G.parameters(), ...D.parameters()].map((p) => p.toArray()))
      ;[sn, optG, optD, G, D, real].forEach((x) => x.dispose())
      delete process.env.BSSN_CUDA_FUSED
      return { losses, params }
    }
    const cpu = await run(Device.cpu())
    // fp32 parity: TF32 convolutions (on by default, as PyTorch) differ from the CPU's by ~1e-3 per product, which
    // Adam's normalized steps carry straight into the weights.
    const device = Device.cuda(0)
    device.tf32 = { conv: false }
    const cuda = await run(device).finally(() => (device.tf32 = { conv: true }))
    expectCloseArray(Float32Array.from(cuda.losses), Float32Array.from(cpu.losses), 1e-3, 'losses')
    cuda.params.forEach((p, i) => expectCloseArray(p, cpu.params[i], 1e-3, `parameter ${i}`))
  }, 900_000) // the streamed variant takes 300 s under AddressSanitizer with capped grids (measured 297 s in CI)

  it('SGD with momentum, eval-mode batch norm, fills and random draws match the CPU backend', async () => {
    const run = async (device: Device) => {
      const data = randomArray(3000, 7)
      const p = device.tensor(data, [3000])
      const g = device.randn([3000], { seed: 8 })
      const opt = new SGD([p], { lr: 0.1, momentum: 0.9 })
      for (let i = 0; i < 2; i++) {
        p.grad = g
        opt.step()
      }
      const x = device.randn([4, 3, 20, 20], { seed: 9 })
      const stats = { runningMean: device.randn([3], { seed: 10 }), runningVar: device.rand([3], { seed: 11, low: 0.5, high: 2 }) }
      const y = F.batchNorm(x, device.rand([3], { seed: 12 }), device.randn([3], { seed: 13 }), stats, { training: false })
      // noise whose seed is read on the device (a captured step's draws), from a table of two seeds
      const table = device.tensor(new Float32Array(new BigUint64Array([15n, 2n ** 40n + 16n]).buffer), [4])
      const drawn = device.empty([3000])
      native().ops.randnFromTable(drawn.handle, table.handle, 1, 0.5)
      const product = F.mul(g, device.rand([3000], { seed: 17 })) // elementwise binary ops (a training step has few left)
      const out = await Promise.all([p, y, device.zeros([3000]), device.rand([3000], { seed: 14 }), drawn, product].map((t: Tensor) => t.toArray()))
      opt.dispose()
      return out
    }
    const cpu = await run(Device.cpu())
    const cuda = await run(Device.cuda(0))
    cuda.forEach((a, i) => expectCloseArray(a, cpu[i], 1e-5, `output ${i}`))
  })

  // updateSigmas is a training forward without outputs: fused, and streamed (BSSN_CUDA_FUSED=0; the [900, 4] layer's
  // W^T u sums split over row ranges).
  it.each(['', '0'])('BSSN eval mode and updateSigmas on mixed layers match the CPU backend (BSSN_CUDA_FUSED=%s)', async (fused) => {
    const shapes = [[16, 3, 3, 3], [900, 4], [10], [6, 9, 1, 1]]
    const make = (device: Device) => shapes.map((s, i) => device.tensor(randomArray(s.reduce((a, b) => a * b, 1), 40 + i, 0.1), s))
    const run = async (device: Device) => {
      process.env.BSSN_CUDA_FUSED = fused
      const ws = make(device)
      const norm = new BSSN(ws, { mode: 'bssn', scale: 1.3 })
      norm.updateSigmas()
      norm.eval()
      const out = await Promise.all(norm.forward().map((t) => t.toArray()))
      const sigmas = await norm.sigmas()
      norm.dispose()
      ws.forEach((w) => w.dispose())
      delete process.env.BSSN_CUDA_FUSED
      return { out, sigmas }
    }
    const cpu = await run(Device.cpu())
    const cuda = await run(Device.cuda(0))
    cuda.out.forEach((a, i) => expectCloseArray(a, cpu.out[i], 2e-5, `layer ${i}`))
    expect(cuda.sigmas.map((s) => s.divisor)).toEqual(cpu.sigmas.map((s) => expect.closeTo(s.divisor, 4)))
  })

  it('kernels declare shared memory with BSSN_SHARED (fresh and poisoned per block here), never plain __shared__', () => {
    const dir = path.join(packageRoot, 'native', 'cuda')
    const offenders = readdirSync(dir)
      .filter((f) => f.endsWith('.cu') || f.endsWith('.cuh'))
      .filter((f) => /^\s*(?!\/\/).*\b__shared__\b/m.test(readFileSync(path.join(dir, f), 'utf8').replace(/^.*BSSN_(DYNAMIC_)?SHARED.*$/gm, '').replace(/\/\/.*$/gm, '')))
    expect(offenders).toEqual([])
  })

  it('every kernel in native/cuda ran in this suite, through the launchers CudaDevice calls', () => {
    const after = emu().stats().kernelLaunches
    const missing = cudaKernels().filter((k) => !((after[k] ?? 0) > (launchesBefore[k] ?? 0)))
    expect(cudaKernels().length).toBeGreaterThan(15)
    expect(missing, 'kernels never launched with capped grids').toEqual([])
  })
})
