// The rendezvous of a data-parallel run: rank 0 listens on MASTER_ADDR:MASTER_PORT, every other rank connects and
// says hello; once all ranks are in, rank 0 hands each the payload (NCCL's unique id) and the list of ranks, and
// closes its listening socket. The connections stay open for `barrier()`. Anything else that reaches the port (a
// scanner, a stray rank of another run, a rank of a wrong launch) is refused and closed without disturbing the run.
import { createHash, timingSafeEqual } from 'node:crypto'
import net from 'node:net'

import { type BssnErrorCode, bssnError, rangeError, typeError } from '../errors.js'

export const RENDEZVOUS_PROTOCOL = 1
/** Frames are small JSON messages: anything longer is not one of ours. */
export const MAX_FRAME_BYTES = 4096
/** The largest payload rank 0 may hand out (NCCL's unique id is 128 bytes). */
export const MAX_PAYLOAD_BYTES = 1024
// Connections that have not said hello yet; more are closed at once (a flood must not exhaust rank 0).
const MAX_PENDING = 64
// A connection that says nothing for this long is not a rank starting up: ranks send hello on connect.
const HELLO_WAIT_MS = 5_000
const RETRY_MS = 100

export interface RendezvousOptions {
  rank: number
  worldSize: number
  /** Rank 0 binds this address only; the others connect to it. */
  addr: string
  port: number
  /** The same on every rank of one run, so that ranks of another run on the same port are refused. */
  token?: string
  /** Rank 0's payload for all ranks (at most MAX_PAYLOAD_BYTES); the other ranks leave it out. */
  payload?: Uint8Array
  /** The whole rendezvous, from the call until every rank is in (rank 0) or the welcome came (the others). */
  timeoutMs: number
  /** @internal How long rank 0 waits for a connection's hello (tests shorten it). */
  helloWaitMs?: number
}

export interface Rendezvous {
  readonly rank: number
  readonly worldSize: number
  /** Rank 0's payload, the same bytes on every rank. */
  readonly payload: Buffer
  /** The ranks that took part, in order (0 … worldSize − 1). */
  readonly ranks: readonly number[]
  /** Resolves once every rank called it; rejects with ERR_BSSN_RENDEZVOUS_LOST when a rank is gone. */
  barrier(timeoutMs?: number): Promise<void>
  /** Closes the connections to the other ranks. */
  close(): void
}

type Message =
  | { type: 'hello'; v: number; rank: number; worldSize: number; token: string }
  | { type: 'welcome'; ranks: number[]; payload: string }
  | { type: 'refused'; reason: string; gaveUp?: boolean }
  | { type: 'barrier'; n: number }
  | { type: 'release'; n: number }

function codedError(message: string, code: BssnErrorCode): Error {
  return bssnError(message, code)
}

function encode(message: Message): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8')
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.length)
  return Buffer.concat([head, body])
}

const isInt = (x: unknown): x is number => Number.isSafeInteger(x)

// Only well-formed messages of the known types get through; everything else is null (and its sender closed).
function decode(body: Buffer): Message | null {
  let m: unknown
  try {
    m = JSON.parse(body.toString('utf8'))
  } catch {
    return null
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return null
  const o = m as Record<string, unknown>
  switch (o.type) {
    case 'hello':
      return isInt(o.v) && isInt(o.rank) && isInt(o.worldSize) && typeof o.token === 'string' ? (o as Message) : null
    case 'welcome':
      return Array.isArray(o.ranks) && o.ranks.every(isInt) && typeof o.payload === 'string' ? (o as Message) : null
    case 'refused':
      return typeof o.reason === 'string' && (o.gaveUp === undefined || typeof o.gaveUp === 'boolean') ? (o as Message) : null
    case 'barrier':
    case 'release':
      return isInt(o.n) ? (o as Message) : null
    default:
      return null
  }
}

/** Splits a socket's bytes into frames; calls `onBad` once on an oversized or undecodable one and stops. */
function readFrames(socket: net.Socket, onMessage: (m: Message) => void, onBad: (why: string) => void): void {
  let pending: Buffer = Buffer.alloc(0)
  let bad = false
  socket.on('data', (chunk: Buffer) => {
    if (bad) return
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    while (pending.length >= 4) {
      const length = pending.readUInt32BE(0)
      if (length === 0 || length > MAX_FRAME_BYTES) {
        bad = true
        return onBad(`a frame of ${length} bytes (at most ${MAX_FRAME_BYTES})`)
      }
      if (pending.length < 4 + length) return
      const message = decode(pending.subarray(4, 4 + length))
      pending = pending.subarray(4 + length)
      if (message === null) {
        bad = true
        return onBad('a malformed message')
      }
      onMessage(message)
    }
  })
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

function checkOptions(o: RendezvousOptions): void {
  if (!isInt(o.worldSize) || o.worldSize < 1) throw rangeError(`worldSize must be a positive integer, got ${o.worldSize}`)
  if (!isInt(o.rank) || o.rank < 0 || o.rank >= o.worldSize) {
    throw rangeError(`rank must be an integer in 0..${o.worldSize - 1}, got ${o.rank}`)
  }
  if (typeof o.addr !== 'string' || o.addr === '') throw typeError('addr must be a host name or an IP address')
  if (!isInt(o.port) || o.port < 1 || o.port > 65535) throw rangeError(`port must be in 1..65535, got ${o.port}`)
  if (!(o.timeoutMs > 0)) throw rangeError(`timeoutMs must be positive, got ${o.timeoutMs}`)
  if (o.token !== undefined && typeof o.token !== 'string') throw typeError('token must be a string')
  if (o.rank === 0) {
    if (!(o.payload instanceof Uint8Array)) throw typeError('rank 0 must give the payload as a Uint8Array')
    if (o.payload.length > MAX_PAYLOAD_BYTES) {
      throw rangeError(`the payload has ${o.payload.length} bytes, at most ${MAX_PAYLOAD_BYTES}`)
    }
  } else if (o.payload !== undefined) {
    throw typeError('only rank 0 gives the payload')
  }
}

/**
 * Meets the other ranks of a run. Rejects with ERR_BSSN_RENDEZVOUS_TIMEOUT when a rank has not arrived within
 * `timeoutMs` (the message names which), ERR_BSSN_RENDEZVOUS_REFUSED when rank 0 refused this rank (a wrong world
 * size, a duplicate rank, another run's token or protocol).
 */
export function rendezvous(options: RendezvousOptions): Promise<Rendezvous> {
  checkOptions(options)
  return options.rank === 0 ? host(options) : join(options)
}

// One connection to another rank after the rendezvous, for barriers. The socket is referenced only while a barrier
// waits, so a process that forgets close() still exits.
class Link {
  readonly messages: Message[] = []
  lost: string | null = null
  private wake: (() => void) | null = null

  constructor(readonly socket: net.Socket, readonly peer: number) {
    socket.on('close', () => this.fail(`the connection to rank ${peer} closed`))
    socket.on('error', (e) => this.fail(`the connection to rank ${peer} failed: ${e.message}`))
  }

  push(m: Message): void {
    this.messages.push(m)
    this.wake?.()
  }

  fail(why: string): void {
    this.lost ??= why
    this.wake?.()
  }

  /** The next message of `type` with number `n`, or a rejection when the link is lost or the time is up. */
  async next(type: 'barrier' | 'release', n: number, deadline: number): Promise<void> {
    this.socket.ref()
    try {
      for (;;) {
        const i = this.messages.findIndex((m) => m.type === type && m.n === n)
        if (i >= 0) {
          this.messages.splice(i, 1)
          return
        }
        if (this.lost !== null) throw codedError(`barrier ${n}: ${this.lost}`, 'ERR_BSSN_RENDEZVOUS_LOST')
        const left = deadline - Date.now()
        if (left <= 0) throw codedError(`barrier ${n}: rank ${this.peer} did not arrive in time`, 'ERR_BSSN_RENDEZVOUS_TIMEOUT')
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          this.wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        this.wake = null
      }
    } finally {
      this.socket.unref()
    }
  }
}

function makeRendezvous(o: RendezvousOptions, payload: Buffer, ranks: number[], links: Link[]): Rendezvous {
  let generation = 0
  let closed = false
  for (const link of links) link.socket.unref()
  return {
    rank: o.rank,
    worldSize: o.worldSize,
    payload,
    ranks,
    async barrier(timeoutMs = o.timeoutMs) {
      if (closed) throw codedError('barrier after close()', 'ERR_BSSN_DISPOSED')
      const n = ++generation
      const deadline = Date.now() + timeoutMs
      if (o.rank === 0) {
        // Every rank enters, then rank 0 releases them all.
        await Promise.all(links.map((link) => link.next('barrier', n, deadline)))
        for (const link of links) link.socket.write(encode({ type: 'release', n }))
      } else {
        const link = links[0]
        link.socket.write(encode({ type: 'barrier', n }))
        await link.next('release', n, deadline)
      }
    },
    close() {
      closed = true
      for (const link of links) link.socket.destroy()
    },
  }
}

function host(o: RendezvousOptions): Promise<Rendezvous> {
  const token = digest(o.token ?? '')
  const payload = Buffer.from(o.payload as Uint8Array)
  const arrived = new Map<number, { socket: net.Socket; link: Link }>()
  const pending = new Set<net.Socket>()
  const refusals: string[] = []

  return new Promise<Rendezvous>((resolve, reject) => {
    let done = false
    const server = net.createServer()
    const timer = setTimeout(() => {
      const missing = [...Array(o.worldSize).keys()].filter((r) => r !== 0 && !arrived.has(r))
      const refused = refusals.length > 0 ? `; refused: ${refusals.slice(-5).join('; ')}` : ''
      finish(
        codedError(
          `rendezvous on ${o.addr}:${o.port}: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of ` +
            `${o.worldSize} did not arrive within ${o.timeoutMs} ms${refused}`,
          'ERR_BSSN_RENDEZVOUS_TIMEOUT',
        ),
      )
    }, o.timeoutMs)

    function finish(error: Error | null): void {
      if (done) return
      done = true
      clearTimeout(timer)
      server.close()
      for (const socket of pending) socket.destroy()
      if (error !== null) {
        for (const { socket } of arrived.values()) {
          socket.end(encode({ type: 'refused', reason: `rank 0 gave up: ${error.message}`, gaveUp: true }))
        }
        return reject(error)
      }
      const ranks = [...Array(o.worldSize).keys()]
      const links = [...arrived.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v.link)
      const welcome = encode({ type: 'welcome', ranks, payload: payload.toString('base64') })
      for (const link of links) link.socket.write(welcome)
      resolve(makeRendezvous(o, payload, ranks, links))
    }

    function refuse(socket: net.Socket, reason: string): void {
      refusals.push(reason)
      pending.delete(socket)
      socket.end(encode({ type: 'refused', reason }))
      socket.destroySoon()
    }

    server.on('connection', (socket) => {
      if (done || pending.size >= MAX_PENDING) return void socket.destroy()
      pending.add(socket)
      socket.on('error', () => undefined) // a peer that resets is handled by 'close'
      socket.setTimeout(Math.min(o.helloWaitMs ?? HELLO_WAIT_MS, o.timeoutMs), () => {
        if (pending.has(socket)) socket.destroy()
      })
      socket.on('close', () => {
        pending.delete(socket)
        // A rank that leaves before the welcome is no longer in: it must come again.
        for (const [r, v] of arrived) if (v.socket === socket && !done) arrived.delete(r)
      })
      let link: Link | null = null
      readFrames(
        socket,
        (m) => {
          if (link !== null) return link.push(m)
          if (!pending.has(socket)) return
          if (m.type !== 'hello') return void socket.destroy() // not a rank
          const from = `${socket.remoteAddress}:${socket.remotePort}`
          if (m.v !== RENDEZVOUS_PROTOCOL) return refuse(socket, `${from} speaks protocol ${m.v}, not ${RENDEZVOUS_PROTOCOL}`)
          const theirs = digest(m.token)
          if (!timingSafeEqual(theirs, token)) return refuse(socket, `${from} belongs to another run (its token differs)`)
          if (m.worldSize !== o.worldSize) {
            return refuse(socket, `${from} (rank ${m.rank}) expects a world of ${m.worldSize}, this run has ${o.worldSize}`)
          }
          if (m.rank < 1 || m.rank >= o.worldSize) return refuse(socket, `${from} claims rank ${m.rank}, not in 1..${o.worldSize - 1}`)
          if (arrived.has(m.rank)) return refuse(socket, `${from} claims rank ${m.rank}, which has already arrived`)
          pending.delete(socket)
          socket.setTimeout(0)
          link = new Link(socket, m.rank)
          arrived.set(m.rank, { socket, link })
          if (arrived.size === o.worldSize - 1) finish(null)
        },
        () => socket.destroy(),
      )
    })
    server.on('error', (e: NodeJS.ErrnoException) => {
      finish(codedError(`rendezvous: rank 0 cannot listen on ${o.addr}:${o.port}: ${e.message}`, 'ERR_BSSN_RENDEZVOUS_FAILED'))
    })
    // Only the address asked for: a rendezvous port open on every interface invites strangers.
    server.listen({ host: o.addr, port: o.port, exclusive: true }, () => {
      if (o.worldSize === 1) finish(null)
    })
  })
}

function join(o: RendezvousOptions): Promise<Rendezvous> {
  const deadline = Date.now() + o.timeoutMs
  let lastFailure = 'no answer'
  return new Promise<Rendezvous>((resolve, reject) => {
    const attempt = (): void => {
      if (Date.now() >= deadline) {
        return reject(
          codedError(
            `rendezvous: rank ${o.rank} did not get in through ${o.addr}:${o.port} within ${o.timeoutMs} ms (${lastFailure})`,
            'ERR_BSSN_RENDEZVOUS_TIMEOUT',
          ),
        )
      }
      const socket = net.connect({ host: o.addr, port: o.port })
      let settled = false
      let link: Link | null = null
      const timer = setTimeout(() => retry('rank 0 did not answer'), Math.max(1, deadline - Date.now()))
      const retry = (why: string): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        lastFailure = why
        socket.destroy()
        setTimeout(attempt, Math.min(RETRY_MS, Math.max(0, deadline - Date.now())))
      }
      socket.on('error', (e) => retry(e.message))
      socket.on('close', () => retry('rank 0 closed the connection'))
      socket.on('connect', () => {
        socket.write(encode({ type: 'hello', v: RENDEZVOUS_PROTOCOL, rank: o.rank, worldSize: o.worldSize, token: o.token ?? '' }))
      })
      readFrames(
        socket,
        (m) => {
          if (link !== null) return link.push(m)
          if (settled) return
          if (m.type === 'refused') {
            settled = true
            clearTimeout(timer)
            socket.destroy()
            const code = m.gaveUp === true ? 'ERR_BSSN_RENDEZVOUS_TIMEOUT' : 'ERR_BSSN_RENDEZVOUS_REFUSED'
            return reject(codedError(`rendezvous: rank 0 refused rank ${o.rank}: ${m.reason}`, code))
          }
          if (m.type !== 'welcome') return retry(`rank 0 sent ${m.type} before the welcome`)
          const payload = Buffer.from(m.payload, 'base64')
          if (payload.length > MAX_PAYLOAD_BYTES || m.ranks.length !== o.worldSize) return retry('a malformed welcome')
          settled = true
          clearTimeout(timer)
          socket.removeAllListeners('close')
          socket.removeAllListeners('error')
          link = new Link(socket, 0)
          resolve(makeRendezvous(o, payload, m.ranks, [link]))
        },
        (why) => retry(`rank 0 sent ${why}`),
      )
    }
    attempt()
  })
}
