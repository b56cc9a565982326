// `bssn train --gpus N` / `bssn compare --gpus N`: torchrun's launcher for one machine. It starts N copies of the same
// command, one per GPU, each with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set (what torchrun sets,
// and what a multi-machine launch sets by hand), and supervises them: rank 0 prints and writes the run folder; the
// others print only their errors. Signals reach every rank (they agree on where to stop): a terminal's Ctrl-C reaches
// them directly (they share its process group), a `kill` of the launcher as a message over an IPC channel, whose end
// (the launcher killed, the terminal closed) stops them too. When a rank fails, the others are stopped (SIGTERM,
// then SIGKILL after a grace period) and the launcher exits with the failure's status.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { constants } from 'node:os'
import { fileURLToPath } from 'node:url'

const GRACE_MS = 10_000

/** A free TCP port on the loopback interface (for MASTER_PORT). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
}

/** Runs `args` (the CLI's arguments, without --gpus) as `gpus` ranks on this machine; resolves with the exit status. */
export async function launchRanks(gpus: number, args: readonly string[], print: (line: string) => void): Promise<number> {
  const port = await freePort()
  const main = fileURLToPath(new URL('./main.js', import.meta.url))
  const token = randomBytes(12).toString('hex')
  const children: ChildProcess[] = []
  let failed: { rank: number; status: number } | undefined
  const exits = Array.from({ length: gpus }, (_, rank) => {
    const child = spawn(process.execPath, [main, ...args], {
      env: {
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: String(gpus),
        LOCAL_RANK: String(rank),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
        BSSN_RUN_TOKEN: token,
      },
      // Rank 0 is the run's voice; the others' output is prefixed so their errors can be told apart.
      stdio: rank === 0 ? ['inherit', 'inherit', 'inherit', 'ipc'] : ['ignore', 'ignore', 'pipe', 'ipc'],
    })
    child.on('error', () => {}) // a message to a rank that just exited
    children.push(child)
    child.stderr?.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line.trim()) print(`[rank ${rank}] ${line}`)
    })
    return new Promise<number>((resolve) => {
      child.once('error', (e) => {
        print(`bssn: rank ${rank} could not start: ${e.message}`)
        resolve(1)
      })
      child.once('exit', (code, signal) => {
        const status = code ?? (signal ? 128 + constants.signals[signal] : 1)
        if (status !== 0 && !failed) {
          failed = { rank, status }
          stopOthers(rank)
        }
        resolve(status)
      })
    })
  })
  let killer: NodeJS.Timeout | undefined
  const stopOthers = (except: number) => {
    children.forEach((c, r) => r !== except && c.exitCode === null && c.kill('SIGTERM'))
    killer = setTimeout(() => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')), GRACE_MS)
    killer.unref()
  }
  // The n-th signal here is the n-th a rank has had (a terminal's reached it already: the rank counts it once).
  let signals = 0
  const forward = (signal: NodeJS.Signals) => {
    signals++
    for (const c of children) if (c.connected) c.send({ type: 'bssn-stop', signal, count: signals }, () => {})
  }
  process.on('SIGINT', forward)
  process.on('SIGTERM', forward)
  try {
    const statuses = await Promise.all(exits)
    if (failed) print(`bssn: rank ${failed.rank} failed (exit status ${failed.status}); the other ranks were stopped`)
    return failed ? failed.status : statuses.find((s) => s !== 0) ?? 0
  } finally {
    if (killer) clearTimeout(killer)
    process.off('SIGINT', forward)
    process.off('SIGTERM', forward)
  }
}
