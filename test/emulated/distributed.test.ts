// Data-parallel training on the emulated device and NCCL (issue 25): ranks are child processes (test/fixtures/
// dp_rank.ts), each on its own emulated device, meeting at a rendezvous on the loopback interface as torchrun's
// ranks do. N ranks on a global batch B train what one process trains on B: the gradients are averaged over the
// ranks' shares, every rank draws its rows of the same global batch, and u/v follow from equal weights.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { freePort } from '../../src/cli/launch.js'
import { readGanCheckpoint } from '../../src/train/checkpoint.js'
import { packageRoot } from '../../src/native.js'
import { emulated } from '../helpers/backends.js'
import { bundle } from '../helpers/peer.js'

const suite = emulated ? describe : describe.skip
// Whole training runs in several processes: minutes under AddressSanitizer for the native paths that the kill,
// overlap and collective tests below run there too.
const trainingRuns = process.env.BSSN_UNDER_SANITIZER === '1' ? it.skip : it
const tmp = mkdtempSync(path.join(os.tmpdir(), 'bssn-dp-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

interface Reply {
  ok: boolean
  code?: string
  message?: string
  params?: Record<string, string>
  uv?: string[][]
  history?: Array<[number, number, number]>
  [key: string]: unknown
}

interface Rank {
  child: ChildProcess
  /** Resolves with the rank's last JSON line and exit status, and when it exited. */
  done: Promise<{ reply: Reply | undefined; status: number | null; signal: NodeJS.Signals | null; exitedAt: number }>
  /** Resolves once the rank reported finishing step `n`. */
  reached(n: number): Promise<void>
}

/** Starts `nranks` ranks of the fixture (0: one process with no distributed environment). */
async function start(nranks: number, args: object, extraEnv: NodeJS.ProcessEnv = {}): Promise<Rank[]> {
  const program = await bundle('test/fixtures/dp_rank.ts')
  const port = await freePort()
  return Array.from({ length: Math.max(nranks, 1) }, (_, rank) => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv }
    for (const k of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT']) delete env[k]
    if (nranks > 0) Object.assign(env, { RANK: String(rank), WORLD_SIZE: String(nranks), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) })
    const child = spawn(process.execPath, [program, JSON.stringify(args)], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    let lastStep = 0
    const waiting: Array<[number, () => void]> = []
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      for (const line of out.split('\n').slice(0, -1)) {
        const step = (JSON.parse(line) as { step?: number }).step
        if (typeof step === 'number') lastStep = Math.max(lastStep, step)
      }
      waiting.filter(([n]) => lastStep >= n).forEach(([, resolve]) => resolve())
    })
    child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()))
    const done = new Promise<{ reply: Reply | undefined; status: number | null; signal: NodeJS.Signals | null; exitedAt: number }>((resolve) =>
      child.once('exit', (status, signal) => {
        const lines = out.trim().split('\n').filter((l) => l.startsWith('{"ok"'))
        const reply = lines.length ? (JSON.parse(lines[lines.length - 1]) as Reply) : undefined
        if (!reply && signal !== 'SIGKILL') console.error(`rank ${rank} said nothing (status ${status}): ${err}`)
        resolve({ reply, status, signal, exitedAt: Date.now() })
      }),
    )
    return { child, done, reached: (n: number) => new Promise<void>((resolve) => (lastStep >= n ? resolve() : waiting.push([n, resolve]))) }
  })
}

/** Runs to the end; every rank must succeed. */
async function run(nranks: number, args: object, env: NodeJS.ProcessEnv = {}): Promise<Reply[]> {
  const ranks = await start(nranks, args, env)
  const results = await Promise.all(ranks.map((r) => r.done))
  return results.map(({ reply, status }, rank) => {
    expect(reply?.ok, `rank ${rank} (status ${status}): ${reply?.message}`).toBe(true)
    return reply!
  })
}

const floats = (b64: string) => {
  const bytes = Buffer.from(b64, 'base64')
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
}

/** The largest relative difference, per tensor ||a - b|| / ||b||, between two runs' weights. */
function weightDistance(a: Reply, b: Reply): number {
  const names = Object.keys(b.params!)
  expect(Object.keys(a.params!)).toEqual(names)
  let worst = 0
  for (const name of names) {
    const x = floats(a.params![name])
    const y = floats(b.params![name])
    expect(x.length).toBe(y.length)
    let d = 0
    let n = 0
    for (let i = 0; i < x.length; i++) {
      d += (x[i] - y[i]) ** 2
      n += y[i] ** 2
    }
    worst = Math.max(worst, Math.sqrt(d / n))
  }
  return worst
}

suite('data-parallel training (emulated NCCL, ranks as processes)', () => {
  const references = new Map<string, Promise<Reply>>()
  const reference = (arch: string, steps: number) => {
    const key = `${arch}/${steps}`
    if (!references.has(key)) references.set(key, run(0, { what: 'train', arch, steps, batch: 16 }).then(([r]) => r))
    return references.get(key)!
  }

  for (const arch of ['mlp', 'conv'] as const)
    trainingRuns(`${arch} GAN with BSSN, 20 steps on 2 and on 4 ranks: weights within 1e-5 of one process on the same global batch, u and v equal on every rank bit for bit`, async () => {
      const single = await reference(arch, 20)
      for (const nranks of [2, 4]) {
        const replies = await run(nranks, { what: 'train', arch, steps: 20, batch: 16 })
        for (const r of replies) {
          expect(r.uv).toEqual(replies[0].uv) // bit for bit, with no communication of u and v after the start
          expect(r.params).toEqual(replies[0].params) // every rank applied the same averaged gradients
        }
        const distance = weightDistance(replies[0], single)
        expect(distance).toBeLessThan(1e-5)
        // The weights moved: a comparison of two untrained models would pass too.
        expect(weightDistance(single, await reference(arch, 1))).toBeGreaterThan(1e-3)
        // The losses rank 0 reports are the global batch's (averaged over the ranks).
        expect(replies[0].history![0][1]).toBeCloseTo(single.history![0][1], 5)
      }
    }, 240_000)

  trainingRuns('a checkpoint written by 4 ranks resumes on 2, whose checkpoint resumes on 1: the weights of 20 steps in one process', async () => {
    const first = path.join(tmp, 'resume-4')
    const second = path.join(tmp, 'resume-2')
    const third = path.join(tmp, 'resume-1')
    await run(4, { what: 'train', arch: 'mlp', steps: 10, batch: 16, out: first, ckptEvery: 10 })
    await run(2, { what: 'train', arch: 'mlp', steps: 15, batch: 16, out: second, ckptEvery: 5, resume: path.join(first, 'checkpoint.safetensors') })
    expect(readGanCheckpoint(path.join(second, 'checkpoint.safetensors')).step).toBe(15)
    const [last] = await run(0, { what: 'train', arch: 'mlp', steps: 20, batch: 16, out: third, resume: path.join(second, 'checkpoint.safetensors') })
    expect(weightDistance(last, await reference('mlp', 20))).toBeLessThan(1e-5)
  }, 240_000)

  it('a rank killed in the middle of training: the others exit with ERR_BSSN_COLLECTIVE_FAILED within 30 s, and rank 0\'s last checkpoint is intact', async () => {
    const out = path.join(tmp, 'killed')
    const ranks = await start(3, { what: 'train', arch: 'mlp', steps: 1_000_000, batch: 12, out, ckptEvery: 3 })
    await ranks[0].reached(7)
    const killedAt = Date.now()
    ranks[1].child.kill('SIGKILL')
    const [zero, one, two] = await Promise.all(ranks.map((r) => r.done))
    expect(one.signal).toBe('SIGKILL')
    for (const survivor of [zero, two]) {
      expect(survivor.status).toBe(3)
      expect(survivor.reply?.code).toBe('ERR_BSSN_COLLECTIVE_FAILED')
      expect(survivor.exitedAt - killedAt).toBeLessThan(30_000)
    }
    // The last checkpoint rank 0 wrote is whole (no half-written file took its place) and resumes.
    const file = path.join(out, 'checkpoint.safetensors')
    const saved = readGanCheckpoint(file)
    expect(saved.step % 3).toBe(0)
    expect(saved.step).toBeGreaterThanOrEqual(6)
    expect(readdirSync(out).filter((f) => f.endsWith('.partial'))).toEqual([])
    const [resumed] = await run(0, { what: 'train', arch: 'mlp', steps: saved.step + 2, batch: 12, resume: file })
    expect(resumed.history!.length).toBeGreaterThan(0)
  }, 120_000)

  trainingRuns('with every collective late (a slow interconnect), the optimizer still steps on averaged gradients: the device stream waits for the all-reduces', async () => {
    // Without the join at backward's end, Adam would read this rank's own gradients before the late average lands.
    const replies = await run(2, { what: 'train', arch: 'mlp', steps: 20, batch: 16 }, { BSSN_NCCL_EMU_DELAY_MS: '15' })
    expect(replies[1].params).toEqual(replies[0].params)
    expect(weightDistance(replies[0], await reference('mlp', 20))).toBeLessThan(1e-5)
  }, 120_000)

  it('a dead rank that NCCL never reports (as over NVLink): the survivors\' watchdog times out, aborts and they exit with ERR_BSSN_COLLECTIVE_FAILED', async () => {
    const ranks = await start(2, { what: 'train', arch: 'mlp', steps: 1_000_000, batch: 8, timeoutMs: 2000 }, { BSSN_NCCL_EMU_PEER_CHECK: '0' })
    await ranks[0].reached(5)
    const killedAt = Date.now()
    ranks[1].child.kill('SIGKILL')
    const [zero] = await Promise.all(ranks.map((r) => r.done))
    expect(zero.status).toBe(3)
    expect(zero.reply?.code).toBe('ERR_BSSN_COLLECTIVE_FAILED')
    expect(zero.reply?.message).toMatch(/did not finish within 2000 ms/)
    expect(zero.exitedAt - killedAt).toBeLessThan(30_000)
  }, 60_000)

  it('the gradient all-reduce overlaps backward: the first bucket is enqueued before the first layer\'s gradient is computed; bytes all-reduced = parameter bytes', async () => {
    const replies = await run(2, { what: 'overlap', bucketBytes: 2048 })
    for (const r of replies) {
      const buckets = r.buckets as Array<{ bucket: number; launches: number; firstLayerGradDone: boolean }>
      const bucketCount = r.bucketCount as number
      expect(bucketCount).toBeGreaterThanOrEqual(3)
      expect(buckets.map((b) => b.bucket)).toEqual(Array.from({ length: bucketCount }, (_, i) => i)) // in order
      // The first bucket went before the first layer's gradient was computed, with backward's kernels still to come
      // (they run while it is reduced); every bucket but the one holding the first layer went during backward.
      expect(buckets[0].firstLayerGradDone).toBe(false)
      expect(buckets[0].launches).toBeGreaterThan(r.backwardStart as number)
      expect(r.backwardEnd as number).toBeGreaterThan(buckets[0].launches)
      expect(buckets.filter((b) => !b.firstLayerGradDone).length).toBe(bucketCount - 1)
      // The gradients after it are the average of the ranks' own (float32 sums in rank order).
      let differ = 0
      ;(r.averaged as string[]).forEach((g, k) => {
        const got = floats(g)
        const own = replies.map((q) => floats((q.local as string[])[k]))
        got.forEach((x, i) => {
          const mean = own.reduce((a, o) => a + o[i], 0) / own.length
          expect(Math.abs(x - mean)).toBeLessThanOrEqual(2 ** -22 * own.reduce((a, o) => a + Math.abs(o[i]), 0))
        })
        if (own.some((o) => o.some((x, i) => x !== got[i]))) differ++
      })
      expect(differ).toBeGreaterThan(0) // the ranks' shares gave different gradients: averaging changed them
      expect(r.bytesPerBackward).toBe(r.paramBytes)
      expect(r.emulatedBytes).toBe(r.paramBytes)
    }
  }, 120_000)

  it('ProcessGroup: allReduce (sum, avg), broadcast and barrier on tensors over 3 ranks', async () => {
    const replies = await run(3, { what: 'api' })
    const expected = (f: (i: number) => number) => Array.from({ length: 8 }, (_, i) => f(i))
    for (const r of replies) {
      expect(r.sum).toEqual(expected((i) => 6 + 3 * (i / 8)))
      expect(r.avg).toEqual(expected((i) => Math.fround((6 + 3 * (i / 8)) / 3)))
      expect(r.root).toEqual(expected((i) => 3 + i / 8))
    }
  }, 60_000)

  trainingRuns('bssn train --gpus 2 runs on the emulated device and reports what one process reports', async () => {
    const cli = path.join(packageRoot, 'dist', 'cli', 'main.js')
    const flags = ['train', '--dataset', 'ring8', '--steps', '10', '--batch', '32', '--eval-every', '5', '--eval-samples', '100', '--width', '32', '--force']
    const exec = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, BSSN_CUDA_GRAPHS: '0', ...env } })
        let stdout = ''
        let stderr = ''
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
        child.once('exit', (status) => resolve({ status, stdout, stderr }))
      })
    const one = path.join(tmp, 'cli-1')
    const two = path.join(tmp, 'cli-2')
    const a = await exec([...flags, '--out', one])
    expect(a.status, a.stderr).toBe(0)
    const b = await exec([...flags, '--out', two, '--gpus', '2'])
    expect(b.status, b.stderr).toBe(0)
    expect(b.stdout).toMatch(/report: /)
    const metrics = (dir: string) =>
      (existsSync(path.join(dir, 'bssn', 'seed-1', 'metrics.jsonl')) ? readFileSync(path.join(dir, 'bssn', 'seed-1', 'metrics.jsonl'), 'utf8') : '')
        .trim()
        .split('\n')
        .map((l: string) => JSON.parse(l) as { step: number; lossD: number; lossG: number })
    const [m1, m2] = [metrics(one), metrics(two)]
    expect(m2.map((r) => r.step)).toEqual([5, 10])
    m2.forEach((r, i) => {
      expect(Math.abs(r.lossD - m1[i].lossD)).toBeLessThan(1e-5 * Math.abs(m1[i].lossD))
      expect(Math.abs(r.lossG - m1[i].lossG)).toBeLessThan(1e-5 * Math.abs(m1[i].lossG))
    })
    // --gpus with a batch the ranks cannot split: refused before anything starts.
    const refused = await exec([...flags, '--out', path.join(tmp, 'cli-3'), '--gpus', '3'])
    expect(refused.status).toBe(2)
    expect(refused.stderr).toMatch(/--batch 32 must split evenly over the 3 ranks/)
  }, 180_000)

  trainingRuns('bssn train --gpus 2 whose launcher is killed: the ranks stop by themselves at the same step (none left on the GPUs), rank 0 writing its report', async () => {
    const cli = path.join(packageRoot, 'dist', 'cli', 'main.js')
    const out = path.join(tmp, 'cli-orphaned')
    const child = spawn(process.execPath, [cli, 'train', '--gpus', '2', '--dataset', 'ring8', '--steps', '100000', '--batch', '16', '--width', '8', '--eval-every', '20', '--eval-samples', '50', '--out', out], {
      env: { ...process.env, BSSN_CUDA_GRAPHS: '0' },
    })
    let printed = ''
    const evaluated = new Promise<void>((resolve) =>
      child.stdout.on('data', (c: Buffer) => {
        printed += c.toString()
        if (/step 20:/.test(printed)) resolve()
      }),
    )
    await evaluated
    const { stdout } = await new Promise<{ stdout: string }>((resolve) => {
      const ps = spawn('ps', ['-o', 'pid=', '--ppid', String(child.pid)])
      let text = ''
      ps.stdout.on('data', (c: Buffer) => (text += c.toString()))
      ps.once('exit', () => resolve({ stdout: text }))
    })
    const ranks = stdout.split('\n').map((l) => Number(l.trim())).filter((n) => n > 0)
    expect(ranks).toHaveLength(2)
    child.kill('SIGKILL')
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0)
        return true
      } catch {
        return false
      }
    }
    const started = Date.now()
    while (ranks.some(alive) && Date.now() - started < 30_000) await new Promise((r) => setTimeout(r, 100))
    expect(ranks.filter(alive)).toEqual([])
    expect(printed).toMatch(/interrupted \(SIGHUP\)/)
    await new Promise((r) => setTimeout(r, 200))
    expect(existsSync(path.join(out, 'report.html'))).toBe(true)
  }, 120_000)
})
