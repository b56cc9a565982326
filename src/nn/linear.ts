// Linear: y = x W^T + b, with W [out, in] as PyTorch lays it out.
import { Device } from '../device.js'
import { checkTensor, type Tensor } from '../tensor.js'
import { checkInteger, checkOptions } from '../validate.js'
import { linear, type ActivationOptions } from './functional.js'
import { initTensor, type InitName } from './init.js'
import { Module, type NormalizableLayer } from './module.js'
import { rangeError } from '../errors.js'

export interface LinearOptions {
  bias?: boolean
  device?: Device
  seed?: number
  /** Weight initializer (default PyTorch's: U(-1/sqrt(in), 1/sqrt(in))); the bias always uses PyTorch's. */
  init?: InitName
}

export class Linear extends Module implements NormalizableLayer {
  readonly inFeatures: number
  readonly outFeatures: number
  readonly weight: Tensor
  readonly bias: Tensor | undefined
  readonly weightDim = 0
  /** @internal */
  effectiveWeight: Tensor

  constructor(inFeatures: number, outFeatures: number, options: LinearOptions = {}) {
    super()
    this.inFeatures = checkInteger(inFeatures, 'inFeatures', 1)
    this.outFeatures = checkInteger(outFeatures, 'outFeatures', 1)
    options = checkOptions(options)
    const device = options.device ?? Device.cpu()
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
    this.weight = this.registerParameter(initTensor(device, [outFeatures, inFeatures], options.init ?? 'pytorchDefault', { seed }), 'weight')
    const bound = 1 / Math.sqrt(inFeatures)
    this.bias = options.bias === false ? undefined : this.registerParameter(device.rand([outFeatures], { seed: seed + 1, low: -bound, high: bound }), 'bias')
    this.effectiveWeight = this.weight
  }

  forward(x: Tensor): Tensor {
    return this.forwardActivated(x)
  }

  /** @internal forward() then `activation`, fused with the bias (Sequential's peephole). */
  forwardActivated(x: Tensor, activation?: ActivationOptions): Tensor {
    checkTensor(x, 'x')
    if (x.shape.length !== 2 || x.shape[1] !== this.inFeatures)
      throw rangeError(`Linear(${this.inFeatures}, ${this.outFeatures}) expects input [N, ${this.inFeatures}], got [${x.shape.join(', ')}]`)
    return linear(x, this.effectiveWeight, this.bias, activation)
  }
}
