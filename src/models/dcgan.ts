// A small DCGAN-style generator and discriminator for 16x16 RGB images: the convolutional GAN that
// `bssn compare` trains by default, sized so that several runs finish in minutes on two CPU cores.
import { Tanh } from '../nn/activations.js'
import { Conv2d } from '../nn/conv.js'
import { Linear } from '../nn/linear.js'
import { Flatten, Reshape } from '../nn/reshape.js'
import { Sequential } from '../nn/sequential.js'
import { convStack, upBlock, type ModelOptions } from './sngan.js'

export interface SmallCnnOptions extends ModelOptions {
  /** Channels of the first convolution; later ones double (default 16). */
  channels?: number
}

/**
 * D for 16x16: conv3x3 ch, conv4x4/2 2ch, conv3x3 2ch, conv4x4/2 4ch, LeakyReLU(0.1), linear 4ch*4*4 to 1.
 * Its convolutions have different reshapes W1 [out, in*k*k] and W2 [in, out*k*k], so BSSN differs from SSN.
 */
export function smallCnnDiscriminator({ device, seed = 0, channels = 16 }: SmallCnnOptions): Sequential {
  const c = channels
  const convs: Array<[number, number, number, number]> = [[3, c, 3, 1], [c, 2 * c, 4, 2], [2 * c, 2 * c, 3, 1], [2 * c, 4 * c, 4, 2]]
  return new Sequential(...convStack(convs, device, seed), new Flatten(), new Linear(4 * c * 4 * 4, 1, { device, seed: seed + 100 }))
}

/** G: z -> linear to 4x4x4ch, two deconv4x4/2 with BatchNorm + ReLU (2ch, ch), conv3x3 to 3, tanh. */
export function smallCnnGenerator({ device, seed = 0, channels = 16, zDim = 32 }: SmallCnnOptions & { zDim?: number }): Sequential {
  const c = channels
  const up = (cin: number, cout: number, i: number) => upBlock(cin, cout, device, seed + 10 + i)
  return new Sequential(
    new Linear(zDim, 4 * 4 * 4 * c, { device, seed }),
    new Reshape([4 * c, 4, 4]),
    ...up(4 * c, 2 * c, 0),
    ...up(2 * c, c, 1),
    new Conv2d(c, 3, 3, { padding: 1, device, seed: seed + 20 }),
    new Tanh(),
  )
}
