// Tensor: a shape and dtype over device memory that JS never sees directly (an opaque native handle).
import { track } from './autograd/scope.js'
import { record, runBackward, type AnyGradNode } from './autograd/tape.js'
import { Device } from './device.js'
import { bssnError, rangeError, typeError } from './errors.js'
import type { NativeTensorHandle } from './native.js'
import { checkDescriptor, type SharedTensorDescriptor } from './share.js'
import { checkShape, describe, product } from './validate.js'

export type DType = 'float32'

const notCloneable = Symbol(
  'a bssn Tensor cannot be sent with postMessage or structuredClone: send await tensor.toArray() and tensor.shape, and make a tensor of them on the other side',
)

// Frees tensors JS forgot to dispose. The handle (not the Tensor) is held, so the Tensor itself can be collected.
const forgotten = new FinalizationRegistry<NativeTensorHandle>((handle) => {
  try {
    if (!handle.disposed()) handle.dispose()
  } catch {
    // a finalizer has nobody to report to; the native destructor frees it in any case
  }
})

let nextId = 1

export class Tensor {
  readonly shape: readonly number[]
  readonly dtype: DType = 'float32'
  readonly device: Device
  /** Number of elements. */
  readonly size: number
  /** @internal A process-unique id, for caches keyed by tensor identity. */
  readonly id = nextId++

  /** Whether gradients flow to this tensor: set it on parameters; ops set it on their outputs. */
  requiresGrad = false
  /** The accumulated gradient of a leaf tensor after backward() (zero it between steps with an optimizer). */
  grad: Tensor | undefined
  /** @internal The op that produced this tensor, for backward(). */
  gradFn: AnyGradNode | undefined
  /** @internal Which of gradFn's outputs this tensor is (0 unless the op has several). */
  gradSlot = 0

  readonly #handle: NativeTensorHandle
  readonly #owner: string | undefined
  #onDispose: Array<() => void> = []

  /** @internal Tensors are made by a Device (or a BSSN, for its outputs). */
  constructor(handle: NativeTensorHandle, device: Device, owner?: string) {
    // postMessage and structuredClone would deliver a copy without the native handle (a dead tensor): a Symbol
    // value, which cannot be cloned, makes them throw a DataCloneError that says what to do instead.
    Object.defineProperty(this, 'cloneGuard', { value: notCloneable, enumerable: true })
    this.#handle = handle
    this.device = device
    this.#owner = owner
    this.shape = Object.freeze(handle.shape())
    this.size = this.shape.reduce((a, b) => a * b, 1)
    if (!owner) {
      forgotten.register(this, handle, this)
      track(this)
    }
  }

  /** @internal The native handle, for ops. */
  get handle(): NativeTensorHandle {
    return this.#handle
  }

  get disposed(): boolean {
    return this.#handle.disposed()
  }

  /** @internal Owned by another object (a BSSN's outputs): freed with it, never by tidy(). */
  get owned(): boolean {
    return this.#owner !== undefined
  }

  /**
   * Back-propagates from this tensor (a one-element loss, or any tensor with `gradient` of its shape): every
   * leaf that requires gradients gets .grad (accumulated), and the graph is released.
   */
  backward(gradient?: Tensor): void {
    this.#checkAlive()
    if (gradient !== undefined) checkTensor(gradient, 'the gradient')
    runBackward(this, gradient)
  }

  /** The same memory seen with another shape of as many elements (a view: no copy). */
  reshape(shape: readonly number[]): Tensor {
    this.#checkAlive()
    const dims = checkShape(shape)
    if (product(dims) !== this.size)
      throw rangeError(`cannot reshape [${this.shape.join(', ')}] (${this.size} elements) to [${dims.join(', ')}] (${product(dims)} elements)`)
    const view = new Tensor(this.#handle.reshape(dims), this.device)
    return record(view, [this], 'reshape', (g) => [new Tensor(g.handle.reshape(this.shape), this.device)])
  }

  /**
   * Copies the data to the host. Resolves once every op enqueued before it has run; never blocks the event loop.
   * Rejects (never throws) with the coded error a synchronous call would throw: ERR_BSSN_DISPOSED,
   * ERR_BSSN_SHARE_GONE, ERR_BSSN_DEVICE_FAULT, ERR_BSSN_OUT_OF_MEMORY...
   */
  async toArray(): Promise<Float32Array> {
    this.#checkAlive()
    return this.#handle.toArray()
  }

  /** A copy in new memory on the same device (enqueued like any op). */
  clone(): Tensor {
    this.#checkAlive()
    return new Tensor(this.#handle.clone(), this.device)
  }

  /** Overwrites this tensor with `source`'s values (same device and shape), in stream order. */
  copyFrom(source: Tensor): this {
    this.#checkAlive()
    checkTensor(source, 'source')
    this.#handle.copyFrom(source.handle)
    return this
  }

  /** Overwrites this tensor with host values (one copy to the device, in stream order; no allocation). */
  write(data: Float32Array): this {
    this.#checkAlive()
    if (!(data instanceof Float32Array)) throw typeError(`expected data to be a Float32Array, got ${describe(data)}`)
    if (data.length !== this.size) throw rangeError(`expected ${this.size} values for shape [${this.shape.join(', ')}], got ${data.length}`)
    this.#handle.write(data)
    return this
  }

  /**
   * Shares this tensor with other worker threads and processes on this machine: returns a descriptor (a plain
   * object for postMessage, JSON or a socket) that `Tensor.open()` turns into a Tensor over the same memory.
   *
   * - Cost: the first call moves the tensor to shareable memory (one copy, in stream order: a memfd on the CPU, its
   *   own cudaMalloc allocation on CUDA, since pool memory cannot be exported); later calls copy nothing.
   * - Ordering: each call is a publication. An opened tensor's ops see every write enqueued on this tensor before
   *   the owner's latest share() call that returned before the op was enqueued; call share() again after writes a
   *   reader must see (and tell the reader, e.g. with a message). Writes racing with a reader's ops are a data race,
   *   as with torch.multiprocessing.
   * - Lifetime: opened tensors stay usable while this tensor lives. Once it is disposed (or its thread or process
   *   ends), their next use throws ERR_BSSN_SHARE_GONE; the memory itself is freed once, when its last holder lets go.
   */
  share(): SharedTensorDescriptor {
    this.#checkAlive()
    const { token, publication } = this.#handle.share()
    return {
      type: 'bssn.SharedTensor',
      version: 1,
      device: this.device.kind,
      deviceIndex: this.device.index,
      shape: [...this.shape],
      dtype: this.dtype,
      publication,
      handle: token,
    }
  }

  /**
   * A Tensor over the memory another thread or process shared with `tensor.share()`, on the same device (or on
   * `device`, which must be that device). Its first use waits for the writes the owner published with that share().
   * A stale (owner gone) or forged descriptor is refused with an error.
   */
  static open(descriptor: SharedTensorDescriptor, device?: Device): Tensor {
    const d = checkDescriptor(descriptor)
    const target = device ?? (d.device === 'cpu' ? Device.cpu() : Device.cuda(d.deviceIndex))
    if (!(target instanceof Device)) throw typeError('expected device to be a Device')
    return new Tensor(target.handle.open(d.handle, d.shape, d.publication), target)
  }

  /** Whether this tensor was made by Tensor.open() (it names memory another thread or process shared). */
  get opened(): boolean {
    return this.#handle.opened()
  }

  /**
   * Frees the memory at once (ops already enqueued still see it). Never throws: disposing twice is allowed, and a
   * tensor owned by a BSSN (its forward() outputs) is left to it, freed when the BSSN is disposed.
   */
  dispose(): void {
    if (this.disposed) return
    if (!this.#handle.dispose()) return // owned by a BSSN
    forgotten.unregister(this)
    const listeners = this.#onDispose
    this.#onDispose = []
    for (const listener of listeners) listener()
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  /** @internal Runs `listener` when this tensor is disposed (bssnNormalize releases its state then). */
  onDispose(listener: () => void): void {
    this.#onDispose.push(listener)
  }

  toString(): string {
    return `Tensor(${this.dtype} [${this.shape.join(', ')}] on ${this.device.name}${this.disposed ? ', disposed' : ''})`
  }

  #checkAlive(): void {
    if (this.disposed) throw bssnError(`${this.#owner ? `${this.#owner} output` : 'tensor'} [${this.shape.join(', ')}] was disposed`, 'ERR_BSSN_DISPOSED')
  }
}

/** Checks that `value` (the argument called `what`) is a Tensor: a TypeError saying what came otherwise. */
export function checkTensor(value: unknown, what: string): asserts value is Tensor {
  if (!(value instanceof Tensor)) throw typeError(`expected ${what} to be a Tensor, got ${describe(value)}`)
}
