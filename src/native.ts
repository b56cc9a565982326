// The native addon's surface, typed once. Everything else in src/ goes through these interfaces.
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { isMainThread } from 'node:worker_threads'

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
  /** false, freeing nothing, for a tensor owned by a BSSN */
  dispose(): boolean
  toArray(): Promise<Float32Array>
  clone(): NativeTensorHandle
  copyFrom(source: NativeTensorHandle): void
  write(data: Float32Array): void
  reshape(shape: readonly number[]): NativeTensorHandle
  /** Native side of tensor.share(): the opaque token and this call's publication number. */
  share(): { token: string; publication: number }
  opened(): boolean
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
  zeros(shape: readonly number[], value?: number): NativeTensorHandle
  empty(shape: readonly number[]): NativeTensorHandle
  randn(shape: readonly number[], seed: number, std: number): NativeTensorHandle
  rand(shape: readonly number[], seed: number, low: number, high: number): NativeTensorHandle
  open(token: string, shape: readonly number[], publication: number): NativeTensorHandle
  profileKernels(on: boolean): void
  kernelTimes(): Promise<Array<{ kernel: string; ms: number }>>
  beginCapture(): void
  endCapture(): number
  replay(id: number): void
  releaseCapture(id: number): void
  tf32(): { conv: boolean; matmul: boolean }
  setTf32(conv: boolean, matmul: boolean): void
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
  forward(iterations: number, outputs: readonly NativeTensorHandle[] | null, writeOutputs: boolean, call?: { scale: number; eps: number }): void
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

/** A holder of a private pool (NativeEmulator.privatePool). */
export type NativePrivatePool = { readonly __privatePool: unique symbol }

/** The emulated build's test surface (native/napi/emulator.cpp). */
export interface NativeEmulator {
  /** The n-th device allocation from now fails, and the count - 1 after it (default 1; 0: off). */
  failAllocation(n: number, count?: number): void
  failLaunch(n: number): void
  /** The next n cooperative launches are refused with cudaErrorCooperativeLaunchTooLarge (0: off). */
  refuseCooperative(n: number): void
  setMaxGridBlocks(n: number): number
  stats(): {
    launches: number
    blocks: number
    threads: number
    deviceBytes: number
    deviceAllocations: number
    hostPinnedAllocations: number
    /** cudaGraphLaunch calls; each graph node also counts in `launches` and `kernelLaunches`. */
    graphLaunches: number
    /** Stream captures begun (cudaStreamBeginCapture). */
    captures: number
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
    // Stream capture and graphs (native/emulator/probes.h); capture modes: 0 Global, 1 ThreadLocal, 2 Relaxed.
    graphReplay(input: Float32Array | number[], scalars: number[], replays: number, mode: number): NativeEmulatorReport
    captureError(op: string, mode: number, input: Float32Array | number[]): NativeEmulatorReport
    captureMisuse(): NativeEmulatorReport
    endFromOtherThread(mode: number): NativeEmulatorReport
    otherThreadDuringCapture(mode: number, otherMode: number): NativeEmulatorReport
    captureWhileOthersWait(input: Float32Array | number[], rounds: number, mode: number): NativeEmulatorReport
    graphLifetime(input: Float32Array | number[], scalars: number[]): NativeEmulatorReport
    graphFault(input: Float32Array | number[], scalars: number[], replays: number, failAt: number): NativeEmulatorReport
    capturedStep(inputs: Float32Array | number[], init: Float32Array | number[], scalars: number[], mode: number): NativeEmulatorReport
    copyNodeAfterFree(): string
    // Cooperative launches and the grid barrier (native/emulator/probes.h).
    cooperative(): NativeEmulatorReport
    // Planted kernels and host calls of known cost (native/emulator/probes.h, "counting").
    costKernel(which: 'copy' | 'strided' | 'readTwice' | 'copy4' | 'sharedOnly' | 'serialSum', input: Float32Array | number[]): number[]
    costHostCalls(bytes: number): void
  }
  /** The CUDA caching allocator's private pools (native/cuda/caching_allocator.h), on a CUDA device's handle. */
  privatePool: {
    /** Makes a new pool the JS thread's allocation pool (until end) and returns a holder of it. */
    begin(device: NativeDeviceHandle): NativePrivatePool
    end(device: NativeDeviceHandle): void
    /** Lets go of the holder's pool: its memory goes once the buffers allocated from it have gone too. */
    release(pool: NativePrivatePool): void
    reservedBytes(pool: NativePrivatePool): number
    /** Bytes of freed blocks the general cache keeps for reuse. */
    cachedBytes(device: NativeDeviceHandle): number
    /** Allocations inside a relaxed capture, from a private pool or not; with it, the graph's output values. */
    capture(device: NativeDeviceHandle, withPool: boolean): { outcome: string; values: number[] }
  }
  /** Counting what a GPU would pay (native/emulator/README.md). */
  cost: {
    /** False in the AddressSanitizer build, whose kernels cannot carry the counting instrumentation. */
    available: boolean
    /** Waits for the work already enqueued (uncounted), clears the counts and starts counting. */
    start(): void
    /** Waits for every stream's work (counted; the wait itself is not), stops counting and returns the counts. */
    stop(): NativeEmulatorCost
  }
}

/** Global accesses of one direction (native/emulator/include/bssn_emulator.h, BssnEmuAccessCost). */
export interface NativeEmulatorAccessCost {
  /** The lanes of a warp at the same load or store: one access. */
  warpAccesses: number
  /** 32-byte sectors each warp-wide access touches, summed (L2 traffic). */
  sectors: number
  /** Sectors touched at least once by a launch, summed over launches (DRAM traffic if re-reads hit L2). */
  distinctSectors: number
  /** Bytes the lanes asked for: sectors * 128 / bytes is 4 for coalesced fp32 or float4 accesses, 32 for scattered fp32. */
  bytes: number
}

/** One counted kernel run. */
export interface NativeEmulatorLaunchCost {
  kernel: string
  /** The graph replay that ran it (1, 2, ... since start()), 0 for a plain launch. */
  replay: number
  grid: number[]
  block: number[]
  blocks: number
  loads: NativeEmulatorAccessCost
  stores: NativeEmulatorAccessCost
  /** The most global loads and stores made by one thread of the launch. */
  maxThreadAccesses: number
}

/** What counting gathered between start() and stop() (BssnEmuCost). */
export interface NativeEmulatorCost {
  /** Kernels run, graph nodes included. */
  launches: number
  graphLaunches: number
  graphNodes: number
  blocks: number
  loads: NativeEmulatorAccessCost
  stores: NativeEmulatorAccessCost
  maxThreadAccesses: number
  /** Host waits on the device: stream, device and event synchronize, blocking copies, cudaFree / cudaFreeHost. */
  synchronizations: number
  deviceAllocations: number
  pinnedAllocations: number
  bytesToDevice: number
  bytesToHost: number
  bytesDeviceToDevice: number
  /** Each launch in the order they ended (the first 65536). */
  kernels: NativeEmulatorLaunchCost[]
}

/** What an emulator graph probe saw: each call's status (its CUDA error name) or message, and the values it read. */
export interface NativeEmulatorReport {
  statuses: Record<string, string>
  values: Record<string, number[]>
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
  /** y = f(x + bias) along channelAxis, f one of Relu, LeakyRelu (param: slope), Tanh, Sigmoid. */
  biasActivation(op: UnaryOpCode, param: number, x: H, bias: H, y: H, channelAxis: number): void
  /** dx = dy * f'(.) from y (a leaky relu's slope >= 0), db (+)= its sum per channel; dx or db null: not computed. */
  biasActivationBackward(op: UnaryOpCode, param: number, y: H, dy: H, dx: H | null, db: H | null, accumulate: boolean, channelAxis: number): void
  sum(x: H, out: H, scale: number): void
  broadcast(scalar: H, out: H, scale: number): void
  hinge(x: H, out: H, split: number, scaleReal: number, scaleFake: number): void
  copyRange(dst: H, dstOffset: number, src: H, srcOffset: number, count: number): void
  randnFromTable(out: H, table: H, index: number, std: number): void
  hingeBackward(x: H, g: H, dx: H, split: number, scaleReal: number, scaleFake: number): void
  gemm(a: H, b: H, c: H, transA: boolean, transB: boolean, alpha: number, beta: number): void
  /** Adam on every listed tensor in one call; `step` is the device step count (one int64 in a 2-element tensor), which the call increments and reads. */
  adam(params: H[], grads: H[], ms: H[], vs: H[], step: H, options: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }): void
  /** Convolution input -> output with `weight` [cOut, cIn, kh, kw]; each call overwrites its third tensor role:
   * conv2d writes output, conv2dBackwardData writes input, conv2dBackwardFilter writes weight. */
  conv2d(input: H, weight: H, output: H, options: ConvGeometry): void
  conv2dBackwardData(input: H, weight: H, output: H, options: ConvGeometry): void
  conv2dBackwardFilter(input: H, weight: H, output: H, options: ConvGeometry): void
  batchNorm(x: H, y: H, gamma: H, beta: H, runningMean: H, runningVar: H, saveMean: H | null, saveInvStd: H | null,
    options: { training: boolean; momentum: number; eps: number }): void
  batchNormBackward(x: H, dy: H, gamma: H, saveMean: H, saveInvStd: H, dx: H, dgamma: H, dbeta: H): void
  /** SGD on every listed tensor in one call; momentum buffers (null when momentum is 0) start at zero. */
  sgd(params: H[], grads: H[], momentumBuffers: H[] | null, options: { lr: number; momentum: number; weightDecay: number }): void
}

export interface NativeLibraryStatus {
  loaded: boolean
  version?: string
  error?: string
}

/** How the addon was built: compile-time facts (native/napi/addon.cpp, from CMakeLists.txt). */
export interface NativeBuildInfo {
  /** 'cuda': the CUDA backend is in; 'emulated': the test build on the emulated device; 'none': CPU only. */
  cuda: 'cuda' | 'emulated' | 'none'
  /** CMAKE_CUDA_ARCHITECTURES, e.g. ['80-real', ..., '90-virtual']; empty without CUDA. */
  cudaArchitectures: string[]
  cudaToolkit: string
  /** CUDART_VERSION of the runtime linked in (1000 * major + 10 * minor); 0 without CUDA. */
  cudaRuntimeVersion: number
  compiler: string
  buildType: string
  /** Built by `npm run prebuild` (static libstdc++, old glibc symbol versions). */
  portable: boolean
  /** The static OpenBLAS archive linked in (e.g. 'libopenblasp-r0.3.21.a'); '' when none is. */
  openblas: string
  napiVersion: number
}

export interface NativeHostGpu {
  index: number
  name: string
  computeCapability: string
  totalMemoryBytes: number
  multiprocessors: number
  /** Set when bssn's kernels cannot run on this GPU: the CUDA runtime's reason. */
  kernelError?: string
}

/** The host as the CUDA runtime sees it (for `bssn doctor`). */
export interface NativeCudaHost extends NativeCudaStatus {
  /** The CUDA version the driver supports (1000 * major + 10 * minor); 0 when no driver is installed. */
  driverVersion: number
  runtimeVersion: number
  gpus: NativeHostGpu[]
}

/** An NCCL communicator (opaque). */
export type NativeNcclComm = { readonly __ncclComm: unique symbol }

/**
 * NCCL on tensors, loaded at first use (libnccl.so.2; the emulated NCCL in the emulated build). Collectives are
 * in place and enqueued on the device's stream; wait() is where a failure shows (ERR_BSSN_COLLECTIVE_FAILED, the
 * communicator then aborted), as is a collective not done within its timeout.
 */
export interface NativeNccl {
  /** NCCL's version code (loading NCCL: a missing library throws ERR_BSSN_LIBRARY_MISSING). */
  version(): number
  /** The 128-byte ncclUniqueId every rank passes to init (what the rendezvous hands out). */
  uniqueId(): Buffer
  /** ncclCommInitRank: blocks until all `nranks` ranks have joined. */
  init(device: NativeDeviceHandle, id: Buffer, nranks: number, rank: number): NativeNcclComm
  /**
   * An array goes as one NCCL group (ncclGroupStart/End). `overlapped`: on the communicator's own stream, after the
   * device stream's work so far (a gradient bucket), while the device's stream goes on; join() orders it back.
   */
  allReduce(comm: NativeNcclComm, tensors: NativeTensorHandle | NativeTensorHandle[], op: 'sum' | 'avg', overlapped?: boolean): void
  /** The device's stream waits, on the device, for the overlapped all-reduces enqueued so far. */
  join(comm: NativeNcclComm): void
  /**
   * How many of the collectives enqueued so far completed since the last poll (counted in enqueue order), without
   * waiting; throws (and aborts) on a failed one.
   */
  poll(comm: NativeNcclComm): number
  broadcast(comm: NativeNcclComm, tensor: NativeTensorHandle, root: number): void
  /** Blocks until the collectives so far completed (fixtures only: it holds the thread); aborts on failure or timeout. */
  wait(comm: NativeNcclComm, timeoutMs: number): void
  abort(comm: NativeNcclComm): void
  /** Emulated build only: bytes this process's collectives all-reduced and broadcast so far. */
  emulatedBytes?(): { allReduced: number; broadcast: number }
  /** Emulated build only: a 1-rank all-reduce captured into a graph and replayed; the bytes it moved when. */
  captureProbe?(device: NativeDeviceHandle, elements: number, replays: number): { atCapture: number; perReplay: number[] }
}

export interface NativeBinding {
  builtWithCuda: boolean
  /** false: the CPU backend uses its reference loops instead of the BLAS (for tests); returns whether BLAS is in use. */
  setCpuBlas(enabled: boolean): boolean
  /** Process exit: streams waiting for another process's shared-tensor publication stop waiting. */
  cancelShareWaits(): void
  /** Only in the emulated test build (BSSN_CUDA=EMULATED): see test/emulated/. */
  emulator?: NativeEmulator
  /** CUDA builds: NCCL's collectives on tensors (native/napi/nccl.cpp), the building block of initDistributed(). */
  nccl?: NativeNccl
  libraries(): { cublas: NativeLibraryStatus; cudnn: NativeLibraryStatus; nccl: NativeLibraryStatus }
  buildInfo(): NativeBuildInfo
  cudaHost(): NativeCudaHost
  cpu(): NativeDeviceHandle
  cuda(index: number): NativeDeviceHandle
  cudaStatus(): NativeCudaStatus
  ops: NativeOps
  NormalizerHandle: new (weights: readonly NativeTensorHandle[], options: NativeNormalizerOptions) => NativeNormalizerHandle
}

/** The package root: src/ and dist/ both sit one level below it. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** Which addon file was loaded: 'prebuilt' (prebuilds/), 'built' (built here, build/), 'explicit' (BSSN_ADDON). */
export interface LoadedAddon {
  file: string
  kind: 'prebuilt' | 'built' | 'explicit'
  /** Files tried before it that did not load, and why. */
  skipped: { file: string; kind: 'prebuilt' | 'built'; reason: string }[]
}

let binding: NativeBinding | undefined
let loaded: LoadedAddon | undefined

/** Loads the addon once; a failure explains what was tried and how to fix it. */
export function native(): NativeBinding {
  if (!binding) {
    binding = load()
    // process.exit() joins Node's thread pool, where a read may wait for a stream that waits for a slow exporter
    // in another process: the waits end first. (Only the main thread's exit ends the process.)
    const loaded = binding
    if (isMainThread) process.once('exit', () => loaded.cancelShareWaits?.())
  }
  return binding
}

/** The addon file in use (loading it if needed): BSSN_ADDON's when set, else the first that loads (see loadedAddon). */
export function addonPath(): string {
  return loadedAddon().file
}

/** Which addon file was loaded and where it came from (loading it if needed). */
export function loadedAddon(): LoadedAddon {
  native()
  return loaded!
}

interface AddonLoader {
  loadAddon(root: string, requireFn: (file: string) => unknown): LoadedAddon & { binding: unknown }
}

function load(): NativeBinding {
  const require = createRequire(import.meta.url)
  const explicit = process.env.BSSN_ADDON
  if (explicit) {
    const file = path.resolve(explicit)
    try {
      const result = require(file) as NativeBinding
      loaded = { file, kind: 'explicit', skipped: [] }
      return result
    } catch (error) {
      throw new Error(`bssn: could not load the addon named by BSSN_ADDON (${explicit}): ${(error as Error).message}`, { cause: error })
    }
  }
  // build/ (built here), then prebuilds/<platform>-<arch>/ by node-gyp-build's tag rules; shared with the install
  // script, whose source build is the fallback. Its error gathers every file tried and why it failed.
  const loader = require(path.join(packageRoot, 'scripts', 'load-addon.cjs')) as AddonLoader
  const found = loader.loadAddon(packageRoot, require)
  loaded = { file: found.file, kind: found.kind, skipped: found.skipped }
  return found.binding as NativeBinding
}
