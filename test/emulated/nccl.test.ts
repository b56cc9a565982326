// The emulated NCCL (native/emulator/nccl.cpp): ranks as child processes on the emulated device exchange through
// shared memory with NCCL's semantics: all-reduce (sum, average) in rank order, so every rank gets the same bits;
// broadcast; a rank that dies makes its peers' collectives fail with a coded error, not hang.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

import { Device } from '../../src/index.js'
import { native } from '../../src/native.js'
import { emulated } from '../helpers/backends.js'
import { bundle } from '../helpers/peer.js'
import { randomArray } from '../helpers/random.js'

const run = promisify(execFile)
const suite = emulated ? describe : describe.skip
// Two 1 MiB staging chunks and a part: the chunked path and its tail both run.
const elements = (1 << 18) * 2 + 1234

interface Reply {
  ok: boolean
  data?: string
  code?: string
  message?: string
  bytes?: { allReduced: number; broadcast: number }
  exitedAfterMs: number
}

// Runs `nranks` ranks, rank r doing what(r); resolves with each rank's reply and when it exited (undefined for one
// that died).
async function ranks(
  nranks: number,
  what: (rank: number) => string,
  seed: number,
  { timeoutMs = 20_000, rankOf = (rank: number) => rank, env = {} as Record<string, string> } = {},
): Promise<Array<Reply | undefined>> {
  const program = await bundle('test/fixtures/nccl_rank.ts')
  const id = native().nccl!.uniqueId().toString('hex')
  const started = Date.now()
  return Promise.all(
    Array.from({ length: nranks }, (_, rank) =>
      run(process.execPath, [program, id, String(nranks), String(rankOf(rank)), what(rank), String(elements), String(seed), String(timeoutMs)], {
        env: { ...process.env, ...env },
        maxBuffer: 1 << 26,
        timeout: 60_000,
      }).then(
        ({ stdout }) => ({ ...(JSON.parse(stdout.trim().split('\n').pop()!) as Reply), exitedAfterMs: Date.now() - started }),
        (e: { signal?: string }) => {
          if (e.signal === 'SIGKILL') return undefined
          throw e
        },
      ),
    ),
  )
}

const floats = (reply: Reply | undefined): Float32Array => {
  expect(reply?.ok, reply?.message).toBe(true)
  const bytes = Buffer.from(reply!.data!, 'base64')
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
}

const bytesOf = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength)

suite('emulated NCCL', () => {
  for (const [nranks, op] of [[2, 'sum'], [2, 'avg'], [4, 'sum'], [4, 'avg'], [3, 'group']] as const)
    it(`all-reduce (${op === 'group' ? 'sum of three tensors in one group' : op}) over ${nranks} ranks: the float64 reference's result, bit-identical on every rank`, async () => {
      const seed = 1000 * nranks + (op === 'avg' ? 2 : 1)
      const replies = await ranks(nranks, () => op, seed)
      const inputs = Array.from({ length: nranks }, (_, r) => randomArray(elements, seed + r))
      const first = floats(replies[0])
      expect(first).toHaveLength(elements)
      let worst = 0
      for (let i = 0; i < elements; ++i) {
        let sum = 0, magnitude = 0
        for (const x of inputs) {
          sum += x[i]
          magnitude += Math.abs(x[i])
        }
        const reference = op === 'avg' ? sum / nranks : sum
        const scale = op === 'avg' ? magnitude / nranks : magnitude
        worst = Math.max(worst, Math.abs(first[i] - reference) / (scale * 2 ** -23 * nranks))
      }
      expect(worst).toBeLessThanOrEqual(1)  // within n float32 roundings of the float64 sum
      for (const reply of replies.slice(1)) expect(Buffer.compare(bytesOf(floats(reply)), bytesOf(first))).toBe(0)
      for (const reply of replies) expect(reply!.bytes).toEqual({ allReduced: elements * 4, broadcast: 0 })  // group: the three parts
    }, 60_000)

  it('broadcast from rank 2 of 4: every rank holds the root\'s buffer exactly', async () => {
    const seed = 77
    const replies = await ranks(4, () => 'broadcast:2', seed)
    const root = randomArray(elements, seed + 2)
    for (const reply of replies) expect(Buffer.compare(bytesOf(floats(reply)), bytesOf(root))).toBe(0)
    for (const reply of replies) expect(reply!.bytes).toEqual({ allReduced: 0, broadcast: elements * 4 })
  }, 60_000)

  it('a tensor disposed while its overlapped all-reduce is in flight: its memory is not reused under the late collective', async () => {
    const replies = await ranks(2, () => 'freed', 77, { env: { BSSN_NCCL_EMU_DELAY_MS: '300' } })
    for (const reply of replies) {
      const values = floats(reply)
      expect(values).toHaveLength(elements)
      const wrong = values.findIndex((v) => v !== 7)
      expect(wrong, `element ${wrong} is ${values[wrong]}, not the 7 written after the dispose`).toBe(-1)
    }
  })

  it('a rank killed while its peers wait in an all-reduce: they fail with ERR_BSSN_COLLECTIVE_FAILED within seconds', async () => {
    const started = Date.now()
    const replies = await ranks(3, (rank) => (rank === 1 ? 'die' : 'sum'), 5)
    expect(replies[1]).toBeUndefined()
    for (const reply of [replies[0], replies[2]]) {
      expect(reply?.ok).toBe(false)
      expect(reply?.code).toBe('ERR_BSSN_COLLECTIVE_FAILED')
      expect(reply?.message).toMatch(/remote process exited/)
    }
    expect(Date.now() - started).toBeLessThan(15_000)
  }, 60_000)

  it('a live peer that never calls: the wait times out, aborts the communicator (waking its stream) and the rank exits', async () => {
    const replies = await ranks(2, (rank) => (rank === 1 ? 'idle' : 'sum'), 9, { timeoutMs: 500 })
    expect(replies[0]?.ok).toBe(false)
    expect(replies[0]?.code).toBe('ERR_BSSN_COLLECTIVE_FAILED')
    expect(replies[0]?.message).toMatch(/did not finish within 500 ms/)
    // Exited well before the idle peer (5 s): the abort woke the collective blocked on the stream.
    expect(replies[0]!.exitedAfterMs).toBeLessThan(replies[1]!.exitedAfterMs - 1000)
  }, 60_000)

  it('init refuses a rank taken twice, and the rank left waiting for the missing one gives up at the init timeout', async () => {
    const replies = await ranks(2, () => 'sum', 3, { rankOf: () => 0, env: { BSSN_NCCL_EMU_INIT_TIMEOUT_S: '2' } })
    const messages = replies.map((r) => r?.message ?? '').sort()
    for (const reply of replies) expect(reply?.ok).toBe(false)
    expect(messages[0]).toMatch(/^ncclCommInitRank: invalid usage/)
    expect(messages[1]).toMatch(/^ncclCommInitRank: remote process exited/)
  }, 60_000)

  it('a captured all-reduce is stream work: it moves nothing at capture and its bytes at every replay', () => {
    const probe = native().nccl!.captureProbe!(Device.cuda(0).handle, 1000, 3)
    expect(probe).toEqual({ atCapture: 0, perReplay: [4000, 8000, 12000] })
  })
})
