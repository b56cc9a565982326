// `bssn doctor`: which addon loaded, what it was built with, what the CUDA driver and GPUs are, whether cuBLAS
// and cuDNN load, which CPU BLAS the CPU backend runs on, and what Device.auto() picks. Exit code 0 when a GPU is usable, 1 otherwise.
import { readFileSync } from 'node:fs'

import { Device } from '../device.js'
import { loadedAddon, native, type LoadedAddon, type NativeBuildInfo, type NativeHostGpu, type NativeLibraryStatus } from '../native.js'

export interface GpuReport extends Omit<NativeHostGpu, 'kernelError'> {
  /** The code in the binary that serves this GPU, e.g. 'sm_90 SASS' or 'compute_90 PTX (JIT-compiled by the driver)'. */
  code: string | null
  /** Whether bssn's kernels run on it (the CUDA runtime's own check), and why not. */
  runs: boolean
  error?: string
}

export interface LibraryReport extends NativeLibraryStatus {
  path?: string
  fix?: string
}

export interface DoctorReport {
  /** Set when no addon loads: the loader's gathered message. */
  loadError?: string
  addon?: LoadedAddon & { build: NativeBuildInfo }
  host: { platform: string; glibc: string; node: string; nvidiaDriver: string | null }
  cuda?: {
    /** CUDA version the driver supports, e.g. '13.0'; null without a driver. */
    driverCuda: string | null
    runtime: string | null
    available: boolean
    reason: string
    hint?: string
    gpus: GpuReport[]
  }
  libraries?: { cublas: LibraryReport; cudnn: LibraryReport; nccl: LibraryReport }
  /**
   * The CPU BLAS of the CPU backend's products and convolutions: `name` says which (e.g. 'OpenBLAS 0.3.21 ...
   * Haswell MAX_THREADS=64 (linked in)', or a system library with its path); null with `error` (why) when bssn's
   * own, slower loops run instead.
   */
  blas?: { name: string | null; error?: string }
  /**
   * On CUDA, `tf32`: where TF32 tensor-core math is allowed by default (device.tf32), and whether
   * NVIDIA_TF32_OVERRIDE=0 forbids it process-wide.
   */
  auto?: {
    kind: 'cpu' | 'cuda'
    name: string
    emulated: boolean
    fallbackReason?: string
    tf32?: { conv: boolean; matmul: boolean; overriddenOff: boolean }
  }
  gpuUsable: boolean
}

const cudaVersion = (v: number): string | null => (v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : null)

/** The oldest Linux driver for each CUDA major version (CUDA's minor version compatibility). */
const minimumDriver: Record<number, string> = { 12: '525.60.13', 13: '580.65.06' }

interface ArchCode {
  arch: number
  /** '' (portable code), 'a' (sm_90a: that exact GPU only) or 'f' (sm_100f: that major version, no PTX forward) */
  variant: '' | 'a' | 'f'
  sass: boolean
  ptx: boolean
}

/** CMAKE_CUDA_ARCHITECTURES entries ('80-real', '90-virtual', '86', '90a-real') as the code they put in the binary. */
export function parseArchitectures(list: readonly string[]): ArchCode[] {
  const out: ArchCode[] = []
  for (const entry of list) {
    const m = /^(\d+)([af]?)(?:-(real|virtual))?$/.exec(entry)
    if (!m) continue // 'native', 'all', 'all-major': nothing to match against; the runtime's own check still says
    out.push({ arch: Number(m[1]), variant: m[2] as ArchCode['variant'], sass: m[3] !== 'virtual', ptx: m[3] !== 'real' })
  }
  return out
}

/**
 * Which code of the binary a GPU of compute capability `cc` runs: SASS for the same major version and an equal
 * or lower minor (the newest such; arch-specific 'a' code only on that exact GPU), else portable PTX of an equal or
 * lower architecture, which the driver JIT-compiles.
 */
export function codeFor(archs: readonly ArchCode[], cc: string): string | null {
  const [major, minor] = cc.split('.').map(Number)
  const target = major! * 10 + minor!
  const sass = archs
    .filter((a) => a.sass && (a.variant === 'a' ? a.arch === target : Math.floor(a.arch / 10) === major && a.arch <= target))
    .sort((a, b) => b.arch - a.arch)[0]
  if (sass) return `sm_${sass.arch}${sass.variant} SASS`
  const ptx = archs.filter((a) => a.ptx && a.variant === '' && a.arch <= target).sort((a, b) => b.arch - a.arch)[0]
  if (ptx) return `compute_${ptx.arch} PTX (JIT-compiled by the driver on first use)`
  return null
}

function nvidiaDriver(): string | null {
  try {
    const text = readFileSync('/proc/driver/nvidia/version', 'utf8')
    return /Kernel Module\s+(?:for\s+\S+\s+)?([\d.]+)/.exec(text)?.[1] ?? text.split('\n')[0]!.trim()
  } catch {
    return null
  }
}

function glibc(): string {
  try {
    const header = (process.report.getReport() as unknown as { header: { glibcVersionRuntime?: string } }).header
    return header.glibcVersionRuntime ?? ''
  } catch {
    return ''
  }
}

/** Where a loaded shared library lives, from this process's memory map (Linux). */
function mappedPath(pattern: RegExp): string | undefined {
  try {
    return readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .map((line) => line.slice(line.indexOf('/')))
      .find((file) => pattern.test(file))
  } catch {
    return undefined
  }
}

export function doctorReport(): DoctorReport {
  const host = { platform: `${process.platform}-${process.arch}`, glibc: glibc(), node: process.versions.node, nvidiaDriver: nvidiaDriver() }
  let addon: LoadedAddon
  try {
    addon = loadedAddon()
  } catch (error) {
    return { loadError: error instanceof Error ? error.message : String(error), host, gpuUsable: false }
  }
  const binding = native()
  const build = binding.buildInfo()
  const report: DoctorReport = { addon: { ...addon, build }, host, gpuUsable: false }

  const cudaHost = binding.cudaHost()
  const archs = parseArchitectures(build.cudaArchitectures)
  const cuda: NonNullable<DoctorReport['cuda']> = {
    driverCuda: cudaVersion(cudaHost.driverVersion),
    runtime: cudaVersion(cudaHost.runtimeVersion),
    available: cudaHost.available,
    reason: cudaHost.reason,
    gpus: cudaHost.gpus.map((gpu) => ({
      index: gpu.index,
      name: gpu.name,
      computeCapability: gpu.computeCapability,
      totalMemoryBytes: gpu.totalMemoryBytes,
      multiprocessors: gpu.multiprocessors,
      code: build.cuda === 'cuda' ? codeFor(archs, gpu.computeCapability) : build.cuda === 'emulated' ? 'emulated' : null,
      runs: gpu.kernelError === undefined,
      ...(gpu.kernelError === undefined ? {} : { error: gpu.kernelError }),
    })),
  }
  const runtimeMajor = Math.floor(cudaHost.runtimeVersion / 1000)
  if (build.cuda === 'none') {
    cuda.hint = 'this addon was built without the CUDA backend: rebuild it with nvcc on PATH (npm rebuild bssn --build-from-source)'
  } else if (cudaHost.driverVersion === 0 && build.cuda === 'cuda') {
    cuda.hint = host.nvidiaDriver
      ? `the NVIDIA kernel driver ${host.nvidiaDriver} is loaded, but its library libcuda.so.1 is not found: in a container, ` +
        "start it with NVIDIA's container toolkit (docker run --gpus all ...); otherwise reinstall the driver"
      : 'no NVIDIA driver was found (libcuda.so.1): install the driver to use a GPU'
  } else if (cudaHost.driverVersion > 0 && cudaHost.driverVersion < cudaHost.runtimeVersion) {
    cuda.hint =
      `the driver supports CUDA ${cuda.driverCuda}, older than this binary's CUDA ${cuda.runtime} runtime: update the driver` +
      `${minimumDriver[runtimeMajor] ? ` to ${minimumDriver[runtimeMajor]} or newer` : ''}, or build from source with a CUDA toolkit ` +
      'your driver supports (npm rebuild bssn --build-from-source)'
  } else if (cuda.gpus.some((g) => !g.runs)) {
    cuda.hint = 'a GPU has no code in this binary: build from source for it (BSSN_CUDA_ARCHITECTURES=<cc>-real npm rebuild bssn --build-from-source)'
  }
  report.cuda = cuda

  const libs = binding.libraries()
  const major = runtimeMajor || 13
  const where = (variable: string, file: string) => `put its folder on LD_LIBRARY_PATH, or name the file with ${variable}=/path/to/${file}`
  // The native error ends with a generic "Install ..." line: the advice here replaces it.
  const tried = (lib: NativeLibraryStatus) => ({ ...lib, error: lib.error?.replace(/\n\s*Install [^\n]*$/, '') })
  report.libraries = {
    cublas: libs.cublas.loaded
      ? { ...libs.cublas, path: mappedPath(/\/libcublas\.so/) }
      : { ...tried(libs.cublas), fix: `install cuBLAS for CUDA ${major} (part of the CUDA toolkit, or NVIDIA's libcublas package), ${where('BSSN_CUBLAS_PATH', `libcublas.so.${major}`)}` },
    cudnn: libs.cudnn.loaded
      ? { ...libs.cudnn, path: mappedPath(/\/libcudnn\.so/) }
      : { ...tried(libs.cudnn), fix: `install cuDNN 9 for CUDA ${major} (not part of the toolkit: NVIDIA's cuDNN packages), ${where('BSSN_CUDNN_PATH', 'libcudnn.so.9')}` },
    nccl: libs.nccl.loaded
      ? { ...libs.nccl, path: mappedPath(/\/libnccl\.so/) }
      : { ...tried(libs.nccl), fix: `install NCCL 2 (NVIDIA's libnccl2 package, or PyTorch's nvidia-nccl-cu${major} wheel), ${where('BSSN_NCCL_PATH', 'libnccl.so.2')}` },
  }

  const cpuInfo = Device.cpu().info()
  report.blas = typeof cpuInfo.blas === 'string' ? { name: cpuInfo.blas } : { name: null, error: String(cpuInfo.blasError ?? '') }

  const device = Device.auto()
  report.auto = {
    kind: device.kind,
    name: device.name,
    emulated: device.emulated,
    ...(device.fallbackReason ? { fallbackReason: device.fallbackReason } : {}),
    ...(device.kind === 'cuda' ? { tf32: { ...device.tf32, overriddenOff: process.env.NVIDIA_TF32_OVERRIDE === '0' } } : {}),
  }
  report.gpuUsable = device.kind === 'cuda' && !device.emulated
  return report
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`
const indent = (text: string, pad: string) => text.split('\n').join(`\n${pad}`)

export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = ['bssn doctor', '']
  const row = (label: string, text: string) => lines.push(`${label.padEnd(14)}${indent(text, ' '.repeat(14))}`)
  row('host', `${r.host.platform}${r.host.glibc ? `, glibc ${r.host.glibc}` : ''}, Node ${r.host.node}`)
  if (r.loadError || !r.addon) {
    row('addon', `none loads\n${r.loadError ?? ''}`)
    lines.push('', 'GPU usable: no (the addon does not load)')
    return lines.join('\n')
  }
  const a = r.addon
  const origin = a.kind === 'prebuilt' ? 'prebuilt (shipped in the package)' : a.kind === 'built' ? 'built here (from source)' : 'named by BSSN_ADDON'
  row('addon', `${origin}\n${a.file}`)
  for (const s of a.skipped) row('', `(skipped ${s.file}: ${s.reason})`)
  const b = a.build
  const backend =
    b.cuda === 'cuda'
      ? `CUDA ${b.cudaToolkit}, code for ${describeArchs(b.cudaArchitectures)}`
      : b.cuda === 'emulated'
        ? 'the emulated CUDA device (a test build: no GPU code)'
        : 'CPU only (no CUDA backend)'
  row('build', `${backend}\n${b.compiler}, ${b.buildType}${b.portable ? ', portable (static libstdc++, glibc >= 2.28)' : ''}, Node-API ${b.napiVersion}`)

  const c = r.cuda!
  const driver = r.host.nvidiaDriver
    ? `${r.host.nvidiaDriver}${c.driverCuda ? `, supports CUDA ${c.driverCuda}` : ''}`
    : c.driverCuda
      ? `supports CUDA ${c.driverCuda}`
      : 'none found'
  row('driver', driver)
  if (b.cuda !== 'none') row('CUDA runtime', c.runtime ? `${c.runtime} (linked into the addon)` : 'unknown')
  if (c.gpus.length === 0) row('GPUs', `none: ${c.reason}`)
  for (const g of c.gpus) {
    const code = g.runs ? `runs bssn's kernels (${g.code ?? 'code found by the runtime'})` : `cannot run bssn's kernels: ${g.error}${g.code ? '' : ' (no code for it in this binary)'}`
    row(g.index === 0 ? 'GPUs' : '', `${g.index}: ${g.name}, compute capability ${g.computeCapability}, ${gib(g.totalMemoryBytes)}, ${g.multiprocessors} SMs\n   ${code}`)
  }
  if (c.hint) row('', `-> ${c.hint}`)

  const neededFor = { cuBLAS: 'matrix products', cuDNN: 'convolutions', NCCL: 'training on several GPUs' }
  for (const [label, lib] of [['cuBLAS', r.libraries!.cublas], ['cuDNN', r.libraries!.cudnn], ['NCCL', r.libraries!.nccl]] as const) {
    if (lib.loaded) row(label, `${lib.version}${lib.path ? ` (${lib.path})` : ''}`)
    else row(label, `not loaded${b.cuda === 'none' ? '' : ` (needed on a GPU: ${neededFor[label]})`}\n${lib.error ?? ''}${lib.fix && b.cuda !== 'none' ? `\n-> ${lib.fix}` : ''}`)
  }

  const blas = r.blas!
  row('CPU BLAS', blas.name ?? `none: the CPU backend runs its own loops (slow)\n${blas.error ?? ''}`)

  const auto = r.auto!
  row('Device.auto()', auto.kind === 'cuda' ? `${auto.name}${auto.emulated ? ' (emulated: not a GPU)' : ''}` : `the CPU: ${auto.fallbackReason ?? ''}`)
  if (auto.tf32) {
    const yes = (on: boolean) => (on && !auto.tf32!.overriddenOff ? 'yes' : 'no')
    row('TF32', `convolutions ${yes(auto.tf32.conv)}, matrix products ${yes(auto.tf32.matmul)} (device.tf32${auto.tf32.overriddenOff ? '; NVIDIA_TF32_OVERRIDE=0 forbids it' : ''})`)
  }
  lines.push('', `GPU usable: ${r.gpuUsable ? 'yes' : 'no'}`)
  return lines.join('\n')
}

function describeArchs(list: readonly string[]): string {
  const archs = parseArchitectures(list)
  const sass = archs.filter((a) => a.sass).map((a) => `sm_${a.arch}${a.variant}`)
  const ptx = archs.filter((a) => a.ptx).map((a) => `compute_${a.arch}`)
  return [sass.length ? `${sass.join(' ')} (SASS)` : '', ptx.length ? `${ptx.join(' ')} (PTX, for newer GPUs)` : ''].filter(Boolean).join(', ') || list.join(' ')
}

/** Prints the report (JSON with `json`); returns the exit code: 0 when a GPU is usable, 1 otherwise. */
export function runDoctor(options: { json: boolean; print: (text: string) => void }): number {
  const report = doctorReport()
  options.print(options.json ? JSON.stringify(report, null, 2) : formatDoctor(report))
  return report.gpuUsable ? 0 : 1
}
