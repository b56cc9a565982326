// Child processes for tests, always asynchronous: a synchronous one blocks the test worker's event loop, and one
// that runs past vitest's 60 s RPC timeout on a busy machine fails the whole run ("Timeout calling onTaskUpdate").
import { type ChildProcess, spawn } from 'node:child_process'

export interface Run {
  /** The exit code; null when a signal ended it (see `signal`). */
  status: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface RunOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Run as this user and group (tests of permissions, as root). */
  uid?: number
  gid?: number
  /** Written to stdin, which is then closed. */
  input?: string
  /** Killed with SIGKILL after this many milliseconds (default: no bound). */
  timeout?: number
  /** Called with all of stdout and stderr so far whenever more arrives (to signal the child at some point). */
  onOutput?: (printed: string, child: ChildProcess) => void
}

/** Runs `file` with `args` to its end and resolves with its exit status and output; never rejects on a failure. */
export function runProcess(file: string, args: readonly string[], options: RunOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const { cwd, env = process.env, uid, gid, onOutput } = options
    const child = spawn(file, args, { cwd, env, uid, gid, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
      onOutput?.(stdout + stderr, child)
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
      onOutput?.(stdout + stderr, child)
    })
    const timer = options.timeout ? setTimeout(() => child.kill('SIGKILL'), options.timeout) : undefined
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('close', (status, signal) => {
      clearTimeout(timer)
      resolve({ status, signal, stdout, stderr })
    })
    child.stdin.on('error', () => {}) // a child that exits without reading its input
    child.stdin.end(options.input)
  })
}

/** runProcess with this Node: `node ...args`. */
export const runNode = (args: readonly string[], options?: RunOptions) => runProcess(process.execPath, args, options)
