// Errors through promises: toArray(), sigmas(), getState(), synchronize(), timestamp(), kernelTimes() reject with
// the same class and `code` as a synchronous call throws (never a bare Error from the worker thread), and never
// throw synchronously. The CUDA halves run on the emulated device (npm run test:emulated), whose faults on demand
// (native/emulator) make a read wait behind a faulting kernel and an allocation fail.
import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'

import { afterEach, describe, expect, it } from 'vitest'

import { BSSN, Device, type SharedTensorDescriptor, Tensor } from '../src/index.js'
import { native, packageRoot } from '../src/native.js'
import { emulated, forEachBackend } from './helpers/backends.js'
import { Peer } from './helpers/peer.js'

const run = promisify(execFile)

interface Settled {
  how: 'resolved' | 'rejected' | 'threw'
  name?: string
  code?: string
  message?: string
}

// How a promise-returning call ended; 'threw' is itself a failure of the contract.
async function settle(call: () => Promise<unknown>): Promise<Settled> {
  let promise: Promise<unknown>
  try {
    promise = call()
  } catch (e) {
    return { how: 'threw', ...describeError(e) }
  }
  try {
    await promise
    return { how: 'resolved' }
  } catch (e) {
    return { how: 'rejected', ...describeError(e) }
  }
}

function describeError(e: unknown): Omit<Settled, 'how'> {
  return { name: (e as Error)?.constructor?.name, code: (e as { code?: string })?.code, message: String((e as Error)?.message ?? e) }
}

const peers: Peer[] = []
afterEach(async () => {
  await Promise.all(peers.splice(0).map((p) => p.stop()))
})

forEachBackend((device) => {
  it('a disposed tensor or BSSN: every promise rejects with ERR_BSSN_DISPOSED, none throws', async () => {
    const d = device()
    const w = d.randn([4, 3], { seed: 1 })
    const norm = new BSSN([w])
    const handle = w.handle
    norm.dispose()
    w.dispose()
    for (const [what, call] of [
      ['toArray', () => w.toArray()],
      ['the native toArray', () => handle.toArray()],
      ['sigmas', () => norm.sigmas()],
      ['getState', () => norm.getState(0)],
    ] as const)
      expect(await settle(call), what).toMatchObject({ how: 'rejected', name: 'Error', code: 'ERR_BSSN_DISPOSED' })
  })

  it('a bad layer index: getState rejects with ERR_BSSN_OUT_OF_RANGE (a RangeError)', async () => {
    const d = device()
    using w = d.randn([4, 3], { seed: 1 })
    using norm = new BSSN([w])
    expect(await settle(() => norm.getState(3))).toMatchObject({ how: 'rejected', name: 'RangeError', code: 'ERR_BSSN_OUT_OF_RANGE' })
  })

  it("an opened tensor whose owner is gone: toArray() rejects with ERR_BSSN_SHARE_GONE; dispose() does not throw", async () => {
    const d = device()
    const w = d.randn([8, 8], { seed: 2 })
    const opened = Tensor.open(w.share(), d)
    w.dispose()
    expect(await settle(() => opened.toArray())).toMatchObject({ how: 'rejected', name: 'Error', code: 'ERR_BSSN_SHARE_GONE' })
    expect(() => opened.dispose()).not.toThrow()
    expect(() => opened.dispose()).not.toThrow()
  })

  it('an owner process that exits: the importer\'s toArray() rejects with ERR_BSSN_SHARE_GONE', async () => {
    const d = device()
    const peer = await Peer.start('process')
    peers.push(peer)
    const { descriptor } = await peer.call<{ descriptor: SharedTensorDescriptor }>({ op: 'export', device: d.kind, shape: [4, 4], seed: 3 })
    const opened = Tensor.open(descriptor, d)
    expect((await opened.toArray()).length).toBe(16)
    await peer.request({ op: 'exit', code: 0 })
    await peer.exited
    expect(await settle(() => opened.toArray())).toMatchObject({ how: 'rejected', name: 'Error', code: 'ERR_BSSN_SHARE_GONE' })
    expect(() => opened.dispose()).not.toThrow()
  })
})

const suite = emulated ? describe : describe.skip
const reason = emulated ? '' : ' (skipped: needs the emulated build, npm run test:emulated)'

suite(`the emulated CUDA device: faults and out-of-memory through promises${reason}`, () => {
  it('out of device memory while a large read stages its copy: toArray() rejects with ERR_BSSN_OUT_OF_MEMORY', async () => {
    const d = Device.cuda(0)
    // Larger than the pinned pool's blocks (64 MiB): the read first copies to a device buffer of its own.
    using big = d.tensor(new Float32Array(17 << 20), [17 << 20])
    d.emptyCache() // no cached block serves the staging buffer
    native().emulator!.failAllocation(1, 2) // and the caching allocator's retry
    const read = await settle(() => big.toArray())
    native().emulator!.failAllocation(0)
    expect(read).toMatchObject({ how: 'rejected', name: 'Error', code: 'ERR_BSSN_OUT_OF_MEMORY' })
    expect(read.message).toMatch(/out of memory/)
    expect((await big.toArray()).length).toBe(17 << 20) // not sticky: the device still works
  })

  it('a kernel that faults while a read waits behind it: every promise rejects with ERR_BSSN_DEVICE_FAULT', async () => {
    // The fault ends the CUDA context for the process, as on a GPU: a child process of its own (asynchronous).
    const code = `
      import { createRequire } from 'node:module'
      const addon = createRequire(import.meta.url)(process.env.BSSN_ADDON)
      const bssn = await import(${JSON.stringify(path.join(packageRoot, 'dist', 'index.js'))})
      const settle = async (call) => {
        let p
        try { p = call() } catch (e) { return { how: 'threw', name: e.constructor.name, code: e.code, message: e.message } }
        try { await p; return { how: 'resolved' } } catch (e) { return { how: 'rejected', name: e.constructor.name, code: e.code, message: e.message } }
      }
      const device = bssn.Device.cuda(0)
      const w = device.randn([64, 64], { seed: 1 })
      const norm = new bssn.BSSN([w])
      const big = device.randn([512, 256, 3, 3], { seed: 2 })
      await device.synchronize()
      // Six slow kernels (about 0.3 s each on the emulator), the last of which faults: the read below is enqueued
      // behind it long before it runs, even on a busy machine.
      addon.emulator.failLaunch(6)
      let y
      for (let i = 0; i < 6; i++) y = bssn.F.relu(big)
      const r = {}
      r.toArray = await settle(() => y.toArray()) // waits for the faulting kernel on the thread pool
      r.synchronize = await settle(() => device.synchronize())
      r.timestamp = await settle(() => device.timestamp())
      r.kernelTimes = await settle(() => device.kernelTimes())
      r.sigmas = await settle(() => norm.sigmas())
      r.getState = await settle(() => norm.getState(0))
      r.again = await settle(() => w.toArray())
      console.log('RESULT ' + JSON.stringify(r))
    `
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', code], { env: process.env, timeout: 50_000 })
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT '))
    expect(line, stdout).toBeDefined()
    const r = JSON.parse(line!.slice(7)) as Record<string, Settled>
    // The read that waited saw the fault on its worker thread (the fence's message), not at its call.
    expect(r.toArray.message).toMatch(/cudaEventSynchronize: .*unspecified launch failure/)
    for (const [what, settled] of Object.entries(r)) expect(settled, what).toMatchObject({ how: 'rejected', name: 'Error', code: 'ERR_BSSN_DEVICE_FAULT' })
  })
})
