// Image data for the CNN GANs, as [N, 3, size, size] float32 in [-1, 1]: a procedural set the package
// generates (shapes and colours with known factors), CIFAR-10's binary batches, and folders of PNG files.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'

import { PNG } from 'pngjs'

import type { Device } from '../device.js'
import { bssnError } from '../errors.js'
import { HostRandom } from '../random.js'
import type { Tensor } from '../tensor.js'

export interface ImageSet {
  name: string
  count: number
  size: number
  /** [count, 3, size, size], values in [-1, 1]. */
  pixels: Float32Array
  labels?: Uint8Array
}

const SHAPES = ['circle', 'square', 'triangle'] as const

/** `count` procedural 32x32 images: one shape (circle, square or triangle) of a random colour, size and position on a random background. */
export function proceduralShapes(count: number, seed: number, size = 32): ImageSet {
  const random = new HostRandom(seed)
  const plane = size * size
  const pixels = new Float32Array(count * 3 * plane)
  const labels = new Uint8Array(count)
  for (let n = 0; n < count; n++) {
    const shape = random.int(SHAPES.length)
    labels[n] = shape
    const bg = [random.next(), random.next(), random.next()].map((v) => v * 0.5 - 1) // dark backgrounds
    const fg = [random.next(), random.next(), random.next()].map((v) => v * 1.2 - 0.2)
    const r = size * (0.15 + 0.2 * random.next())
    const cx = r + random.next() * (size - 2 * r)
    const cy = r + random.next() * (size - 2 * r)
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const dx = x + 0.5 - cx
        const dy = y + 0.5 - cy
        const inside =
          shape === 0 ? dx * dx + dy * dy <= r * r : shape === 1 ? Math.abs(dx) <= r * 0.85 && Math.abs(dy) <= r * 0.85 : dy <= r * 0.8 && dy >= -r * 0.8 + 1.6 * Math.abs(dx)
        for (let c = 0; c < 3; c++) pixels[(n * 3 + c) * plane + y * size + x] = Math.min(1, inside ? fg[c] : bg[c])
      }
  }
  return { name: 'shapes', count, size, pixels, labels }
}

/** Bytes of one CIFAR-10 binary record: a label, then 32x32x3 pixels. */
export const CIFAR_RECORD = 1 + 3 * 32 * 32

/** CIFAR-10 binary batches (data_batch_*.bin, or the given files): label byte then 3072 bytes R, G, B planes. */
export function loadCifar10(location: string): ImageSet {
  const files = statSync(location).isDirectory()
    ? readdirSync(location)
        .filter((f) => /^data_batch_\d+\.bin$/.test(f))
        .sort()
        .map((f) => path.join(location, f))
    : [location]
  if (files.length === 0) throw bssnError(`${location}: no data_batch_*.bin files (CIFAR-10's binary version)`, 'ERR_BSSN_BAD_DATASET')
  const buffers = files.map((f) => {
    const bytes = readFileSync(f)
    if (bytes.length === 0 || bytes.length % CIFAR_RECORD !== 0)
      throw bssnError(`${f} is not a CIFAR-10 binary batch: ${bytes.length} bytes is not a multiple of ${CIFAR_RECORD} (label + 32x32x3)`, 'ERR_BSSN_BAD_DATASET')
    return bytes
  })
  const count = buffers.reduce((n, b) => n + b.length / CIFAR_RECORD, 0)
  const pixels = new Float32Array(count * 3072)
  const labels = new Uint8Array(count)
  let n = 0
  for (const bytes of buffers)
    for (let at = 0; at < bytes.length; at += CIFAR_RECORD, n++) {
      labels[n] = bytes[at]
      if (labels[n] > 9) throw bssnError(`CIFAR-10 record ${n} has label ${labels[n]} (expected 0..9): not a CIFAR-10 batch`, 'ERR_BSSN_BAD_DATASET')
      for (let k = 0; k < 3072; k++) pixels[n * 3072 + k] = bytes[at + 1 + k] / 127.5 - 1
    }
  return { name: 'cifar10', count, size: 32, pixels, labels }
}

/** Every .png in `folder`, converted to RGB (alpha over black) and resized to size x size (area averaging / bilinear). */
export function loadPngFolder(folder: string, size = 32): ImageSet {
  const files = readdirSync(folder)
    .filter((f) => f.toLowerCase().endsWith('.png'))
    .sort()
  if (files.length === 0) throw bssnError(`${folder}: no .png files`, 'ERR_BSSN_BAD_DATASET')
  const plane = size * size
  const pixels = new Float32Array(files.length * 3 * plane)
  files.forEach((file, n) => {
      let png: PNG
    let bytes: Buffer
    try {
      bytes = readFileSync(path.join(folder, file))
    } catch (error) {
      throw bssnError(`${path.join(folder, file)} cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`, 'ERR_BSSN_BAD_DATASET')
    }
    try {
      png = PNG.sync.read(bytes)
    } catch (error) {
      throw bssnError(`${path.join(folder, file)} is a damaged PNG image (${error instanceof Error ? error.message : String(error)}): remove it or convert it`, 'ERR_BSSN_BAD_DATASET')
    }
    const { width, height, data } = png
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          // Average the source pixels this output pixel covers (at least the nearest one).
          const x0 = Math.floor((x * width) / size)
          const x1 = Math.max(x0 + 1, Math.floor(((x + 1) * width) / size))
          const y0 = Math.floor((y * height) / size)
          const y1 = Math.max(y0 + 1, Math.floor(((y + 1) * height) / size))
          let sum = 0
          for (let sy = y0; sy < y1; sy++)
            for (let sx = x0; sx < x1; sx++) {
              const at = (sy * width + sx) * 4
              sum += (data[at + c] * data[at + 3]) / 255
            }
          pixels[(n * 3 + c) * plane + y * size + x] = sum / ((x1 - x0) * (y1 - y0)) / 127.5 - 1
        }
  })
  return { name: `png:${path.basename(folder)}`, count: files.length, size, pixels }
}

/** A batch of `n` images drawn (with replacement) from `set`, seeded: [n, 3, size, size] on `device`. */
export function sampleImages(device: Device, set: ImageSet, n: number, seed: number, rows: readonly [number, number] = [0, n]): Tensor {
  const random = new HostRandom(seed)
  const each = 3 * set.size * set.size
  const out = new Float32Array((rows[1] - rows[0]) * each)
  // The whole batch's draw, rows [from, to) of it kept (a rank's share: N ranks train on what one process would).
  for (let i = 0; i < rows[1]; i++) {
    const k = random.int(set.count)
    if (i >= rows[0]) out.set(set.pixels.subarray(k * each, (k + 1) * each), (i - rows[0]) * each)
  }
  return device.tensor(out, [rows[1] - rows[0], 3, set.size, set.size])
}

/** Writes `count` images [count, 3, size, size] in [-1, 1] as one PNG grid of `columns` columns (1-pixel gaps). */
export function writeImageGrid(file: string, pixels: Float32Array, count: number, size: number, columns = 8): void {
  writeFileSync(file, imageGridPng(pixels, count, size, columns))
}

/** The PNG bytes of such a grid. */
export function imageGridPng(pixels: Float32Array, count: number, size: number, columns = 8): Buffer {
  const rows = Math.ceil(count / columns)
  const width = columns * (size + 1) + 1
  const height = rows * (size + 1) + 1
  const png = new PNG({ width, height })
  png.data.fill(255)
  const plane = size * size
  for (let n = 0; n < count; n++) {
    const ox = 1 + (n % columns) * (size + 1)
    const oy = 1 + Math.floor(n / columns) * (size + 1)
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const at = ((oy + y) * width + ox + x) * 4
        for (let c = 0; c < 3; c++) png.data[at + c] = Math.round(Math.min(1, Math.max(-1, pixels[(n * 3 + c) * plane + y * size + x])) * 127.5 + 127.5)
        png.data[at + 3] = 255
      }
  }
  return PNG.sync.write(png)
}
