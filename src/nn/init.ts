// Weight initializers (seeded, on the weight's device): LeCun, Xavier (Glorot) and Kaiming (He), normal or
// uniform, with fan_in / fan_out computed as PyTorch does (receptive field = product of the trailing axes).
import { Device } from '../device.js'
import type { Tensor } from '../tensor.js'
import { checkOptions, checkShape, describe } from '../validate.js'
import { typeError, rangeError } from '../errors.js'

export type InitName = 'lecunNormal' | 'lecunUniform' | 'xavierNormal' | 'xavierUniform' | 'kaimingNormal' | 'kaimingUniform' | 'pytorchDefault'

export interface InitOptions {
  seed?: number
  /** Gain multiplying the standard deviation (default: sqrt(2) for Kaiming, 1 otherwise). */
  gain?: number
}

export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  checkShape(shape)
  if (shape.length < 2) throw rangeError(`fan_in/fan_out need at least 2 dimensions, got [${shape.join(', ')}]`)
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1)
  return { fanIn: shape[1] * receptive, fanOut: shape[0] * receptive }
}

/** A new tensor of `shape` on `device` initialized by `name`. */
export function initTensor(device: Device, shape: readonly number[], name: InitName, options: InitOptions = {}): Tensor {
  if (!(device instanceof Device)) throw typeError(`expected device to be a Device, got ${describe(device)}`)
  options = checkOptions(options)
  const { fanIn, fanOut } = fans(shape)
  const seed = options.seed
  const std = (gainDefault: number, fan: number) => (options.gain ?? gainDefault) / Math.sqrt(fan)
  switch (name) {
    case 'lecunNormal':
      return device.randn(shape, { seed, std: std(1, fanIn) })
    case 'lecunUniform':
      return uniform(device, shape, Math.sqrt(3) * std(1, fanIn), seed)
    case 'xavierNormal':
      return device.randn(shape, { seed, std: std(1, (fanIn + fanOut) / 2) })
    case 'xavierUniform':
      return uniform(device, shape, Math.sqrt(3) * std(1, (fanIn + fanOut) / 2), seed)
    case 'kaimingNormal':
      return device.randn(shape, { seed, std: std(Math.SQRT2, fanIn) })
    case 'kaimingUniform':
      return uniform(device, shape, Math.sqrt(3) * std(Math.SQRT2, fanIn), seed)
    case 'pytorchDefault':
      // nn.Linear / nn.Conv2d: kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
      return uniform(device, shape, 1 / Math.sqrt(fanIn), seed)
    default:
      throw typeError(`unknown initializer '${String(name)}'`)
  }
}

function uniform(device: Device, shape: readonly number[], bound: number, seed?: number): Tensor {
  return device.rand(shape, { seed, low: -bound, high: bound })
}
