// Which CPU BLAS the CPU backend runs on (native/cpu/blas.cpp): the OpenBLAS linked into the addon, kept private
// and without its thread pool; BSSN_BLAS=none; and the system search, which refuses a slow BLAS such as netlib's
// libblas.so.3 and takes one only when it proves to be OpenBLAS, BLIS or MKL. Each choice is made once per
// process, so they are checked in child processes (asynchronous: the worker stays responsive).
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { addonPath, native, packageRoot } from '../src/native.js'

interface Found {
  archive: string | null
  why?: string
}
const openblas = createRequire(import.meta.url)(path.join(packageRoot, 'scripts', 'openblas.cjs')) as { findOpenBlas(o: { fetch: boolean; log: () => void }): Found }

function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, encoding: 'utf8', maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    )
  })
}

/** device.info() of the CPU in a fresh process with `env` added (BSSN_BLAS and friends unset first). */
async function cpuInfoWith(env: NodeJS.ProcessEnv): Promise<Record<string, string | number>> {
  const base = { ...process.env }
  for (const name of ['BSSN_BLAS', 'BSSN_BLAS_PATH', 'BSSN_BLAS_SEARCH', 'LD_LIBRARY_PATH']) delete base[name]
  const r = await run(process.execPath, ['-e', 'console.log(JSON.stringify(require(process.argv[1]).cpu().info()))', addonPath()], { ...base, ...env })
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout)
}

const linked = native().buildInfo().openblas
// The archive a build here links (scripts/openblas.cjs, no download): when there is one, the addon must have it.
const archive = process.platform === 'linux' ? openblas.findOpenBlas({ fetch: false, log: () => {} }).archive : null

describe.skipIf(!linked && !archive)('the OpenBLAS linked into the addon', () => {
  it('is linked in when scripts/openblas.cjs finds an archive, and runs unless told otherwise', async () => {
    expect(linked).toMatch(/\.a$/)
    const info = await cpuInfoWith({})
    expect(info.blas).toMatch(/^OpenBLAS \d+\.\d+\.\d+ .*\(linked in\)$/)
    expect((await cpuInfoWith({ BSSN_BLAS: 'none' })).blasError).toBe('turned off by BSSN_BLAS=none')
    expect((await cpuInfoWith({ BSSN_BLAS: 'fast' })).blasError).toMatch(/^BSSN_BLAS=fast is not understood, so no BLAS is used/)
  })

  it('keeps its symbols private (nothing to clash with numpy or PyTorch in the same process)', async () => {
    for (const which of ['--defined-only', '--undefined-only']) {
      const r = await run('nm', ['-D', which, addonPath()])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).not.toMatch(/cblas_|openblas|gotoblas|blas_thread|sgemm_/i)
    }
  })

  it('stops the thread pool OpenBLAS starts when the addon loads', async () => {
    const script = `
      const threads = () => require('fs').readdirSync('/proc/self/task').length
      const before = threads()
      require(process.argv[1])
      console.log(JSON.stringify({ before, after: threads() }))`
    const r = await run(process.execPath, ['-e', script, addonPath()])
    expect(r.status, r.stderr).toBe(0)
    const { before, after } = JSON.parse(r.stdout)
    expect(after).toBe(before)
  })
})

// Stand-ins for system libraries, found through LD_LIBRARY_PATH as libblas.so.3 (the only soname searched:
// BSSN_BLAS_SEARCH, so that a BLAS installed here does not come first): one with CBLAS only (as netlib's reference
// BLAS), one that says it is OpenBLAS.
describe('the system BLAS search (BSSN_BLAS=system, or a build without OpenBLAS linked in)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bssn-blas-'))
  const cxx = process.env.CXX || 'c++'
  const search = { BSSN_BLAS_SEARCH: 'libblas.so.3', ...(linked ? { BSSN_BLAS: 'system' } : {}) }
  let compileError = ''

  async function fakeBlas(name: string, extra: string): Promise<string> {
    const folder = path.join(dir, name)
    mkdirSync(folder)
    const source = path.join(folder, 'blas.cpp')
    writeFileSync(source, `extern "C" { void cblas_sgemm() {} ${extra} }\n`)
    const r = await run(cxx, ['-shared', '-fPIC', '-o', path.join(folder, 'libblas.so.3'), source])
    if (r.status !== 0) compileError = `${cxx}: ${r.stderr}`
    return folder
  }
  let netlib = '', fast = ''
  beforeAll(async () => {
    ;[netlib, fast] = await Promise.all([fakeBlas('netlib', ''), fakeBlas('fast', 'const char* openblas_get_config() { return "OpenBLAS 9.9.9 FAKE"; }')])
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("refuses netlib's reference BLAS as libblas.so.3, and says why", async ({ skip }) => {
    if (compileError) skip(`no C++ compiler to make the stand-in: ${compileError}`)
    const info = await cpuInfoWith({ ...search, LD_LIBRARY_PATH: netlib })
    expect(info.blas).toBeUndefined()
    expect(info.blasError).toContain(`libblas.so.3 (${path.join(netlib, 'libblas.so.3')}) is not OpenBLAS, BLIS or MKL: netlib's reference BLAS or another slow one, so it is not used`)
    // Named with BSSN_BLAS_PATH, it is used as given.
    expect((await cpuInfoWith({ BSSN_BLAS_PATH: path.join(netlib, 'libblas.so.3') })).blas).toBe(path.join(netlib, 'libblas.so.3'))
  })

  it('takes libblas.so.3 when it proves to be a fast one, and names it with its path', async ({ skip }) => {
    if (compileError) skip(`no C++ compiler to make the stand-in: ${compileError}`)
    const info = await cpuInfoWith({ ...search, LD_LIBRARY_PATH: fast })
    expect(info.blas).toBe(`OpenBLAS 9.9.9 FAKE (${path.join(fast, 'libblas.so.3')})`)
  })
})
