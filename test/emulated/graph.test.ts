// Stream capture and CUDA graphs on the emulated CUDA device (npm run test:emulated): a capture records kernel
// launches (and copies, memsets, library calls and child graphs: capture_step.test.ts) without running them, a
// replay runs them in order with the arguments bound at capture, as often as launched, and every call CUDA forbids
// (or the emulator does not capture) during a capture fails as on a GPU, invalidates the capture and leaves no
// sticky error. The probes are in native/emulator/probes.cu. Skips visibly in other builds; BSSN_EMULATED=1 (set by
// the script) makes that a failure.
import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'

import { native, type NativeEmulator, type NativeEmulatorReport } from '../../src/native.js'
import { emulated } from '../helpers/backends.js'
import { expectCloseArray } from '../helpers/expect.js'
import { randomArray, rng } from '../helpers/random.js'

if (process.env.BSSN_EMULATED === '1' && !emulated) throw new Error('BSSN_EMULATED=1 but the loaded addon is not the emulated build')
const suite = emulated ? describe : describe.skip
const reason = emulated ? '' : ' (skipped: needs the emulated build, npm run test:emulated)'
const emu = (): NativeEmulator => native().emulator!

const Global = 0
const ThreadLocal = 1
const Relaxed = 2
const modeName = ['Global', 'ThreadLocal', 'Relaxed']
const ok = 'cudaSuccess'
const unsupported = 'cudaErrorStreamCaptureUnsupported'
const invalidated = 'cudaErrorStreamCaptureInvalidated'
const [statusNone, statusActive, statusInvalidated] = [0, 1, 2]

const n = 1000 // 8 blocks of 128 threads, the last one partial
const blocks = Math.ceil(n / 128)

// Random scalars for out = (in * s0 + s1) * s2 + s3, away from 1 and 0 so that any other order differs.
function randomScalars(seed: number): number[] {
  const random = rng(seed)
  return [1.5 + random(), random() - 0.5, -(1.5 + random()), 2 + random()].map(Math.fround)
}

// What the probe graph leaves in `out`, computed in float32 as the kernels do.
function expectedOut(input: Float32Array, s: number[]): Float32Array {
  const f = Math.fround
  return input.map((x) => f(f(f(f(x * s[0]) + s[1]) * s[2]) + s[3]))
}
const times = (a: Float32Array, k: number) => a.map((x) => x * k)

function expectAllSucceeded(r: NativeEmulatorReport, except: Record<string, string> = {}): void {
  for (const [what, status] of Object.entries(r.statuses)) expect(status, what).toBe(except[what] ?? ok)
}

// Runs `code` (an ES module body with `addon` and `emit(value)` in scope) in a fresh Node process on the same addon:
// for a fault that ends the CUDA context. Returns what it emitted.
function inChild(code: string): unknown {
  const prelude = `
    import { createRequire } from 'node:module'
    const addon = createRequire(import.meta.url)(process.env.BSSN_ADDON)
    const emit = (v) => console.log('RESULT ' + JSON.stringify(v))
  `
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', prelude + code], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  })
  const line = out.split('\n').find((l) => l.startsWith('RESULT '))
  if (!line) throw new Error(`the child emitted nothing; stdout: ${out}`)
  return JSON.parse(line.slice(7))
}

suite(`stream capture and graph replay${reason}`, () => {
  it.each([Global, ThreadLocal, Relaxed])(
    'capture (mode %i) records without running; each replay runs the nodes in order, with the captured arguments, and counts as launches',
    (mode) => {
      const input = randomArray(n, 100 + mode)
      const scalars = randomScalars(200 + mode)
      const before = emu().stats()
      const r = emu().probes.graphReplay(input, scalars, 3, mode)
      const after = emu().stats()
      expectAllSucceeded(r)
      const v = r.values
      expect(v.captureStatus).toEqual([statusActive])
      expect(v.captureStatusAfterEnd).toEqual([statusNone])
      // Nothing ran and nothing counted while capturing: the output is still the allocation's NaN poison.
      expect(v.statsDuringCapture).toEqual([0, 0, 0, 0])
      expect(v.outAfterCapture.every(Number.isNaN)).toBe(true)
      expect(v.accAfterCapture).toEqual(Array(n).fill(0))
      expect(v.countAfterCapture).toEqual([0])
      // Each launch runs the whole sequence once, in capture order (copy, affine 1, affine 2, accumulate).
      expect(v.countAfterEach).toEqual([1, 2, 3])
      const out = expectedOut(input, scalars)
      expectCloseArray(v.out, out, 1e-6, 'out')
      expectCloseArray(v.acc, times(out, 3), 1e-6, 'acc')
      // Statistics: [launches, graphLaunches, blocks, threads]; each node is a launch of its kernel.
      expect(v.statsDuringReplays).toEqual([3 * 4, 3, 3 * 4 * blocks, 3 * 4 * blocks * 128])
      expect(after.graphLaunches - before.graphLaunches).toBe(3)
      const launched = (k: string) => (after.kernelLaunches[k] ?? 0) - (before.kernelLaunches[k] ?? 0)
      expect([launched('graphCopyKernel'), launched('graphAffineKernel'), launched('graphAccumulateKernel')]).toEqual([3, 6, 3])
    },
  )

  it('an executable outlives its graph and its own destruction while replays are enqueued; replays of one executable run in launch order, one at a time', () => {
    const input = randomArray(n, 300)
    const scalars = randomScalars(301)
    const r = emu().probes.graphLifetime(input, scalars)
    // The replay on the second stream waits for the one held behind the gate kernel.
    expectAllSucceeded(r, { queryWhileGated: 'cudaErrorNotReady' })
    expect(r.values.countWhileGated).toEqual([0])
    expect(r.values.count).toEqual([2])
    const out = expectedOut(input, scalars)
    expectCloseArray(r.values.out, out, 1e-6, 'out')
    expectCloseArray(r.values.acc, times(out, 2), 1e-6, 'acc')
  })

  it.each([Global, ThreadLocal, Relaxed])(
    'other threads wait on events and launch on their own streams while this thread captures (mode %i) and replays',
    (mode) => {
      const input = randomArray(300, 400 + mode)
      const rounds = 40
      const r = emu().probes.captureWhileOthersWait(input, rounds, mode)
      expectAllSucceeded(r)
      expect(r.values.mainErrors).toEqual([0])
      expect(r.values.otherErrors).toEqual([0])
      expect(r.values.otherRounds[0]).toBeGreaterThan(0)
      expect(r.values.count).toEqual([rounds])
      const out = expectedOut(input, [1.5, -0.25, 0.5, 2])
      expectCloseArray(r.values.out, out, 1e-6, 'out')
      expectCloseArray(r.values.acc, times(out, rounds), 1e-5, 'acc')
    },
  )
})

suite(`what a capture refuses${reason}`, () => {
  // Checks a captureError report: the op's status, whether it invalidated the capture, and that nothing is sticky.
  function expectCapture(r: NativeEmulatorReport, op: string, kills: boolean, dropped = 0): void {
    const s = r.statuses
    expect(s.begin).toBe(ok)
    expect(s.launchBefore).toBe(ok)
    expect(s.op).toBe(op)
    expect(s.opLastError, 'an error is the last error too').toBe(op)
    expect(r.values.captureStatus).toEqual([kills ? statusInvalidated : statusActive])
    // Once invalidated, launches into the capture fail, and EndCapture ends it without a graph.
    expect(s.launchAfter).toBe(kills ? invalidated : ok)
    expect(s.end).toBe(kills ? invalidated : ok)
    expect(r.values.graphNull).toEqual([kills ? 1 : 0])
    expect(r.values.captureStatusAfterEnd).toEqual([statusNone])
    expect(s.lastErrorAfterEnd).toBe(kills ? invalidated : ok)
    expect(s.lastErrorCleared).toBe(ok)
    // Not sticky: plain work on the same stream runs, and what was captured never ran (out = in * 2 + 1 only).
    expect(s.plainLaunch).toBe(ok)
    expect(s.plainSync).toBe(ok)
    expect(r.values.dropped).toEqual([dropped])
  }

  // Recorded as graph nodes, as on a GPU (a copy between device and pinned memory, a memset, the emulated cuBLAS and
  // cuDNN's work, a child graph); their replays are tested in capture_step.test.ts.
  const capturedOnStream = ['memcpyAsync', 'memsetAsync', 'enqueue', 'graphLaunch']
  // CUDA captures an event record, a dependency or memory nodes here; the emulator refuses them (README.md).
  const onCapturingStream = ['memcpyAsyncPageableSource', 'eventRecord', 'streamWaitEvent', 'mallocAsync', 'freeAsync', 'streamSynchronize', 'streamQuery']
  const unsafe = ['malloc', 'free', 'hostAlloc', 'freeHost', 'memcpy', 'memcpyAsyncPageable', 'deviceSynchronize', 'streamSynchronizeOther']
  const allowed = ['otherStreamWork', 'eventQuery', 'eventSynchronize', 'streamQueryOther']
  const cases = (ops: string[], modes: number[]) => ops.flatMap((op) => modes.map((mode) => [op, modeName[mode], mode] as const))

  it.each(cases([...capturedOnStream, ...onCapturingStream], [Global, ThreadLocal, Relaxed]))(
    'work other than a kernel on the capturing stream (%s, %s) is recorded (the capture goes on) or refused (invalidating it)',
    (op, _name, mode) => {
      const input = randomArray(200, 500 + op.length + mode)
      const r = emu().probes.captureError(op, mode, input)
      const recorded = capturedOnStream.includes(op)
      // The emulated library's arguments are released once: refused at once, or with the graph (destroyed unlaunched).
      expectCapture(r, recorded ? ok : unsupported, !recorded, op === 'enqueue' ? 1 : 0)
      // The unlaunched graph ran nothing.
      expect(r.values.plain).toEqual(Array.from(input, (x) => Math.fround(2 * x + 1)))
    },
  )

  it.each(cases(unsafe, [Global, ThreadLocal]))('an unsafe call of the capturing thread (%s, %s) is refused and invalidates the capture', (op, _name, mode) => {
    const input = randomArray(200, 600 + op.length + mode)
    const r = emu().probes.captureError(op, mode, input)
    expectCapture(r, unsupported, true)
    expect(r.values.plain).toEqual(Array.from(input, (x) => Math.fround(2 * x + 1)))
  })

  it.each(cases(unsafe, [Relaxed]))('a Relaxed capture allows the unsafe call %s', (op) => {
    const input = randomArray(200, 700 + op.length)
    const r = emu().probes.captureError(op, Relaxed, input)
    expectCapture(r, ok, false)
    expect(r.values.plain).toEqual(Array.from(input, (x) => Math.fround(2 * x + 1)))
  })

  it.each(cases(allowed, [Global, ThreadLocal, Relaxed]))('%s during a capture (%s) is allowed', (op, _name, mode) => {
    const input = randomArray(200, 800 + op.length + mode)
    const r = emu().probes.captureError(op, mode, input)
    expectCapture(r, ok, false)
    expect(r.values.plain).toEqual(Array.from(input, (x) => Math.fround(2 * x + 1)))
  })

  it.each([Global, ThreadLocal, Relaxed])('an invalid launch configuration during a capture (mode %i) fails the launch and invalidates the capture', (mode) => {
    const r = emu().probes.captureError('invalidLaunch', mode, randomArray(200, 900 + mode))
    expectCapture(r, 'cudaErrorInvalidConfiguration', true)
  })

  it('the legacy stream while a blocking stream captures: work is refused (cudaErrorStreamCaptureImplicit, invalidating), a query is refused alone', () => {
    const input = randomArray(200, 950)
    expectCapture(emu().probes.captureError('legacyLaunch', ThreadLocal, input), 'cudaErrorStreamCaptureImplicit', true)
    expectCapture(emu().probes.captureError('legacyIsCapturing', ThreadLocal, input), 'cudaErrorStreamCaptureImplicit', false)
  })

  it('misuse of the capture and graph calls gives CUDA 13 errors, none sticky', () => {
    const r = emu().probes.captureMisuse()
    const invalid = 'cudaErrorInvalidValue'
    const illegal = 'cudaErrorIllegalState'
    expect(r.statuses).toEqual({
      beginNull: unsupported,
      beginLegacy: unsupported,
      beginBadMode: invalid,
      endNotCapturing: illegal,
      endLegacy: illegal,
      begin: ok,
      beginTwice: illegal,
      isCapturingNullStatus: invalid,
      launch: ok,
      endNullGraph: invalid,
      end: ok,
      instantiateFlags: invalid,
      instantiateNullGraph: invalid,
      instantiateNullExec: invalid,
      instantiate: ok,
      graphDestroy: ok,
      graphDestroyAgain: invalid,
      instantiateDestroyedGraph: invalid,
      graphDestroyNull: invalid,
      graphLaunchNull: invalid,
      graphLaunch: ok,
      sync: ok,
      execDestroy: ok,
      execDestroyAgain: invalid,
      graphLaunchDestroyed: invalid,
      execDestroyNull: invalid,
      beginEmpty: ok,
      endEmpty: ok,
      instantiateEmpty: ok,
      graphLaunchEmpty: ok,
      syncEmpty: ok,
      exchangeModeNull: invalid,
      exchangeMode: ok,
      exchangeModeBack: ok,
      isCapturingLegacy: ok,
      lastError: invalid, // the last failed call's (exchangeModeNull), until read
      lastErrorCleared: ok,
    })
    // A second begin leaves the first capture as it was, and so does an EndCapture refused for its arguments.
    expect(r.values.captureStatusAfterBeginTwice).toEqual([statusActive])
    expect(r.values.captureStatusAfterEndNullGraph).toEqual([statusActive])
    // The instantiated copy ran its node once: 0 * 2 + 1.
    expect(r.values.out).toEqual(Array(128).fill(1))
    expect(r.values.previousMode).toEqual([Global])
    expect(r.values.restoredFrom).toEqual([Relaxed])
    expect(r.values.legacyStatus).toEqual([statusNone])
  })

  it.each([
    [Global, 'cudaErrorStreamCaptureWrongThread'],
    [ThreadLocal, 'cudaErrorStreamCaptureWrongThread'],
    [Relaxed, ok],
  ])('ending a capture (mode %i) from another thread: %s', (mode, expected) => {
    const r = emu().probes.endFromOtherThread(mode)
    expect(r.statuses.begin).toBe(ok)
    expect(r.statuses.endOtherThread).toBe(expected)
    expect(r.statuses.lastErrorOtherThread).toBe(expected)
    const ended = expected === ok
    // Refused, the capture goes on and its own thread ends it; a Relaxed one is over already.
    expect(r.values.captureStatusAfterOther).toEqual([ended ? statusNone : statusActive])
    expect(r.statuses.endOwnThread).toBe(ended ? 'cudaErrorIllegalState' : ok)
    expect(r.statuses.lastError).toBe(ended ? 'cudaErrorIllegalState' : ok)
    expect(r.values.graphNull).toEqual([0])
  })

  it.each([
    [ThreadLocal, Global, false],
    [Relaxed, Global, false],
    [Global, ThreadLocal, false],
    [Global, Relaxed, false],
    [Global, Global, true],
  ])('another thread during a capture (mode %i, its own mode %i): refused only if both are Global: %s', (mode, otherMode, refused) => {
    const r = emu().probes.otherThreadDuringCapture(mode, otherMode)
    const forbidden = refused ? unsupported : ok
    expect(r.statuses).toEqual({
      begin: ok,
      launch: ok,
      exchangeMode: ok,
      malloc: forbidden,
      free: forbidden,
      // Asynchronous work on its own stream and event waits are never unsafe.
      launchOther: ok,
      eventRecord: ok,
      eventSynchronize: ok,
      eventQuery: ok,
      streamSynchronize: forbidden,
      deviceSynchronize: forbidden,
      end: refused ? invalidated : ok,
    })
    expect(r.values.captureStatus).toEqual([refused ? statusInvalidated : statusActive])
  })
})

suite(`faults in graph replays${reason}`, () => {
  it.each([
    // [failAt, replays that completed, the kernel that faults]
    [1, 0, 'graphCopyKernel'],
    [6, 1, 'graphAffineKernel'],
    [12, 2, 'graphAccumulateKernel'],
  ])(
    'bssnEmuFailLaunch(%i) picks a graph node at cudaGraphLaunch: %i replays complete, the fault is sticky, later nodes and replays never run',
    (failAt, completed, kernel) => {
      const input = Array.from(randomArray(300, 1000 + failAt))
      const scalars = randomScalars(1001 + failAt)
      const r = inChild(
        `emit(addon.emulator.probes.graphFault(${JSON.stringify(input)}, ${JSON.stringify(scalars)}, 3, ${failAt}))`,
      ) as NativeEmulatorReport
      // Launches up to the faulting replay's return success; a later one may already see the fault, as on a GPU,
      // where an asynchronous error surfaces at whichever call comes after it (a race the loaded CI machine lost).
      for (let i = 0; i < 3; i++)
        if (i <= completed) expect(r.statuses[`graphLaunch ${i}`]).toBe(ok)
        else expect([ok, 'cudaErrorLaunchFailure']).toContain(r.statuses[`graphLaunch ${i}`])
      expect(r.statuses.sync).toBe(
        `cudaErrorLaunchFailure: unspecified launch failure [emulator: kernel ${kernel} faulted (injected by bssnEmuFailLaunch)]`,
      )
      expect(r.statuses.graphLaunchAfterFault).toBe('cudaErrorLaunchFailure')
      const out = expectedOut(Float32Array.from(input), scalars)
      expect(r.values.count).toEqual([completed])
      expectCloseArray(r.values.acc, times(out, completed), 1e-6, 'acc')
      // (NaN comes back from the child's JSON as null.)
      if (failAt === 1) expect(r.values.out.every((x) => x === null)).toBe(true) // the first node never ran
      else if (failAt === 6) expect(r.values.out).toEqual(input) // the faulting replay's copy ran, its affine did not
      else expectCloseArray(r.values.out, out, 1e-6, 'out') // the third replay stopped at its last node
    },
  )

  it('a copy node replayed after cudaFree of its memory faults (sticky cudaErrorIllegalAddress), as a GPU copy would', () => {
    const r = inChild('emit(addon.emulator.probes.copyNodeAfterFree())') as string
    expect(r).toMatch(
      /^cudaErrorIllegalAddress: an illegal memory access was encountered \[emulator: graph copy node: \[0x[0-9a-f]+, \+256 bytes\) is no longer allocated\]$/,
    )
  })
})
