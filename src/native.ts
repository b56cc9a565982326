// The native addon's surface, typed once. Everything else in src/ goes through these interfaces.
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export interface NativeMemoryStats {
  allocatedBytes: number
  reservedBytes: number
  peakBytes: number
  liveBuffers: number
  liveTensors: number
}

export interface NativeTensorHandle {
  shape(): number[]
  disposed(): boolean
  dispose(): void
  toArray(): Promise<Float32Array>
  clone(): NativeTensorHandle
  copyFrom(source: NativeTensorHandle): void
  reshape(shape: readonly number[]): NativeTensorHandle
}

export interface NativeDeviceHandle {
  kind(): 'cpu' | 'cuda'
  name(): string
  index(): number
  info(): Record<string, number | string>
  memoryStats(): NativeMemoryStats
  emptyCache(): void
  synchronize(): Promise<void>
  timestamp(): Promise<number>
  fromData(data: Float32Array, shape: readonly number[]): NativeTensorHandle
  zeros(shape: readonly number[]): NativeTensorHandle
  empty(shape: readonly number[]): NativeTensorHandle
  randn(shape: readonly number[], seed: number, std: number): NativeTensorHandle
  rand(shape: readonly number[], seed: number, low: number, high: number): NativeTensorHandle
}

export interface NativeNormalizerOptions {
  mode: 'sn' | 'ssn' | 'bsn' | 'bssn'
  scale: number
  eps: number
  warmupIterations: number
  seed: number
  dims: readonly number[]
}

export interface NativeStateSizes {
  u1: number
  v1: number
  u2: number
  v2: number
}

export interface NativeNormalizerHandle {
  size(): number
  outputs(): NativeTensorHandle[]
  forward(iterations: number, outputs: readonly NativeTensorHandle[] | null, writeOutputs: boolean): void
  sigmas(): Promise<Float32Array>
  stateSizes(layer: number): NativeStateSizes
  getState(layer: number): Promise<Float32Array>
  setState(layer: number, which: 0 | 1 | 2 | 3, values: Float32Array): void
  adoptState(layer: number, other: NativeNormalizerHandle, otherLayer: number): void
  backward(grads: readonly NativeTensorHandle[], outputs: readonly NativeTensorHandle[] | null): void
  gradOutputs(): NativeTensorHandle[]
  dispose(): void
}

export interface NativeCudaStatus {
  available: boolean
  deviceCount: number
  reason: string
}

/** The emulated build's test surface (native/napi/emulator.cpp). */
export interface NativeEmulator {
  failAllocation(n: number): void
  failLaunch(n: number): void
  setMaxGridBlocks(n: number): number
  stats(): {
    launches: number
    blocks: number
    threads: number
    deviceBytes: number
    deviceAllocations: number
    hostPinnedAllocations: number
    stickyFault: string
    kernelLaunches: Record<string, number>
  }
  probes: {
    blockSums(): number[]
    broadcastWithoutBarrier(): number
    exitedLanes(): number[]
    warpOps(): number[][]
    atomicsAndDynamicShared(): number[]
    launchLimits(): Record<string, string>
    staleRead(): number[]
    fatal(which: string): string
  }
}

/** Op codes shared with native/core/ops.h. */
export enum UnaryOpCode {
  Relu = 0,
  LeakyRelu = 1,
  Tanh = 2,
  Sigmoid = 3,
  Scale = 4,
  AddScalar = 5,
}

export enum BinaryOpCode {
  Add = 0,
  Sub = 1,
  Mul = 2,
}

type H = NativeTensorHandle

export interface ConvGeometry {
  strideH: number
  strideW: number
  padH: number
  padW: number
}

export interface NativeOps {
  unary(op: UnaryOpCode, param: number, x: H, y: H): void
  unaryBackward(op: UnaryOpCode, param: number, x: H | null, y: H | null, dy: H, dx: H): void
  binary(op: BinaryOpCode, a: H, b: H, out: H): void
  addBias(x: H, bias: H, out: H, channelAxis: number): void
  sumToBias(dy: H, db: H, channelAxis: number): void
  sum(x: H, out: H, scale: number): void
  broadcast(scalar: H, out: H, scale: number): void
  gemm(a: H, b: H, c: H, transA: boolean, transB: boolean, alpha: number, beta: number): void
  adam(param: H, grad: H, m: H, v: H, options: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number }): void
  /** Convolution input -> output with `weight` [cOut, cIn, kh, kw]; each call overwrites its third tensor role:
   * conv2d writes output, conv2dBackwardData writes input, conv2dBackwardFilter writes weight. */
  conv2d(input: H, weight: H, output: H, options: ConvGeometry): void
  conv2dBackwardData(input: H, weight: H, output: H, options: ConvGeometry): void
  conv2dBackwardFilter(input: H, weight: H, output: H, options: ConvGeometry): void
  batchNorm(x: H, y: H, gamma: H, beta: H, runningMean: H, runningVar: H, saveMean: H | null, saveInvStd: H | null,
    options: { training: boolean; momentum: number; eps: number }): void
  batchNormBackward(x: H, dy: H, gamma: H, saveMean: H, saveInvStd: H, dx: H, dgamma: H, dbeta: H): void
  sgd(param: H, grad: H, momentumBuffer: H | null, options: { lr: number; momentum: number; weightDecay: number; firstStep: boolean }): void
}

export interface NativeLibraryStatus {
  loaded: boolean
  version?: string
  error?: string
}

export interface NativeBinding {
  builtWithCuda: boolean
  /** false: the CPU backend uses its reference loops instead of the BLAS (for tests); returns whether BLAS is in use. */
  setCpuBlas(enabled: boolean): boolean
  /** Only in the emulated test build (BSSN_CUDA=EMULATED): see test/emulated/. */
  emulator?: NativeEmulator
  libraries(): { cublas: NativeLibraryStatus; cudnn: NativeLibraryStatus }
  cpu(): NativeDeviceHandle
  cuda(index: number): NativeDeviceHandle
  cudaStatus(): NativeCudaStatus
  ops: NativeOps
  NormalizerHandle: new (weights: readonly NativeTensorHandle[], options: NativeNormalizerOptions) => NativeNormalizerHandle
}

/** The package root: src/ and dist/ both sit one level below it. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

let binding: NativeBinding | undefined

/** Loads the addon once; a failure explains what was tried and how to fix it. */
export function native(): NativeBinding {
  if (!binding) binding = load()
  return binding
}

/**
 * The addon file to load: BSSN_ADDON names one explicitly (the emulated test build, a debug build); otherwise
 * node-gyp-build's choice under the package root (prebuilds/, then build/Release/).
 */
export function addonPath(): string {
  const explicit = process.env.BSSN_ADDON
  if (explicit) return path.resolve(explicit)
  const require = createRequire(import.meta.url)
  return (require('node-gyp-build') as { resolve(dir: string): string }).resolve(packageRoot)
}

function load(): NativeBinding {
  const require = createRequire(import.meta.url)
  const explicit = process.env.BSSN_ADDON
  if (explicit) {
    try {
      return require(path.resolve(explicit)) as NativeBinding
    } catch (error) {
      throw new Error(`bssn: could not load the addon named by BSSN_ADDON (${explicit}): ${(error as Error).message}`, { cause: error })
    }
  }
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeBinding
    return nodeGypBuild(packageRoot)
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    throw new Error(
      [
        'bssn: could not load the native addon.',
        `  Tried prebuilds/${process.platform}-${process.arch}/ and build/Release/ under ${packageRoot}: ${reason}`,
        '  The addon is built when the package is installed. Rebuild it with `npm rebuild bssn`',
        '  (needs CMake >= 3.18 and a C++17 compiler; BSSN_CUDA=OFF builds the CPU backend only).',
      ].join('\n'),
      { cause: error },
    )
  }
}
