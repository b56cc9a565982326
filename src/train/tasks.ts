// What a GAN run trains on: its data, its two networks, and how its samples are judged.
import { loadCifar10, loadPngFolder, proceduralShapes, sampleImages, type ImageSet } from '../data/images.js'
import { mixtureQuality, mixtures, sampleMixture, type Mixture2d } from '../data/toy2d.js'
import type { Device } from '../device.js'
import { smallCnnDiscriminator, smallCnnGenerator } from '../models/dcgan.js'
import { mlpDiscriminator, mlpGenerator } from '../models/mlp.js'
import { snganCnnDiscriminator, snganCnnGenerator } from '../models/sngan.js'
import type { Module } from '../nn/module.js'
import type { Tensor } from '../tensor.js'
import { imageFeatures, knnPrecisionRecall } from './knn.js'
import { rangeError } from '../errors.js'

/** Sample quality at an evaluation: 2-D mixtures report modes and high-quality share, images k-NN precision/recall. */
export interface Quality {
  modesCovered?: number
  modes?: number
  highQuality?: number
  precision?: number
  recall?: number
}

export interface GanTask {
  dataset: string
  kind: '2d' | 'image'
  /** The networks, as a checkpoint records them: 'mlp(width=128)', 'sngan', 'dcgan16(channels=16)'. */
  architecture: string
  zDim: number
  /** The mixture (2-D tasks), for plots. */
  mixture?: Mixture2d
  /** Image side (image tasks). */
  imageSize?: number
  build(device: Device, seed: number): { generator: Module; discriminator: Module }
  /** A fresh batch of n real samples; with `rows`, only rows [from, to) of that batch (a data-parallel rank's share). */
  sampleReal(device: Device, n: number, seed: number, rows?: readonly [number, number]): Tensor
  /** Real images the quality is measured against (image tasks), for the report's grid. */
  heldOut?: ImageSet
  /** Judges `count` generated samples (host copy). */
  quality(samples: Float32Array, count: number): Quality
}

export function mixtureTask(mixture: Mixture2d, width: number): GanTask {
  return {
    dataset: mixture.name,
    kind: '2d',
    architecture: `mlp(width=${width})`,
    zDim: 2,
    mixture,
    build: (device, seed) => ({
      generator: mlpGenerator({ device, seed, width, zDim: 2 }),
      discriminator: mlpDiscriminator({ device, seed: seed + 1000, width }),
    }),
    sampleReal: (device, n, seed, rows) => sampleMixture(device, mixture, n, seed, rows),
    quality: (samples) => mixtureQuality(mixture, samples),
  }
}

/** The convolutional architectures: the SNGAN CNN on 32x32 images, a small DCGAN-style pair on 16x16. */
export type ImageArch = 'sngan' | 'dcgan16'
export const imageArchSize: Record<ImageArch, number> = { sngan: 32, dcgan16: 16 }

/** G and D of `arch` on its image size; quality is k-NN precision/recall against `heldOut` real images. */
export function imageTask(train: ImageSet, heldOut: ImageSet, arch: ImageArch = 'sngan', channels = 16): GanTask {
  const size = imageArchSize[arch]
  if (train.size !== size) throw rangeError(`the ${arch} networks take ${size}x${size} images, got ${train.size}x${train.size}`)
  const realFeatures = imageFeatures(heldOut.pixels, heldOut.count, heldOut.size)
  return {
    dataset: train.name,
    kind: 'image',
    ...imageNetworks(arch, channels),
    imageSize: size,
    sampleReal: (device, n, seed, rows) => sampleImages(device, train, n, seed, rows),
    quality: (samples, count) => knnPrecisionRecall(realFeatures, imageFeatures(samples, count, size), 192, 3),
    heldOut,
  }
}

/** The networks of a task, without its data. */
export type GanNetworks = Pick<GanTask, 'architecture' | 'zDim' | 'build'>

function imageNetworks(arch: ImageArch, channels = 16): GanNetworks {
  const small = arch === 'dcgan16'
  return {
    architecture: small ? `dcgan16(channels=${channels})` : 'sngan',
    zDim: small ? 32 : 128,
    build: (device, seed) =>
      small
        ? { generator: smallCnnGenerator({ device, seed, channels }), discriminator: smallCnnDiscriminator({ device, seed: seed + 1000, channels }) }
        : { generator: snganCnnGenerator({ device, seed }), discriminator: snganCnnDiscriminator({ device, seed: seed + 1000 }) },
  }
}

/** The networks taskFor(spec, width, seed, arch) trains, without loading its data (to check a checkpoint first). */
export function networksFor(spec: string, width: number, arch: ImageArch = 'sngan'): GanNetworks {
  return spec in mixtures ? mixtureTask(mixtures[spec as keyof typeof mixtures], width) : imageNetworks(arch)
}

export const datasetHelp = 'ring8, grid25, shapes, cifar10:DIR, png:DIR'

/** A task from the CLI's --dataset: ring8 | grid25 (MLP, `width`), shapes | cifar10:DIR | png:DIR (convolutional, `arch`). */
export function taskFor(spec: string, width: number, seed: number, arch: ImageArch = 'sngan'): GanTask {
  if (spec in mixtures) return mixtureTask(mixtures[spec as keyof typeof mixtures], width)
  const size = imageArchSize[arch]
  let set: ImageSet
  if (spec === 'shapes') set = proceduralShapes(5000, seed, size)
  else if (spec.startsWith('cifar10:')) set = downsample(loadCifar10(spec.slice('cifar10:'.length)), size)
  else if (spec.startsWith('png:')) set = loadPngFolder(spec.slice('png:'.length), size)
  else throw rangeError(`unknown dataset '${spec}' (expected ${datasetHelp})`)
  // Hold out the last images (up to 500) as the real reference for precision/recall.
  const held = Math.min(500, Math.floor(set.count / 5))
  if (held < 8) throw rangeError(`${set.name} has ${set.count} images: at least 40 are needed (a fifth is held out for evaluation)`)
  const each = 3 * set.size * set.size
  const split = (from: number, to: number): ImageSet => ({ ...set, count: to - from, pixels: set.pixels.subarray(from * each, to * each) })
  return imageTask(split(0, set.count - held), split(set.count - held, set.count), arch)
}

/** `set` averaged down to size x size (size divides the set's size). */
export function downsample(set: ImageSet, size: number): ImageSet {
  if (set.size === size) return set
  const f = set.size / size
  if (!Number.isInteger(f)) throw rangeError(`cannot downsample ${set.size}x${set.size} images to ${size}x${size}`)
  const pixels = new Float32Array(set.count * 3 * size * size)
  for (let p = 0; p < set.count * 3; p++)
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        let s = 0
        for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) s += set.pixels[(p * set.size + y * f + dy) * set.size + x * f + dx]
        pixels[(p * size + y) * size + x] = s / (f * f)
      }
  return { ...set, size, pixels }
}
