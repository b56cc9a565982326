// Work recorded once into a CUDA graph and replayed, as torch.cuda.CUDAGraph: a training step of a few hundred
// small kernels costs one launch and no host round trip. The captured function runs once, during the capture, with
// its ops recorded instead of run; every replay runs them again on the same memory, so what changes between
// replays must be written into tensors made before the capture (static inputs), and the results are read from the
// tensors it returned (static outputs), overwritten by each replay.
import { Device } from './device.js'
import { bssnError, typeError } from './errors.js'
import { checkFunction, describe } from './validate.js'

const released = new FinalizationRegistry<{ device: Device; id: number }>(({ device, id }) => {
  try {
    device.handle.releaseCapture(id)
  } catch {
    // a finalizer has nobody to report to; the device's end frees it in any case
  }
})

export class CapturedGraph {
  readonly device: Device
  #id: number | undefined

  private constructor(device: Device, id: number) {
    this.device = device
    this.#id = id
    released.register(this, { device, id }, this)
  }

  /**
   * Records `fn`'s device work on `device` (CUDA) into a graph: returns the graph and what fn returned. Nothing runs
   * until replay(). Inside fn, a host read (toArray), a synchronization or a tensor made from host data throws
   * ERR_BSSN_CAPTURE, and so does the capture itself when an op could not be recorded.
   */
  static capture<T>(device: Device, fn: () => T): { graph: CapturedGraph; result: T } {
    if (!(device instanceof Device)) throw typeError(`expected a Device, got ${describe(device)}`)
    checkFunction(fn, 'the captured function')
    device.handle.beginCapture()
    let result: T
    try {
      result = fn()
    } catch (error) {
      try {
        device.handle.releaseCapture(device.handle.endCapture())
      } catch {
        // the capture was already broken by what fn threw
      }
      throw error
    }
    if (result instanceof Promise) {
      device.handle.releaseCapture(device.handle.endCapture())
      throw typeError('CapturedGraph.capture expects a synchronous function')
    }
    return { graph: new CapturedGraph(device, device.handle.endCapture()), result }
  }

  /** Enqueues the recorded work again (one graph launch; returns at once). */
  replay(): void {
    if (this.#id === undefined) throw bssnError('this captured graph was disposed', 'ERR_BSSN_DISPOSED')
    this.device.handle.replay(this.#id)
  }

  get disposed(): boolean {
    return this.#id === undefined
  }

  /** Frees the graph (its memory once no tensor made during the capture is left). */
  dispose(): void {
    if (this.#id === undefined) return
    released.unregister(this)
    this.device.handle.releaseCapture(this.#id)
    this.#id = undefined
  }
}
