// Sequential: modules applied in order.
import type { Tensor } from '../tensor.js'
import { Module } from './module.js'
import { typeError } from '../errors.js'

export class Sequential extends Module {
  readonly layers: readonly Module[]

  constructor(...layers: Module[]) {
    super()
    this.layers = layers.map((m) => {
      if (!(m instanceof Module)) throw typeError('Sequential expects modules')
      return this.registerModule(m)
    })
  }

  forward(x: Tensor): Tensor {
    return this.layers.reduce((h, layer) => layer.forward(h), x)
  }
}
