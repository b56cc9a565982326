// Shape modules: views, no copies.
import type { Tensor } from '../tensor.js'
import { Module } from './module.js'

/** [N, ...] -> [N, product of the rest]. */
export class Flatten extends Module {
  forward(x: Tensor): Tensor {
    return x.reshape([x.shape[0], x.size / Math.max(x.shape[0], 1)])
  }
}

/** [N, ...] -> [N, ...shape]. */
export class Reshape extends Module {
  constructor(readonly shape: readonly number[]) {
    super()
  }

  forward(x: Tensor): Tensor {
    return x.reshape([x.shape[0], ...this.shape])
  }
}
