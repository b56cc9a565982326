// Activation modules.
import type { Tensor } from '../tensor.js'
import { leakyRelu, relu, sigmoid, tanh } from './functional.js'
import { Module } from './module.js'

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x)
  }
}

export class LeakyReLU extends Module {
  constructor(readonly negativeSlope = 0.01) {
    super()
  }

  forward(x: Tensor): Tensor {
    return leakyRelu(x, this.negativeSlope)
  }
}

export class Tanh extends Module {
  forward(x: Tensor): Tensor {
    return tanh(x)
  }
}

export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return sigmoid(x)
  }
}
