// BatchNorm2d: per-channel normalization with learned scale and shift and running statistics.
import { keep } from '../autograd/scope.js'
import { Device } from '../device.js'
import { checkTensor, type Tensor } from '../tensor.js'
import { checkInteger, checkNumber, checkOptions } from '../validate.js'
import { batchNorm } from './functional.js'
import { Module } from './module.js'
import { rangeError } from '../errors.js'

export interface BatchNormOptions {
  eps?: number
  momentum?: number
  device?: Device
}

export class BatchNorm2d extends Module {
  readonly numFeatures: number
  readonly eps: number
  readonly momentum: number
  readonly weight: Tensor
  readonly bias: Tensor
  readonly runningMean: Tensor
  readonly runningVar: Tensor

  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    super()
    // The bound keeps the Float32Array below within what V8 allocates (its RangeError has no code).
    this.numFeatures = checkInteger(numFeatures, 'numFeatures', 1, 2 ** 24)
    options = checkOptions(options)
    this.eps = checkNumber(options.eps ?? 1e-5, 'eps')
    this.momentum = checkNumber(options.momentum ?? 0.1, 'momentum')
    const device = options.device ?? Device.cpu()
    this.weight = this.registerParameter(device.tensor(new Float32Array(numFeatures).fill(1), [numFeatures]), 'weight')
    this.bias = this.registerParameter(device.zeros([numFeatures]), 'bias')
    this.runningMean = keep(device.zeros([numFeatures]))
    this.runningVar = keep(device.tensor(new Float32Array(numFeatures).fill(1), [numFeatures]))
  }

  forward(x: Tensor): Tensor {
    checkTensor(x, 'x')
    if (x.shape.length !== 4 || x.shape[1] !== this.numFeatures)
      throw rangeError(`BatchNorm2d(${this.numFeatures}) expects input [N, ${this.numFeatures}, H, W], got [${x.shape.join(', ')}]`)
    return batchNorm(x, this.weight, this.bias, this, { training: this.training, momentum: this.momentum, eps: this.eps })
  }

  override dispose(): void {
    super.dispose()
    this.runningMean.dispose()
    this.runningVar.dispose()
  }
}
