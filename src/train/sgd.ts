// SGD with optional momentum and L2 weight decay (PyTorch's semantics), one fused native update per parameter.
import { keep } from '../autograd/scope.js'
import { native } from '../native.js'
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

  step(): void {
    for (const p of this.params) {
      if (!p.grad) continue
      let buffer = this.#buffers.get(p)
      const firstStep = this.momentum > 0 && !buffer
      if (this.momentum > 0 && !buffer) {
        buffer = keep(p.device.empty(p.shape))
        this.#buffers.set(p, buffer)
      }
      native().ops.sgd(p.handle, p.grad.handle, buffer?.handle ?? null, {
        lr: this.lr,
        momentum: this.momentum,
        weightDecay: this.weightDecay,
        firstStep,
      })
    }
  }

  dispose(): void {
    for (const b of this.#buffers.values()) b.dispose()
    this.#buffers.clear()
  }
}
