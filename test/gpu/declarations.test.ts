// The run-time-loaded cuBLAS/cuDNN entry points, checked against the real headers (on the GPU host, which has
// them; CI does not). Skips visibly without the headers; fails under BSSN_REQUIRE_CUDA=1.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { native, packageRoot } from '../../src/native.js'
import { emulated, requireCuda } from '../helpers/backends.js'

const cudaInclude = path.join(process.env.CUDA_PATH ?? '/usr/local/cuda', 'include')
const cudnnInclude = [process.env.CUDNN_INCLUDE_DIR, '/usr/include/x86_64-linux-gnu', '/usr/include'].find(
  (d) => d && existsSync(path.join(d, 'cudnn.h')),
)
const haveHeaders = existsSync(path.join(cudaInclude, 'cublas_v2.h')) && cudnnInclude !== undefined
// The emulated build's libraries implement these very declarations: only the real headers can judge them.
const reason = haveHeaders || (requireCuda && !emulated) ? undefined
  : emulated && !haveHeaders ? 'the emulated build has no real cublas_v2.h/cudnn.h to check against; the GPU host runs it'
  : `no cublas_v2.h in ${cudaInclude} or no cudnn.h`
const loadReason = haveHeaders || requireCuda ? undefined : reason

describe.skipIf(reason !== undefined)(`declarations match cublas_v2.h and cudnn.h${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it('every declared entry point and constant matches the real headers', () => {
    const source = path.join(packageRoot, 'test', 'gpu', 'check_declarations.cpp')
    const args = ['-std=c++17', '-fsyntax-only', `-I${cudaInclude}`, `-I${cudnnInclude}`, `-I${path.join(packageRoot, 'native')}`, source]
    expect(() => execFileSync('c++', args, { encoding: 'utf8', stdio: 'pipe' })).not.toThrow()
  })
})

describe.skipIf(loadReason !== undefined)(`cuBLAS and cuDNN${loadReason ? ` (skipped: ${loadReason})` : ''}`, () => {
  it('load, with their versions', () => {
    const libs = native().libraries()
    expect(libs.cublas.error).toBeUndefined()
    expect(libs.cublas.version).toMatch(/^\d+\.\d+\.\d+$/)
    expect(libs.cudnn.error).toBeUndefined()
    expect(libs.cudnn.version).toMatch(/^9\.\d+\.\d+$/)
  })
})
