// Conv2d and ConvTranspose2d with PyTorch's weight layouts ([out, in, kh, kw] and [in, out, kh, kw]).
import { Device } from '../device.js'
import type { Tensor } from '../tensor.js'
import { checkInteger, checkOptions, describe } from '../validate.js'
import { typeError } from '../errors.js'
import { conv2d, convTranspose2d, type ActivationOptions, type Conv2dOptions } from './functional.js'
import { initTensor, type InitName } from './init.js'
import { Module, type NormalizableLayer } from './module.js'

export interface ConvOptions extends Conv2dOptions {
  bias?: boolean
  device?: Device
  seed?: number
  /** Weight initializer (default PyTorch's: U(-1/sqrt(fan_in), 1/sqrt(fan_in))). */
  init?: InitName
}

function kernel(size: number | readonly [number, number]): [number, number] {
  if (typeof size !== 'number' && !(Array.isArray(size) && size.length === 2))
    throw typeError(`expected kernelSize to be a number or a pair of numbers, got ${describe(size)}`)
  const [h, w] = typeof size === 'number' ? [size, size] : size
  return [checkInteger(h, 'kernel size', 1), checkInteger(w, 'kernel size', 1)]
}

abstract class ConvBase extends Module implements NormalizableLayer {
  readonly weight: Tensor
  readonly bias: Tensor | undefined
  abstract readonly weightDim: number
  /** @internal */
  effectiveWeight: Tensor
  readonly options: Conv2dOptions

  protected constructor(weightShape: number[], fanIn: number, biasSize: number, options: ConvOptions) {
    super()
    options = checkOptions(options)
    const device = options.device ?? Device.cpu()
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
    this.weight = this.registerParameter(initTensor(device, weightShape, options.init ?? 'pytorchDefault', { seed }), 'weight')
    const bound = 1 / Math.sqrt(fanIn)
    this.bias = options.bias === false ? undefined : this.registerParameter(device.rand([biasSize], { seed: seed + 1, low: -bound, high: bound }), 'bias')
    this.effectiveWeight = this.weight
    this.options = { stride: options.stride, padding: options.padding }
  }
}

export class Conv2d extends ConvBase {
  readonly weightDim = 0

  constructor(inChannels: number, outChannels: number, kernelSize: number | readonly [number, number], options: ConvOptions = {}) {
    const [kh, kw] = kernel(kernelSize)
    checkInteger(inChannels, 'inChannels', 1)
    checkInteger(outChannels, 'outChannels', 1)
    super([outChannels, inChannels, kh, kw], inChannels * kh * kw, outChannels, options)
  }

  forward(x: Tensor): Tensor {
    return this.forwardActivated(x)
  }

  /** @internal forward() then `activation`, fused with the bias (Sequential's peephole). */
  forwardActivated(x: Tensor, activation?: ActivationOptions): Tensor {
    return conv2d(x, this.effectiveWeight, this.bias, { ...this.options, ...activation })
  }
}

export class ConvTranspose2d extends ConvBase {
  readonly weightDim = 1
  readonly outputPadding: number | readonly [number, number] | undefined

  constructor(
    inChannels: number,
    outChannels: number,
    kernelSize: number | readonly [number, number],
    options: ConvOptions & { outputPadding?: number | readonly [number, number] } = {},
  ) {
    const [kh, kw] = kernel(kernelSize)
    checkInteger(inChannels, 'inChannels', 1)
    checkInteger(outChannels, 'outChannels', 1)
    // PyTorch computes fan_in from weight.size(1) * kh * kw, i.e. the output channels here.
    super([inChannels, outChannels, kh, kw], outChannels * kh * kw, outChannels, options)
    this.outputPadding = options.outputPadding
  }

  forward(x: Tensor): Tensor {
    return this.forwardActivated(x)
  }

  /** @internal forward() then `activation`, fused with the bias (Sequential's peephole). */
  forwardActivated(x: Tensor, activation?: ActivationOptions): Tensor {
    return convTranspose2d(x, this.effectiveWeight, this.bias, { ...this.options, outputPadding: this.outputPadding, ...activation })
  }
}
