// The run-time-loaded NCCL entry points, checked against the real nccl.h, and the real libnccl.so.2 loaded, on a
// host that has them (the GPU host's PyTorch ships both in its nvidia-nccl package; CI has neither). Skips
// visibly without the header; fails under BSSN_REQUIRE_CUDA=1 on a real CUDA build.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { packageRoot } from '../../src/native.js'
import { emulated, requireCuda } from '../helpers/backends.js'
import { bundle } from '../helpers/peer.js'
import { runNode } from '../helpers/run.js'

/** The folder holding include/nccl.h and lib/libnccl.so.2: NCCL_HOME, PyTorch's nvidia-nccl package, /usr. */
function ncclHome(): string | undefined {
  const candidates = [process.env.NCCL_HOME]
  try {
    const code = 'import nvidia.nccl as m; print(list(m.__path__)[0])'
    candidates.push(execFileSync('python3', ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
  } catch {
    // no python3 or no nvidia-nccl: try the system's
  }
  candidates.push('/usr')
  return candidates.find((d) => d && existsSync(path.join(d, 'include', 'nccl.h')))
}

const home = ncclHome()
const cudaInclude = path.join(process.env.CUDA_PATH ?? '/usr/local/cuda', 'include')
const reason = home !== undefined || (requireCuda && !emulated) ? undefined
  : 'no nccl.h (NCCL_HOME, python3 -c "import nvidia.nccl" or /usr/include): the GPU host runs it'

describe.skipIf(reason !== undefined)(`declarations match nccl.h${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it('finds nccl.h', () => {
    expect(home, 'set NCCL_HOME or install nvidia-nccl for python3').toBeDefined()
  })

  it('every declared entry point, constant and ncclConfig_t field matches the real header', () => {
    const source = path.join(packageRoot, 'test', 'gpu', 'check_nccl_declarations.cpp')
    const args = ['-std=c++17', '-fsyntax-only', `-I${cudaInclude}`, `-I${path.join(home!, 'include')}`, `-I${path.join(packageRoot, 'native')}`, source]
    expect(() => execFileSync('c++', args, { encoding: 'utf8', stdio: 'pipe' })).not.toThrow()
  })

  it('libnccl.so.2 loads, with the header version (bssn doctor)', async () => {
    const header = readFileSync(path.join(home!, 'include', 'nccl.h'), 'utf8')
    const version = ['MAJOR', 'MINOR', 'PATCH'].map((part) => header.match(new RegExp(`#define NCCL_${part} (\\d+)`))![1]).join('.')
    const env = { ...process.env, BSSN_NCCL_PATH: path.join(home!, 'lib', 'libnccl.so.2') }
    const r = await runNode([path.join(packageRoot, 'dist', 'cli', 'main.js'), 'doctor', '--json'], { env })
    const nccl = JSON.parse(r.stdout).libraries.nccl
    expect(nccl.error).toBeUndefined()
    expect(nccl.version).toBe(version)
  })

  // One GPU can hold one rank (NCCL refuses two ranks on one device): the whole data-parallel path (rendezvous,
  // communicator, overlapped bucket all-reduces on the second stream, joins, the start's broadcasts) on real NCCL,
  // against the same steps in one process without it.
  it('one rank on real NCCL: 5 data-parallel training steps give the weights of 5 steps without NCCL', async () => {
    const program = await bundle('test/fixtures/dp_rank.ts')
    const port = 29_000 + (process.pid % 1000)
    const base: NodeJS.ProcessEnv = { ...process.env, BSSN_NCCL_PATH: path.join(home!, 'lib', 'libnccl.so.2') }
    for (const k of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT']) delete base[k]
    const args = [program, JSON.stringify({ what: 'train', arch: 'conv', steps: 5, batch: 8 })]
    const replyOf = (stdout: string) => JSON.parse(stdout.trim().split('\n').filter((l) => l.startsWith('{"ok"')).pop()!) as { ok: boolean; message?: string; params: Record<string, string> }
    const alone = replyOf((await runNode(args, { env: base })).stdout)
    const ranked = replyOf((await runNode(args, { env: { ...base, RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) } })).stdout)
    expect(alone.ok, alone.message).toBe(true)
    expect(ranked.ok, ranked.message).toBe(true)
    // An average over one rank is the value itself: the same weights, bit for bit.
    expect(ranked.params).toEqual(alone.params)
  }, 120_000)
})
