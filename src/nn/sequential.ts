// Sequential: modules applied in order. A layer with a bias followed directly by an activation module runs as one
// fused bias + activation (one launch forward, one backward): the results are those of the two modules in turn.
import type { Tensor } from '../tensor.js'
import { LeakyReLU, ReLU, Sigmoid, Tanh } from './activations.js'
import { Conv2d, ConvTranspose2d } from './conv.js'
import type { ActivationOptions } from './functional.js'
import { Linear } from './linear.js'
import { Module } from './module.js'
import { typeError } from '../errors.js'

type Fusable = Linear | Conv2d | ConvTranspose2d

// Only the library's own forward() on either side: a subclass that overrides it runs as written.
function fusableLayer(m: Module): m is Fusable {
  if (m instanceof Linear) return m.forward === Linear.prototype.forward && m.bias !== undefined
  if (m instanceof Conv2d) return m.forward === Conv2d.prototype.forward && m.bias !== undefined
  if (m instanceof ConvTranspose2d) return m.forward === ConvTranspose2d.prototype.forward && m.bias !== undefined
  return false
}

function activationOf(m: Module): ActivationOptions | undefined {
  if (m instanceof ReLU && m.forward === ReLU.prototype.forward) return { activation: 'relu' }
  // A negative (or non-finite) slope runs unfused: the fused backward reads the input's sign from the output's.
  if (m instanceof LeakyReLU && m.forward === LeakyReLU.prototype.forward)
    return Number.isFinite(m.negativeSlope) && m.negativeSlope >= 0 ? { activation: 'leakyRelu', slope: m.negativeSlope } : undefined
  if (m instanceof Tanh && m.forward === Tanh.prototype.forward) return { activation: 'tanh' }
  if (m instanceof Sigmoid && m.forward === Sigmoid.prototype.forward) return { activation: 'sigmoid' }
  return undefined
}

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
    let h = x
    for (let i = 0; i < this.layers.length; i++) {
      const layer = this.layers[i]
      const activation = i + 1 < this.layers.length && fusableLayer(layer) ? activationOf(this.layers[i + 1]) : undefined
      if (activation) {
        h = (layer as Fusable).forwardActivated(h, activation)
        i++ // the activation module ran inside the layer's call
      } else {
        h = layer.forward(h)
      }
    }
    return h
  }
}
