// The rendezvous, several ranks in this process over loopback (one test with child processes): it hands rank 0's
// payload to all, refuses what is not a rank of this run without disturbing it, and ends a missing rank in a coded
// error. Timeouts are short so the file runs in a few seconds.
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { MAX_FRAME_BYTES, type RendezvousOptions, rendezvous } from '../../src/distributed/rendezvous.js'
import { packageRoot } from '../../src/native.js'
import { runProcess } from '../helpers/run.js'

const ADDR = '127.0.0.1'

/** A port free at the time of the call (the kernel's choice for port 0). */
async function freePort(host = ADDR): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Resolves once `socket` closes, with what it received. */
function closed(socket: net.Socket): Promise<Buffer> {
  const got: Buffer[] = []
  socket.on('data', (d: Buffer) => got.push(d))
  socket.on('error', () => undefined)
  return new Promise((resolve) => socket.on('close', () => resolve(Buffer.concat(got))))
}

function frame(text: string): Buffer {
  const body = Buffer.from(text)
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.length)
  return Buffer.concat([head, body])
}

function connectRaw(port: number, host = ADDR): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => resolve(s))
    s.once('error', reject)
  })
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('rendezvous', () => {
  it('hands rank 0 payload and the ranks to 4 ranks, peers started before rank 0, and closes its port', async () => {
    const port = await freePort()
    const payload = randomBytes(128)
    const base = { worldSize: 4, addr: ADDR, port, token: 'run-a', timeoutMs: 5000 }
    // Ranks 1..3 first: they retry until rank 0 listens.
    const peers = [1, 2, 3].map((rank) => rendezvous({ ...base, rank }))
    await wait(300)
    const all = [await rendezvous({ ...base, rank: 0, payload }), ...(await Promise.all(peers))]
    try {
      for (const [i, r] of all.entries()) {
        expect(r.rank).toBe(i)
        expect(r.worldSize).toBe(4)
        expect(r.ranks).toEqual([0, 1, 2, 3])
        expect(r.payload.equals(payload)).toBe(true)
      }
      await expect(connectRaw(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    } finally {
      for (const r of all) r.close()
    }
  })

  it('barrier() releases nobody until every rank entered, and fails when a rank is gone', async () => {
    const port = await freePort()
    const base = { worldSize: 3, addr: ADDR, port, timeoutMs: 5000 }
    const all = await Promise.all([
      rendezvous({ ...base, rank: 0, payload: randomBytes(128) }),
      rendezvous({ ...base, rank: 1 }),
      rendezvous({ ...base, rank: 2 }),
    ])
    try {
      for (let round = 0; round < 3; round++) {
        const released: number[] = []
        const early = [0, 1].map((i) => all[i].barrier().then(() => released.push(i)))
        await wait(100)
        expect(released).toEqual([]) // rank 2 has not entered
        await Promise.all([...early, all[2].barrier()])
        expect(released.sort()).toEqual([0, 1])
      }
      all[2].close()
      await expect(all[0].barrier(2000)).rejects.toMatchObject({ code: 'ERR_BSSN_RENDEZVOUS_LOST', message: expect.stringContaining('rank 2') })
      all[0].close()
      await expect(all[1].barrier(2000)).rejects.toMatchObject({ code: 'ERR_BSSN_RENDEZVOUS_LOST', message: expect.stringContaining('rank 0') })
    } finally {
      for (const r of all) r.close()
    }
  })

  it('refuses a wrong world size, a duplicate rank and a rank of another run, and goes on', async () => {
    const port = await freePort()
    const base = { worldSize: 2, addr: ADDR, port, token: 'run-b', timeoutMs: 5000 }
    const host = rendezvous({ ...base, rank: 0, payload: randomBytes(128) })
    await wait(100)
    const refused = (o: Partial<RendezvousOptions>, why: RegExp) =>
      expect(rendezvous({ ...base, rank: 1, ...o })).rejects.toMatchObject({ code: 'ERR_BSSN_RENDEZVOUS_REFUSED', message: expect.stringMatching(why) })
    await refused({ worldSize: 3 }, /expects a world of 3, this run has 2/)
    await refused({ token: 'run-c' }, /another run/)
    await refused({ worldSize: 5, rank: 4, token: 'run-b' }, /world of 5/)
    const first = await Promise.all([host, rendezvous({ ...base, rank: 1 })])
    try {
      expect(first[1].payload.equals(first[0].payload)).toBe(true)
    } finally {
      for (const r of first) r.close()
    }
    // A duplicate: the second rank 1 is refused while the first waits for rank 2.
    const port2 = await freePort()
    const base3 = { ...base, port: port2, worldSize: 3 }
    const host3 = rendezvous({ ...base3, rank: 0, payload: randomBytes(128) })
    const one = rendezvous({ ...base3, rank: 1 })
    await wait(300)
    await expect(rendezvous({ ...base3, rank: 1 })).rejects.toMatchObject({ code: 'ERR_BSSN_RENDEZVOUS_REFUSED', message: expect.stringMatching(/rank 1, which has already arrived/) })
    const all = await Promise.all([host3, one, rendezvous({ ...base3, rank: 2 })])
    for (const r of all) r.close()
  })

  it('closes what is not a rank (garbage, HTTP, oversized or malformed frames, silence) and the run goes on', async () => {
    const port = await freePort()
    const base = { worldSize: 2, addr: ADDR, port, timeoutMs: 5000, helloWaitMs: 1500 }
    const host = rendezvous({ ...base, rank: 0, payload: randomBytes(128) })
    await wait(100)
    const strays: Array<Buffer | null> = [
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      (() => {
        const b = Buffer.alloc(8)
        b.writeUInt32BE(MAX_FRAME_BYTES + 1)
        return b
      })(),
      Buffer.alloc(4), // a frame of 0 bytes
      frame('{"type":"hello",'), // not JSON
      frame('[1,2,3]'),
      frame('{"type":"hello","v":1,"rank":"1","worldSize":2,"token":""}'), // a rank as a string
      frame('{"type":"barrier","n":1}'), // not a hello
      null, // says nothing
    ]
    const received = await Promise.all(
      strays.map(async (bytes) => {
        const s = await connectRaw(port)
        const started = Date.now()
        const got = await Promise.all([closed(s), bytes !== null && s.write(bytes)])
        return { got: got[0], ms: Date.now() - started }
      }),
    )
    for (const [i, { got, ms }] of received.entries()) {
      expect(got.length).toBe(0) // closed, told nothing
      // What is malformed is closed as soon as it is seen; silence when the hello wait is over.
      if (strays[i] !== null) expect(ms).toBeLessThan(1000)
      else expect(ms).toBeGreaterThanOrEqual(1400)
    }
    const all = await Promise.all([host, rendezvous({ ...base, rank: 1 })])
    for (const r of all) r.close()
  })

  it('a rank that never comes ends in ERR_BSSN_RENDEZVOUS_TIMEOUT on every rank, naming it', async () => {
    const port = await freePort()
    const base = { worldSize: 3, addr: ADDR, port, timeoutMs: 800 }
    const started = Date.now()
    const host = rendezvous({ ...base, rank: 0, payload: randomBytes(128) })
    // Rank 1 would wait longer: rank 0's timeout ends it (told so), never its own timer racing rank 0's on a busy
    // machine (rank 1 gone first, rank 0 would name ranks 1 and 2).
    const one = rendezvous({ ...base, rank: 1, timeoutMs: 20_000 })
    const [h, r1] = await Promise.allSettled([host, one])
    expect(h).toMatchObject({ status: 'rejected', reason: { code: 'ERR_BSSN_RENDEZVOUS_TIMEOUT', message: expect.stringMatching(/: rank 2 of 3 did not arrive within 800 ms/) } })
    expect(r1).toMatchObject({ status: 'rejected', reason: { code: 'ERR_BSSN_RENDEZVOUS_TIMEOUT', message: expect.stringMatching(/rank 0 gave up/) } })
    expect(Date.now() - started).toBeLessThan(2500)
    await expect(connectRaw(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    // And a rank whose rank 0 never listens.
    await expect(rendezvous({ ...base, rank: 2, timeoutMs: 400 })).rejects.toMatchObject({
      code: 'ERR_BSSN_RENDEZVOUS_TIMEOUT',
      message: expect.stringMatching(/rank 2 did not get in .* \(connect ECONNREFUSED/),
    })
  })

  it('rank 0 listens on MASTER_ADDR only', async () => {
    // Linux routes all of 127/8 to loopback: rank 0 bound to 127.0.0.2 must not answer on 127.0.0.1.
    const port = await freePort('127.0.0.2')
    const base = { worldSize: 2, addr: '127.0.0.2', port, timeoutMs: 3000 }
    const host = rendezvous({ ...base, rank: 0, payload: randomBytes(16) })
    await wait(100)
    await expect(connectRaw(port, '127.0.0.1')).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    const all = await Promise.all([host, rendezvous({ ...base, rank: 1 })])
    for (const r of all) r.close()
  })

  it('rank 0 on a port already taken: ERR_BSSN_RENDEZVOUS_FAILED at once', async () => {
    const taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen({ host: ADDR, port: 0 }, resolve))
    const { port } = taken.address() as net.AddressInfo
    try {
      const started = Date.now()
      await expect(rendezvous({ rank: 0, worldSize: 2, addr: ADDR, port, payload: randomBytes(128), timeoutMs: 5000 })).rejects.toMatchObject({
        code: 'ERR_BSSN_RENDEZVOUS_FAILED',
        message: expect.stringContaining(`cannot listen on ${ADDR}:${port}`),
      })
      expect(Date.now() - started).toBeLessThan(1000)
    } finally {
      taken.close()
    }
  })

  it('checks its arguments', () => {
    const base = { worldSize: 2, addr: ADDR, port: 1234, timeoutMs: 100 }
    expect(() => rendezvous({ ...base, rank: 2 })).toThrow(expect.objectContaining({ code: 'ERR_BSSN_OUT_OF_RANGE' }))
    expect(() => rendezvous({ ...base, rank: 0 })).toThrow(expect.objectContaining({ code: 'ERR_BSSN_INVALID_ARGUMENT' }))
    expect(() => rendezvous({ ...base, rank: 0, payload: new Uint8Array(1025) })).toThrow(expect.objectContaining({ code: 'ERR_BSSN_OUT_OF_RANGE' }))
    expect(() => rendezvous({ ...base, rank: 1, payload: new Uint8Array(1) })).toThrow(expect.objectContaining({ code: 'ERR_BSSN_INVALID_ARGUMENT' }))
    expect(() => rendezvous({ ...base, rank: 1, port: 0 })).toThrow(expect.objectContaining({ code: 'ERR_BSSN_OUT_OF_RANGE' }))
  })

  it('meets across processes, each reading its launch from the environment', async () => {
    const port = await freePort()
    const script = `
      import { readDistributedEnv } from ${JSON.stringify(path.join(packageRoot, 'dist/distributed/env.js'))}
      import { rendezvous } from ${JSON.stringify(path.join(packageRoot, 'dist/distributed/rendezvous.js'))}
      const e = readDistributedEnv()
      const payload = e.rank === 0 ? Buffer.from(process.env.PAYLOAD, 'hex') : undefined
      const r = await rendezvous({ rank: e.rank, worldSize: e.worldSize, addr: e.masterAddr, port: e.masterPort, token: 't', payload, timeoutMs: 10000 })
      await r.barrier()
      console.log(JSON.stringify({ rank: r.rank, ranks: r.ranks, payload: r.payload.toString('hex') }))
      r.close()`
    const payload = randomBytes(128).toString('hex')
    const runs = await Promise.all(
      [0, 1].map((rank) =>
        runProcess(process.execPath, ['--input-type=module', '-e', script], {
          env: { ...process.env, RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), MASTER_ADDR: ADDR, MASTER_PORT: String(port), PAYLOAD: payload },
          timeout: 20_000,
        }),
      ),
    )
    for (const [rank, run] of runs.entries()) {
      expect(run.stderr).toBe('')
      expect(run.status).toBe(0)
      expect(JSON.parse(run.stdout)).toEqual({ rank, ranks: [0, 1], payload })
    }
  })
})
