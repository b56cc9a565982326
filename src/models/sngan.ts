// The SNGAN "standard CNN" generator and discriminator for 32x32 RGB images (Miyato et al. 2018), the
// architecture the BSSN authors train on CIFAR-10.
import type { Device } from '../device.js'
import { LeakyReLU, ReLU, Tanh } from '../nn/activations.js'
import { BatchNorm2d } from '../nn/batch_norm.js'
import { Conv2d, ConvTranspose2d } from '../nn/conv.js'
import { Linear } from '../nn/linear.js'
import type { Module } from '../nn/module.js'
import { Flatten, Reshape } from '../nn/reshape.js'
import { Sequential } from '../nn/sequential.js'

export interface ModelOptions {
  device: Device
  seed?: number
}

/** The discriminators' body: [cin, cout, kernel, stride] convolutions (padding 1), each followed by LeakyReLU(0.1). */
export function convStack(convs: ReadonlyArray<readonly [number, number, number, number]>, device: Device, seed: number): Module[] {
  return convs.flatMap(([cin, cout, k, s], i) => [new Conv2d(cin, cout, k, { stride: s, padding: 1, device, seed: seed + 2 * i }), new LeakyReLU(0.1)])
}

/** The generators' upsampling block: deconv4x4/2, BatchNorm, ReLU. */
export function upBlock(cin: number, cout: number, device: Device, seed: number): Module[] {
  return [new ConvTranspose2d(cin, cout, 4, { stride: 2, padding: 1, device, seed }), new BatchNorm2d(cout, { device }), new ReLU()]
}

/** D: conv3x3 64, conv4x4/2 64, conv3x3 128, conv4x4/2 128, conv3x3 256, conv4x4/2 256, conv3x3 512, LeakyReLU(0.1), linear to 1. */
export function snganCnnDiscriminator({ device, seed = 0 }: ModelOptions): Sequential {
  const convs: Array<[number, number, number, number]> = [
    [3, 64, 3, 1], [64, 64, 4, 2], [64, 128, 3, 1], [128, 128, 4, 2], [128, 256, 3, 1], [256, 256, 4, 2], [256, 512, 3, 1],
  ]
  return new Sequential(...convStack(convs, device, seed), new Flatten(), new Linear(512 * 4 * 4, 1, { device, seed: seed + 100 }))
}

/** G: z -> linear to 4x4x512, three deconv4x4/2 with BatchNorm + ReLU (256, 128, 64), conv3x3 to 3, tanh. */
export function snganCnnGenerator({ device, seed = 0, zDim = 128 }: ModelOptions & { zDim?: number }): Sequential {
  const up = (cin: number, cout: number, i: number) => upBlock(cin, cout, device, seed + 10 + i)
  return new Sequential(
    new Linear(zDim, 4 * 4 * 512, { device, seed }),
    new Reshape([512, 4, 4]),
    ...up(512, 256, 0),
    ...up(256, 128, 1),
    ...up(128, 64, 2),
    new Conv2d(64, 3, 3, { padding: 1, device, seed: seed + 20 }),
    new Tanh(),
  )
}
