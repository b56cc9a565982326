// Devices: where tensors live and ops run. Each device has one stream; ops are enqueued in call order.
import { native, type NativeDeviceHandle } from './native.js'
import type { SharedTensorDescriptor } from './share.js'
import { Tensor } from './tensor.js'
import { checkBoolean, checkInteger, checkNumber, checkOptions, checkShape, describe, product } from './validate.js'
import { typeError, rangeError } from './errors.js'

export type DeviceKind = 'cpu' | 'cuda'

export interface MemoryStats {
  /** Bytes held by live device buffers: tensors, normalizer state, and buffers queued work still reads. */
  allocatedBytes: number
  /**
   * Bytes held from the system: allocatedBytes plus the allocator's cache of freed blocks, kept for reuse
   * (PyTorch's memory_reserved beside memory_allocated). emptyCache() returns the cache.
   */
  reservedBytes: number
  /** High-water mark of allocatedBytes. */
  peakBytes: number
  liveBuffers: number
  /** Tensors created and not yet disposed (or collected). */
  liveTensors: number
}

/**
 * Where TF32 tensor-core math may be used (fp32 inputs rounded to a 10-bit mantissa: faster on Ampere and later,
 * about 1e-3 relative error per product). As PyTorch's `torch.backends.cudnn.allow_tf32` and
 * `torch.backends.cuda.matmul.allow_tf32`, and with their defaults: convolutions on, matrix products off.
 */
export interface Tf32Options {
  /** cuDNN convolutions, forward and backward (default true). */
  conv: boolean
  /** cuBLAS matrix products: Linear layers, matmul (default false). */
  matmul: boolean
}

export interface DeviceInfo {
  kind: DeviceKind
  name: string
  [key: string]: number | string
}

export class Device {
  readonly kind: DeviceKind
  readonly index: number
  /** Human-readable name, e.g. 'CPU' or 'NVIDIA H100 80GB HBM3 (cuda:0)'. */
  readonly name: string
  /** Set by Device.auto() when it fell back to the CPU: why CUDA was not used. */
  readonly fallbackReason: string | undefined
  /** True on the emulated CUDA device of the test build (kernels run on the CPU; its timings mean nothing). */
  readonly emulated: boolean
  /** @internal */
  readonly handle: NativeDeviceHandle

  private constructor(handle: NativeDeviceHandle, fallbackReason?: string) {
    this.handle = handle
    this.kind = handle.kind()
    this.index = handle.index()
    this.name = handle.name()
    this.fallbackReason = fallbackReason
    // A compile-time fact of the addon: no library loading or device query (info() would load cuBLAS and cuDNN).
    this.emulated = this.kind === 'cuda' && native().buildInfo().cuda === 'emulated'
  }

  static cpu(): Device {
    return new Device(native().cpu())
  }

  /** A CUDA device; throws an Error saying why when there is none (no GPU, no driver, or a CPU-only build). */
  static cuda(index = 0): Device {
    checkInteger(index, 'CUDA device index', 0, 1023)
    return new Device(native().cuda(index))
  }

  /** CUDA device 0 when usable, else the CPU with `fallbackReason` set. */
  static auto(): Device {
    const status = native().cudaStatus()
    if (!status.available) return new Device(native().cpu(), status.reason)
    try {
      return Device.cuda(0)
    } catch (error) {
      return new Device(native().cpu(), error instanceof Error ? error.message : String(error))
    }
  }

  /** Whether two Device objects denote the same device. */
  equals(other: Device): boolean {
    return other instanceof Device && other.kind === this.kind && other.index === this.index
  }

  /** A float32 tensor holding `data` (copied). */
  tensor(data: Float32Array | readonly number[], shape: readonly number[]): Tensor {
    const dims = checkShape(shape)
    let values: Float32Array
    if (data instanceof Float32Array) {
      values = data
    } else if (Array.isArray(data)) {
      for (const [i, x] of data.entries())
        if (typeof x !== 'number') throw typeError(`expected data[${i}] to be a number, got ${describe(x)}`)
      values = Float32Array.from(data)
    } else {
      throw typeError(`expected data to be a Float32Array or an array of numbers, got ${describe(data)}`)
    }
    if (values.length !== product(dims))
      throw rangeError(`expected ${product(dims)} values for shape [${dims.join(', ')}], got ${values.length}`)
    return new Tensor(this.handle.fromData(values, dims), this)
  }

  zeros(shape: readonly number[]): Tensor {
    return new Tensor(this.handle.zeros(checkShape(shape)), this)
  }

  /** A tensor with every element `value`, filled on the device (no copy from the host). */
  full(shape: readonly number[], value: number): Tensor {
    return new Tensor(this.handle.zeros(checkShape(shape), checkNumber(value, 'value')), this)
  }

  /** @internal A tensor whose contents are undefined, for outputs an op overwrites entirely. */
  empty(shape: readonly number[]): Tensor {
    return new Tensor(this.handle.empty(checkShape(shape)), this)
  }

  /** Normal values with mean 0 and standard deviation `std` (default 1), deterministic for a seed and identical on every backend. */
  randn(shape: readonly number[], options: { seed?: number; std?: number } = {}): Tensor {
    options = checkOptions(options)
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32)
    checkInteger(seed, 'seed', 0)
    const std = checkNumber(options.std ?? 1, 'std')
    return new Tensor(this.handle.randn(checkShape(shape), seed, std), this)
  }

  /** Uniform values in [low, high) (default [0, 1)), deterministic for a seed and identical on every backend. */
  rand(shape: readonly number[], options: { seed?: number; low?: number; high?: number } = {}): Tensor {
    options = checkOptions(options)
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32)
    checkInteger(seed, 'seed', 0)
    const low = checkNumber(options.low ?? 0, 'low')
    const high = checkNumber(options.high ?? 1, 'high')
    if (!(low <= high)) throw rangeError(`expected low <= high, got ${low} and ${high}`)
    return new Tensor(this.handle.rand(checkShape(shape), seed, low, high), this)
  }

  /** A Tensor on this device over memory another thread or process shared (see Tensor.open()). */
  open(descriptor: SharedTensorDescriptor): Tensor {
    return Tensor.open(descriptor, this)
  }

  /** Resolves when every op enqueued on this device so far has run; never blocks the event loop. */
  async synchronize(): Promise<void> {
    return this.handle.synchronize()
  }

  /**
   * Milliseconds since the device was opened, taken when the stream reaches this point (on CUDA from events,
   * so the difference of two timestamps is device time). For benchmarks.
   */
  async timestamp(): Promise<number> {
    return this.handle.timestamp()
  }

  /**
   * What the device is: on CUDA its compute capability, memory, CUDA runtime and driver versions, and the
   * loaded cuBLAS and cuDNN versions (or, as cublasError / cudnnError, why they could not be loaded).
   */
  info(): DeviceInfo {
    return this.handle.info() as unknown as DeviceInfo
  }

  memoryStats(): MemoryStats {
    return this.handle.memoryStats()
  }

  /**
   * For benchmarks: while on, every normalization kernel launch is timed on the device (CUDA events around each
   * launch: multiplyTransposed, multiply, finish, scale, gradDots, backward; on the CPU each normalization task).
   * Timing adds events between launches: leave it off when measuring whole forwards.
   */
  profileKernels(on: boolean): void {
    if (typeof on !== 'boolean') throw typeError(`expected on to be a boolean, got ${describe(on)}`)
    this.handle.profileKernels(on)
  }

  /** The kernels timed since the last call (see profileKernels), in launch order, once they have run. */
  async kernelTimes(): Promise<Array<{ kernel: string; ms: number }>> {
    return this.handle.kernelTimes()
  }

  /**
   * Whether TF32 tensor-core math is allowed (see Tf32Options); defaults as PyTorch: `{ conv: true, matmul:
   * false }`. Assign a partial object to change either, e.g. `device.tf32 = { conv: false }` for fp32 parity.
   * Takes effect from the next op. The CPU device computes in fp32 and ignores the setting (it is only recorded).
   */
  get tf32(): Readonly<Tf32Options> {
    return Object.freeze(this.handle.tf32()) // a snapshot: `device.tf32.conv = false` would change nothing, so it throws
  }

  set tf32(value: Partial<Tf32Options>) {
    const options = checkOptions(value, 'tf32')
    for (const key of Object.keys(options))
      if (key !== 'conv' && key !== 'matmul') throw typeError(`unknown tf32 option '${key}' (expected conv or matmul)`)
    const current = this.handle.tf32()
    const conv = options.conv === undefined ? current.conv : checkBoolean(options.conv, 'tf32.conv')
    const matmul = options.matmul === undefined ? current.matmul : checkBoolean(options.matmul, 'tf32.matmul')
    this.handle.setTf32(conv, matmul)
  }

  /** Returns the allocator's cached free blocks to the system (the CPU's cache, or the CUDA memory pool's). */
  emptyCache(): void {
    this.handle.emptyCache()
  }

  toString(): string {
    return `Device(${this.name})`
  }
}
