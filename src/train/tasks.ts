// What a GAN run trains on: its data, its two networks, and how its samples are judged.
import { loadCifar10, loadPngFolder, proceduralShapes, sampleImages, type ImageSet } from '../data/images.js'
import { mixtureQuality, mixtures, sampleMixture, type Mixture2d } from '../data/toy2d.js'
import type { Device } from '../device.js'
import { mlpDiscriminator, mlpGenerator } from '../models/mlp.js'
import { snganCnnDiscriminator, snganCnnGenerator } from '../models/sngan.js'
import type { Module } from '../nn/module.js'
import type { Tensor } from '../tensor.js'
import { imageFeatures, knnPrecisionRecall } from './knn.js'

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
  zDim: number
  /** The mixture (2-D tasks), for plots. */
  mixture?: Mixture2d
  /** Image side (image tasks). */
  imageSize?: number
  build(device: Device, seed: number): { generator: Module; discriminator: Module }
  /** A fresh batch of n real samples. */
  sampleReal(device: Device, n: number, seed: number): Tensor
  /** Judges `count` generated samples (host copy). */
  quality(samples: Float32Array, count: number): Quality
}

export function mixtureTask(mixture: Mixture2d, width: number): GanTask {
  return {
    dataset: mixture.name,
    kind: '2d',
    zDim: 2,
    mixture,
    build: (device, seed) => ({
      generator: mlpGenerator({ device, seed, width, zDim: 2 }),
      discriminator: mlpDiscriminator({ device, seed: seed + 1000, width }),
    }),
    sampleReal: (device, n, seed) => sampleMixture(device, mixture, n, seed),
    quality: (samples) => mixtureQuality(mixture, samples),
  }
}

/** SNGAN CNN G and D on 32x32 images; quality is k-NN precision/recall against `heldOut` real images. */
export function imageTask(train: ImageSet, heldOut: ImageSet): GanTask {
  if (train.size !== 32) throw new RangeError(`the SNGAN CNN takes 32x32 images, got ${train.size}x${train.size}`)
  const realFeatures = imageFeatures(heldOut.pixels, heldOut.count, heldOut.size)
  return {
    dataset: train.name,
    kind: 'image',
    zDim: 128,
    imageSize: 32,
    build: (device, seed) => ({
      generator: snganCnnGenerator({ device, seed }),
      discriminator: snganCnnDiscriminator({ device, seed: seed + 1000 }),
    }),
    sampleReal: (device, n, seed) => sampleImages(device, train, n, seed),
    quality: (samples, count) => knnPrecisionRecall(realFeatures, imageFeatures(samples, count, 32), 192, 3),
  }
}

export const datasetHelp = 'ring8, grid25, shapes, cifar10:DIR, png:DIR'

/** A task from the CLI's --dataset: ring8 | grid25 (MLP), shapes | cifar10:DIR | png:DIR (SNGAN CNN). */
export function taskFor(spec: string, width: number, seed: number): GanTask {
  if (spec in mixtures) return mixtureTask(mixtures[spec as keyof typeof mixtures], width)
  let set: ImageSet
  if (spec === 'shapes') set = proceduralShapes(5000, seed)
  else if (spec.startsWith('cifar10:')) set = loadCifar10(spec.slice('cifar10:'.length))
  else if (spec.startsWith('png:')) set = loadPngFolder(spec.slice('png:'.length), 32)
  else throw new RangeError(`unknown dataset '${spec}' (expected ${datasetHelp})`)
  // Hold out the last images (up to 500) as the real reference for precision/recall.
  const held = Math.min(500, Math.floor(set.count / 5))
  if (held < 8) throw new RangeError(`${set.name} has ${set.count} images: at least 40 are needed (a fifth is held out for evaluation)`)
  const each = 3 * set.size * set.size
  const split = (from: number, to: number): ImageSet => ({ ...set, count: to - from, pixels: set.pixels.subarray(from * each, to * each) })
  return imageTask(split(0, set.count - held), split(set.count - held, set.count))
}
