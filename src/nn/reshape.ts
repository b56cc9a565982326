// Shape modules: views, no copies.
import { checkTensor, type Tensor } from '../tensor.js'
import { checkShape } from '../validate.js'
import { Module } from './module.js'

/** [N, ...] -> [N, product of the rest]. */
export class Flatten extends Module {
  forward(x: Tensor): Tensor {
    checkTensor(x, 'x')
    return x.reshape([x.shape[0], x.size / Math.max(x.shape[0], 1)])
  }
}

/** [N, ...] -> [N, ...shape]. */
export class Reshape extends Module {
  readonly shape: readonly number[]

  constructor(shape: readonly number[]) {
    super()
    this.shape = checkShape(shape)
  }

  forward(x: Tensor): Tensor {
    checkTensor(x, 'x')
    return x.reshape([x.shape[0], ...this.shape])
  }
}
