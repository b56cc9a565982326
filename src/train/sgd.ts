// SGD with optional momentum and L2 weight decay (PyTorch's semantics): one native call updates every parameter (a
// multi-tensor update, one launch on CUDA). Momentum buffers start at zero, so the first step (buf = d) needs no flag.
import { keep } from '../autograd/scope.js'
import { native, type NativeTensorHandle } from '../native.js'
import type { Tensor } from '../tensor.js'
import { Optimizer } from './optimizer.js'
import { typeError } from '../errors.js'

export interface SgdOptions {
  lr: number
  momentum?: number
  weightDecay?: number
}

export class SGD extends Optimizer {
  readonly lr: number
  readonly momentum: number
  readonly weightDecay: number
  readonly #buffers = new Map<Tensor, Tensor>()

  constructor(params: readonly Tensor[], options: SgdOptions) {
    super(params)
    if (typeof options !== 'object' || options === null) throw typeError('expected SGD options with lr')
    this.lr = Optimizer.rate(options.lr, 'lr')
    this.momentum = Optimizer.rate(options.momentum ?? 0, 'momentum')
    this.weightDecay = Optimizer.rate(options.weightDecay ?? 0, 'weightDecay')
  }

  /** @internal Nothing of a step depends on the host: replayed graphs stay right. */
  override get capturable(): boolean {
    return true
  }

  step(): void {
    const params: NativeTensorHandle[] = [], grads: NativeTensorHandle[] = [], buffers: NativeTensorHandle[] = []
    for (const p of this.params) {
      if (!p.grad) continue
      params.push(p.handle), grads.push(p.grad.handle)
      if (this.momentum === 0) continue
      let buffer = this.#buffers.get(p)
      if (!buffer) {
        buffer = keep(p.device.zeros(p.shape))
        this.#buffers.set(p, buffer)
      }
      buffers.push(buffer.handle)
    }
    if (params.length === 0) return
    native().ops.sgd(params, grads, this.momentum > 0 ? buffers : null, { lr: this.lr, momentum: this.momentum, weightDecay: this.weightDecay })
  }

  dispose(): void {
    for (const b of this.#buffers.values()) b.dispose()
    this.#buffers.clear()
  }
}
