// Tensor: a shape and dtype over device memory that JS never sees directly (an opaque native handle).
import type { Device } from './device.js'
import type { NativeTensorHandle } from './native.js'

export type DType = 'float32'

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

  readonly #handle: NativeTensorHandle
  readonly #owner: string | undefined
  #onDispose: Array<() => void> = []

  /** @internal Tensors are made by a Device (or a BSSN, for its outputs). */
  constructor(handle: NativeTensorHandle, device: Device, owner?: string) {
    this.#handle = handle
    this.device = device
    this.#owner = owner
    this.shape = Object.freeze(handle.shape())
    this.size = this.shape.reduce((a, b) => a * b, 1)
    if (!owner) forgotten.register(this, handle, this)
  }

  /** @internal The native handle, for ops. */
  get handle(): NativeTensorHandle {
    return this.#handle
  }

  get disposed(): boolean {
    return this.#handle.disposed()
  }

  /** Copies the data to the host. Resolves once every op enqueued before it has run; never blocks the event loop. */
  toArray(): Promise<Float32Array> {
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
    if (!(source instanceof Tensor)) throw new TypeError('expected source to be a Tensor')
    this.#handle.copyFrom(source.handle)
    return this
  }

  /** Frees the memory at once (ops already enqueued still see it). Disposing twice is allowed. */
  dispose(): void {
    if (this.disposed) return
    this.#handle.dispose() // throws for a tensor owned by a BSSN
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
    if (this.disposed) throw new Error(`${this.#owner ? `${this.#owner} output` : 'tensor'} [${this.shape.join(', ')}] was disposed`)
  }
}
