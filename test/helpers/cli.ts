// Runs the built CLI (dist/cli/main.js) in a child process, asynchronously: a synchronous child that trains would
// block the vitest worker past its RPC timeout. dist/ is built by test/global_setup.ts.
import { spawn, type SpawnOptions } from 'node:child_process'
import path from 'node:path'

import { packageRoot } from '../../src/native.js'

export const cli = path.join(packageRoot, 'dist', 'cli', 'main.js')

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** Seconds from the first signal sent to the exit (when one was sent). */
  secondsAfterSignal?: number
}

export interface CliOptions extends Pick<SpawnOptions, 'cwd' | 'uid' | 'gid' | 'env'> {
  /** Kill the child after this long (a hang fails the test instead of blocking it). */
  timeoutMs?: number
  /** Signals to send once `when` matches the output so far: the first at once, the next `gapMs` apart. */
  signals?: NodeJS.Signals[]
  when?: RegExp
  gapMs?: number
}

export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const { timeoutMs = 120_000, signals = [], when, gapMs = 30, ...spawnOptions } = options
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let sentAt: number | undefined
    const check = () => {
      if (sentAt !== undefined || !signals.length || !when?.test(stdout + stderr)) return
      sentAt = performance.now()
      signals.forEach((s, i) => setTimeout(() => child.kill(s), i * gapMs))
    }
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d
      check()
    })
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d
      check()
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, secondsAfterSignal: sentAt === undefined ? undefined : (performance.now() - sentAt) / 1000 })
    })
  })
}
