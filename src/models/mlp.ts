// MLP generator and discriminator for 2-D data (the mode-collapse benchmarks).
import { LeakyReLU, ReLU } from '../nn/activations.js'
import { Linear } from '../nn/linear.js'
import { Sequential } from '../nn/sequential.js'
import type { ModelOptions } from './sngan.js'

export interface MlpOptions extends ModelOptions {
  width?: number
  depth?: number
  zDim?: number
}

/** z [N, zDim] -> [N, 2]: depth hidden layers of `width` with ReLU. */
export function mlpGenerator({ device, seed = 0, width = 128, depth = 3, zDim = 2 }: MlpOptions): Sequential {
  const layers = []
  for (let i = 0; i < depth; i++) layers.push(new Linear(i === 0 ? zDim : width, width, { device, seed: seed + i }), new ReLU())
  return new Sequential(...layers, new Linear(width, 2, { device, seed: seed + depth }))
}

/** [N, 2] -> [N, 1]: depth hidden layers of `width` with LeakyReLU(0.2). */
export function mlpDiscriminator({ device, seed = 0, width = 128, depth = 3 }: MlpOptions): Sequential {
  const layers = []
  for (let i = 0; i < depth; i++) layers.push(new Linear(i === 0 ? 2 : width, width, { device, seed: seed + i }), new LeakyReLU(0.2))
  return new Sequential(...layers, new Linear(width, 1, { device, seed: seed + depth }))
}
