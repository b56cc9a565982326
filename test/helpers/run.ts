// Child processes for tests, always asynchronous: a synchronous one blocks the test worker's event loop, and one
// that runs past vitest's 60 s RPC timeout on a busy machine fails the whole run ("Timeout calling onTaskUpdate").
import { spawn } from 'node:child_process'

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
  /** Written to stdin, which is then closed. */
  input?: string
  /** Killed with SIGKILL after this many milliseconds (default: no bound). */
  timeout?: number
}

/** Runs `file` with `args` to its end and resolves with its exit status and output; never rejects on a failure. */
export function runProcess(file: string, args: readonly string[], options: RunOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
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
