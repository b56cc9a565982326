// Runs a test fixture (test/fixtures/*.ts) as a second service: a worker thread or a child process. The fixture is
// bundled with esbuild (vitest's own dependency) so that it runs without a TypeScript loader, and it loads the same
// addon file as the tests (BSSN_ADDON), the emulated build included.
import { fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import { build } from 'esbuild'

import { addonPath, packageRoot } from '../../src/native.js'

const bundled = new Map<string, Promise<string>>()

/**
 * Bundles `entry` (a path under the package root: a test fixture or an example) into `dir` in the system's temp
 * folder, with 'bssn' resolving to this checkout's src/; returns the bundle's path.
 */
export function bundle(entry: string, dir = 'fixtures'): Promise<string> {
  const key = `${dir}/${entry}`
  let file = bundled.get(key)
  if (!file) {
    const outdir = path.join(os.tmpdir(), `bssn-${dir}-${process.pid}`)
    if (![...bundled.keys()].some((k) => k.startsWith(`${dir}/`))) process.once('exit', () => rmSync(outdir, { recursive: true, force: true }))
    mkdirSync(outdir, { recursive: true })
    const outfile = path.join(outdir, `${path.basename(entry).replace(/\.[mc]?[jt]s$/, '')}.mjs`)
    file = build({
      entryPoints: [path.join(packageRoot, entry)],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile,
      alias: { bssn: path.join(packageRoot, 'src', 'index.ts') },
      // The bundle lives elsewhere: createRequire needs a real require in ESM output.
      banner: { js: "import { createRequire as __bssnCreateRequire } from 'node:module'; const require = __bssnCreateRequire(import.meta.url);" },
      logLevel: 'silent',
    }).then(() => outfile)
    bundled.set(key, file)
  }
  return file
}

export interface PeerReply {
  ok: boolean
  result?: unknown
  message?: string
  code?: string
  name?: string
}

/** A fixture running as a worker thread or child process, answering one request at a time. */
export class Peer {
  readonly exited: Promise<number | null>
  #pending: Array<(reply: PeerReply) => void> = []
  #send: (message: unknown) => void
  #stop: () => Promise<unknown>

  private constructor(kind: 'worker' | 'process', file: string) {
    const env = { ...process.env, BSSN_ADDON: addonPath() }
    const onMessage = (reply: PeerReply) => this.#pending.shift()?.(reply)
    let exited: Promise<number | null>
    if (kind === 'worker') {
      const worker = new Worker(file, { env })
      worker.on('message', onMessage)
      exited = new Promise((resolve) => worker.on('exit', resolve))
      this.#send = (m) => worker.postMessage(m)
      this.#stop = () => worker.terminate()
    } else {
      const child: ChildProcess = fork(file, [], { env, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      child.on('message', onMessage)
      exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)))
      this.#send = (m) => child.send(m as never)
      this.#stop = async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill()
        return exited
      }
    }
    // A peer that dies answers every pending request with an error, so no test waits forever.
    this.exited = exited.then((code) => {
      for (const reply of this.#pending.splice(0)) reply({ ok: false, message: `peer exited with code ${code}` })
      return code
    })
  }

  static async start(kind: 'worker' | 'process', fixture = 'share_peer'): Promise<Peer> {
    const peer = new Peer(kind, await bundle(`test/fixtures/${fixture}.ts`))
    const ready = await new Promise<PeerReply>((resolve) => peer.#pending.push(resolve))
    if (!ready.ok) throw new Error(`peer failed to start: ${ready.message}`)
    return peer
  }

  /** Sends a request; resolves with the reply (errors come back as { ok: false, message, code }). */
  request(message: Record<string, unknown>): Promise<PeerReply> {
    return new Promise((resolve) => {
      this.#pending.push(resolve)
      this.#send(message)
    })
  }

  /** Sends a request that must succeed; returns its result. */
  async call<T = unknown>(message: Record<string, unknown>): Promise<T> {
    const reply = await this.request(message)
    if (!reply.ok) throw Object.assign(new Error(`peer ${String(message.op)}: ${reply.message}`), { code: reply.code })
    return reply.result as T
  }

  stop(): Promise<unknown> {
    return this.#stop()
  }
}
