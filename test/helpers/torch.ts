// PyTorch for parity tests and baseline checks: the first python that imports torch (BSSN_PYTHON, python3, then
// Debian's /usr/bin/python3, where `apt-get install python3-torch` puts it). Suites that need it skip visibly
// without it, and fail instead when BSSN_REQUIRE_TORCH=1 (CI installs it).
import { runProcess } from './run.js'

export const requireTorch = process.env.BSSN_REQUIRE_TORCH === '1'

// Python is not ours to sanitize: the emulated suite under AddressSanitizer preloads its runtime into Node.
const { LD_PRELOAD: _preload, ...pythonEnv } = process.env

async function findTorchPython(): Promise<{ python?: string; reason: string }> {
  const candidates = [...new Set([process.env.BSSN_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c))]
  for (const python of candidates) {
    const probe = await runProcess(python, ['-c', 'import torch'], { timeout: 120_000, env: pythonEnv }).catch(() => undefined)
    if (probe?.status === 0) return { python, reason: '' }
  }
  return { reason: `torch is not importable by ${candidates.join(', ')} (apt-get install python3-torch)` }
}

const found = await findTorchPython()

/** The python to run torch scripts with; where none imports torch and BSSN_REQUIRE_TORCH=1, python3 (which fails). */
export const torchPython: string | undefined = found.python ?? (requireTorch ? 'python3' : undefined)
/** Why torch suites skip, or undefined when they run. */
export const torchSkipReason: string | undefined = torchPython ? undefined : found.reason

/** Runs a python script with `input` on stdin and resolves with its stdout parsed as JSON; rejects with its stderr. */
export async function runTorchScript(script: string, args: readonly string[], input?: unknown): Promise<any> {
  const out = await runProcess(torchPython!, [script, ...args], {
    input: input === undefined ? undefined : JSON.stringify(input),
    env: pythonEnv,
    timeout: 300_000,
  })
  if (out.status !== 0) throw new Error(`${torchPython} ${script} failed (${out.status ?? out.signal}):\n${out.stderr}`)
  return JSON.parse(out.stdout)
}
