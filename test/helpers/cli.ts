// Runs the built CLI (dist/cli/main.js) in a child process, asynchronously: a synchronous child that trains would
// block the vitest worker past its RPC timeout. dist/ is built by test/global_setup.ts.
import path from 'node:path'

import { packageRoot } from '../../src/native.js'
import { runProcess, type RunOptions } from './run.js'

export const cli = path.join(packageRoot, 'dist', 'cli', 'main.js')

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** Seconds from the first signal sent to the exit (when one was sent). */
  secondsAfterSignal?: number
}

export interface CliOptions extends Pick<RunOptions, 'cwd' | 'uid' | 'gid' | 'env'> {
  /** Kill the child after this long (a hang fails the test instead of blocking it). */
  timeoutMs?: number
  /** Signals to send once `when` matches the output so far: the first at once, the next `gapMs` apart. */
  signals?: NodeJS.Signals[]
  when?: RegExp
  gapMs?: number
}

export async function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const { timeoutMs = 120_000, signals = [], when, gapMs = 30, ...spawnOptions } = options
  let sentAt: number | undefined
  const r = await runProcess(process.execPath, [cli, ...args], {
    ...spawnOptions,
    input: '',
    timeout: timeoutMs,
    onOutput: (printed, child) => {
      if (sentAt !== undefined || !signals.length || !when?.test(printed)) return
      sentAt = performance.now()
      signals.forEach((s, i) => setTimeout(() => child.kill(s), i * gapMs))
    },
  })
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, secondsAfterSignal: sentAt === undefined ? undefined : (performance.now() - sentAt) / 1000 }
}
