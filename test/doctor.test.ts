// `bssn doctor`: which code of the binary serves which GPU, and the report on whatever this machine is (no GPU,
// the emulated device, or the GPU host under BSSN_REQUIRE_CUDA=1).
import path from 'node:path'
import { describe, expect, it } from 'vitest'

import { codeFor, parseArchitectures } from '../src/cli/doctor.js'
import { loadedAddon, native, packageRoot } from '../src/native.js'
import { runNode } from './helpers/run.js'

describe('which code serves a GPU', () => {
  const shipped = parseArchitectures(['80-real', '86-real', '89-real', '90-real', '90-virtual'])
  it.each([
    ['8.0', 'sm_80 SASS'], // A100
    ['8.6', 'sm_86 SASS'], // RTX 30xx, A40
    ['8.7', 'sm_86 SASS'], // Jetson Orin: same major, newer minor
    ['8.9', 'sm_89 SASS'], // L4, L40, RTX 40xx
    ['9.0', 'sm_90 SASS'], // H100, H200
    ['10.0', 'compute_90 PTX (JIT-compiled by the driver on first use)'], // B200
    ['12.0', 'compute_90 PTX (JIT-compiled by the driver on first use)'], // RTX 50xx
    ['7.5', null], // T4: older than any code in the binary
  ])('compute capability %s: %s', (cc, code) => {
    expect(codeFor(shipped, cc)).toBe(code)
  })

  it('reads every form of CMAKE_CUDA_ARCHITECTURES', () => {
    expect(parseArchitectures(['86', '90a-real', '75-virtual', 'native'])).toEqual([
      { arch: 86, variant: '', sass: true, ptx: true },
      { arch: 90, variant: 'a', sass: true, ptx: false },
      { arch: 75, variant: '', sass: false, ptx: true },
    ])
    expect(codeFor(parseArchitectures(['90a-real']), '9.0')).toBe('sm_90a SASS')
    expect(codeFor(parseArchitectures(['90a-real']), '10.0')).toBeNull() // arch-specific code runs on 9.0 only
    expect(codeFor(parseArchitectures(['100f']), '10.3')).toBe('sm_100f SASS') // family code: the same major version
    expect(codeFor(parseArchitectures(['100f']), '12.0')).toBeNull() // and no portable PTX
    expect(codeFor(parseArchitectures(['75-virtual']), '8.6')).toMatch(/^compute_75 PTX/)
  })
})

describe('bssn doctor on this machine', () => {
  const cli = path.join(packageRoot, 'dist', 'cli', 'main.js')
  it('reports the loaded addon, the CUDA host and Device.auto(), with exit code 0 exactly when a GPU is usable', async () => {
    const r = await runNode([cli, 'doctor', '--json'])
    const report = JSON.parse(r.stdout)
    const binding = native()
    expect(report.loadError).toBeUndefined()
    expect(report.addon.file).toBe(loadedAddon().file)
    expect(report.addon.kind).toBe(loadedAddon().kind)
    expect(report.addon.build).toEqual(binding.buildInfo())
    expect(report.addon.build.cuda).toEqual(binding.builtWithCuda ? expect.stringMatching(/^(cuda|emulated)$/) : 'none')
    if (report.addon.build.cuda === 'cuda') expect(report.addon.build.cudaArchitectures.length).toBeGreaterThan(0)

    const status = binding.cudaStatus()
    expect(report.cuda.available).toBe(status.available)
    expect(report.cuda.gpus).toHaveLength(status.deviceCount)
    for (const gpu of report.cuda.gpus) {
      expect(gpu.computeCapability).toMatch(/^\d+\.\d+$/)
      expect(gpu.totalMemoryBytes).toBeGreaterThan(0)
      if (report.addon.build.cuda === 'cuda') expect(gpu.code !== null).toBe(gpu.runs)
    }
    for (const lib of [report.libraries.cublas, report.libraries.cudnn, report.libraries.nccl]) {
      if (lib.loaded) expect(lib.version).toMatch(/^\d+\.\d+\.\d+$/)
      else expect(lib.error).toMatch(/\S/)
    }

    const cpuInfo = binding.cpu().info()
    expect(report.blas).toEqual(typeof cpuInfo.blas === 'string' ? { name: cpuInfo.blas } : { name: null, error: cpuInfo.blasError })

    expect(report.gpuUsable).toBe(report.auto.kind === 'cuda' && !report.auto.emulated)
    expect(r.status).toBe(report.gpuUsable ? 0 : 1)
    if (report.auto.kind === 'cpu') expect(report.auto.fallbackReason).toMatch(/\S/)
    // TF32 as PyTorch by default: convolutions yes, matrix products no (reported for CUDA only: the CPU ignores it).
    if (report.auto.kind === 'cuda') expect(report.auto.tf32).toEqual({ conv: true, matmul: false, overriddenOff: process.env.NVIDIA_TF32_OVERRIDE === '0' })
    else expect(report.auto.tf32).toBeUndefined()
    // The GPU host's check: there, the doctor must find the GPU usable.
    if (process.env.BSSN_REQUIRE_CUDA === '1' && process.env.BSSN_EMULATED !== '1') expect(r.status).toBe(0)
  })

  it('prints the same for people', async () => {
    const r = await runNode([cli, 'doctor'])
    expect(r.stdout).toMatch(/^bssn doctor$/m)
    expect(r.stdout).toMatch(new RegExp(`^\\s+${loadedAddon().file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'))
    expect(r.stdout).toMatch(/^driver\s+\S/m)
    expect(r.stdout).toMatch(/^cuBLAS\s+\S/m)
    expect(r.stdout).toMatch(/^cuDNN\s+\S/m)
    expect(r.stdout).toMatch(/^NCCL\s+\S/m)
    expect(r.stdout).toMatch(/^CPU BLAS\s+\S/m)
    expect(r.stdout).toMatch(/^Device\.auto\(\) /m)
    if (native().cudaStatus().available) expect(r.stdout).toMatch(/^TF32\s+convolutions (yes|no), matrix products no /m)
    expect(r.stdout).toMatch(/^GPU usable: (yes|no)$/m)
  })
})

// NCCL is loaded like cuBLAS: by soname, or the file BSSN_NCCL_PATH names. The doctor says why it is missing.
describe.skipIf(!native().builtWithCuda)(`bssn doctor on NCCL${native().builtWithCuda ? '' : ' (skipped: a build without CUDA has no NCCL)'}`, () => {
  const cli = path.join(packageRoot, 'dist', 'cli', 'main.js')
  const doctor = async (ncclPath: string | undefined) => {
    const env = { ...process.env, BSSN_NCCL_PATH: ncclPath }
    if (ncclPath === undefined) delete env.BSSN_NCCL_PATH
    const [json, text] = await Promise.all([runNode([cli, 'doctor', '--json'], { env }), runNode([cli, 'doctor'], { env })])
    return { nccl: JSON.parse(json.stdout).libraries.nccl, text: text.stdout }
  }

  it('by soname: its version, or libnccl.so.2 not found and the fix', async () => {
    const { nccl, text } = await doctor(undefined)
    if (nccl.loaded) {
      expect(nccl.version).toMatch(/^2\.\d+\.\d+$/)
      expect(text).toMatch(new RegExp(`^NCCL\\s+${nccl.version.replace(/\./g, '\\.')}`, 'm'))
    } else {
      expect(nccl.error).toMatch(/^NCCL could not be loaded; tried:\n\s+libnccl\.so\.2: cannot open shared object file/)
      expect(nccl.fix).toMatch(/BSSN_NCCL_PATH=\/path\/to\/libnccl\.so\.2/)
      expect(text).toMatch(/^NCCL\s+not loaded \(needed on a GPU: training on several GPUs\)$/m)
      expect(text).toMatch(/^\s+-> install NCCL 2/m)
    }
  })

  it('BSSN_NCCL_PATH naming a missing file', async () => {
    const missing = path.join(packageRoot, 'no-such-dir', 'libnccl.so.2')
    const { nccl, text } = await doctor(missing)
    expect(nccl).toMatchObject({ loaded: false, error: expect.stringContaining(`${missing}: cannot open shared object file`) })
    expect(text).toContain(missing)
  })

  it('BSSN_NCCL_PATH naming a library that is not NCCL', async () => {
    const { nccl } = await doctor('libm.so.6')
    expect(nccl).toMatchObject({ loaded: false, error: expect.stringMatching(/^NCCL \(libm\.so\.6\) has no entry point ncclGetVersion/) })
  })
})
