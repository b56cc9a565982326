// Shared tensors: what tensor.share() returns and Device.open() / Tensor.open() take.
import { typeError } from './errors.js'
import { checkInteger, checkShape, describe } from './validate.js'

/**
 * A shared tensor's descriptor, from `tensor.share()`: a plain object that survives `postMessage`,
 * `JSON.stringify` and a socket. `Tensor.open(descriptor)` in another worker thread or process on the same
 * machine gives a Tensor over the same memory (no copy). It names memory, not data: it is valid while the
 * sharing tensor lives, and refused once that tensor is disposed or its process has exited.
 */
export interface SharedTensorDescriptor {
  readonly type: 'bssn.SharedTensor'
  readonly version: 1
  readonly device: 'cpu' | 'cuda'
  readonly deviceIndex: number
  readonly shape: readonly number[]
  readonly dtype: 'float32'
  /** The share() call this descriptor came from: opening waits for the writes enqueued before it. */
  readonly publication: number
  /** Opaque: how to reach the memory, and the secret that proves the descriptor came from share(). */
  readonly handle: string
}

/** Checks that `value` looks like a descriptor (the native side checks the handle against the memory). */
export function checkDescriptor(value: unknown): SharedTensorDescriptor {
  const what = 'a shared tensor descriptor from tensor.share()'
  if (typeof value !== 'object' || value === null) throw typeError(`expected ${what}, got ${describe(value)}`)
  const d = value as Record<string, unknown>
  if (d.type !== 'bssn.SharedTensor') throw typeError(`expected ${what}, got an object without type 'bssn.SharedTensor'`)
  if (d.version !== 1) throw typeError(`expected a version 1 shared tensor descriptor, got version ${describe(d.version)} (made by another bssn version?)`)
  if (d.device !== 'cpu' && d.device !== 'cuda') throw typeError(`expected descriptor.device to be 'cpu' or 'cuda', got ${describe(d.device)}`)
  const deviceIndex = checkInteger(d.deviceIndex, 'descriptor.deviceIndex', 0, 1023)
  const shape = checkShape(d.shape, 'descriptor.shape')
  if (d.dtype !== 'float32') throw typeError(`expected descriptor.dtype to be 'float32', got ${describe(d.dtype)}`)
  const publication = checkInteger(d.publication, 'descriptor.publication', 0, 2 ** 32 - 1)
  if (typeof d.handle !== 'string') throw typeError(`expected descriptor.handle to be a string, got ${describe(d.handle)}`)
  return {
    type: 'bssn.SharedTensor',
    version: 1,
    device: d.device,
    deviceIndex,
    shape,
    dtype: 'float32',
    publication,
    handle: d.handle,
  }
}
