// Image datasets: the procedural set, CIFAR-10 binary batches and PNG folders, read from small files written
// in those formats; damaged files rejected clearly; sample grids written as PNG.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PNG } from 'pngjs'
import { afterAll, expect, it } from 'vitest'

import { loadCifar10, loadPngFolder, proceduralShapes, sampleImages, writeImageGrid } from '../src/data/images.js'
import { Device } from '../src/index.js'

const dir = mkdtempSync(path.join(tmpdir(), 'bssn-images-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('procedural shapes: deterministic, in [-1, 1], with labels', () => {
  const a = proceduralShapes(20, 3)
  const b = proceduralShapes(20, 3)
  expect(a.pixels).toEqual(b.pixels)
  expect(a.pixels.length).toBe(20 * 3 * 32 * 32)
  expect(a.pixels.every((v) => v >= -1 && v <= 1)).toBe(true)
  expect(new Set(a.labels).size).toBeGreaterThan(1)
  expect(proceduralShapes(20, 4).pixels).not.toEqual(a.pixels)
})

it('CIFAR-10 binary batches: labels and planes, scaled to [-1, 1]; wrong sizes and labels rejected', () => {
  const records = 3
  const bytes = Buffer.alloc(records * 3073)
  for (let r = 0; r < records; r++) {
    bytes[r * 3073] = r + 4
    for (let k = 0; k < 3072; k++) bytes[r * 3073 + 1 + k] = (k + r * 7) % 256
  }
  const folder = path.join(dir, 'cifar')
  mkdirSync(folder)
  writeFileSync(path.join(folder, 'data_batch_1.bin'), bytes)
  const set = loadCifar10(folder)
  expect(set.count).toBe(3)
  expect(Array.from(set.labels!)).toEqual([4, 5, 6])
  expect(set.pixels[3072 + 1024]).toBeCloseTo(((1024 + 7) % 256) / 127.5 - 1, 6) // record 1, first G value
  writeFileSync(path.join(dir, 'short.bin'), bytes.subarray(0, 3000))
  expect(() => loadCifar10(path.join(dir, 'short.bin'))).toThrow(/not a multiple of 3073/)
  const badLabel = Buffer.from(bytes)
  badLabel[0] = 42
  writeFileSync(path.join(dir, 'label.bin'), badLabel)
  expect(() => loadCifar10(path.join(dir, 'label.bin'))).toThrow(/label 42/)
  expect(() => loadCifar10(dir)).toThrow(/no data_batch_\*\.bin/)
})

it('PNG folders: RGB, alpha over black, resized; unreadable files named', () => {
  const folder = path.join(dir, 'pngs')
  mkdirSync(folder)
  const png = new PNG({ width: 64, height: 64 })
  for (let i = 0; i < 64 * 64; i++) png.data.set([255, 0, 128, 255], i * 4)
  writeFileSync(path.join(folder, 'a.png'), PNG.sync.write(png))
  const set = loadPngFolder(folder, 32)
  expect(set.count).toBe(1)
  expect(set.pixels[0]).toBeCloseTo(1, 6) // R
  expect(set.pixels[1024]).toBeCloseTo(-1, 6) // G
  expect(set.pixels[2048]).toBeCloseTo(128 / 127.5 - 1, 6) // B
  writeFileSync(path.join(folder, 'b.png'), 'not a png')
  expect(() => loadPngFolder(folder)).toThrow(/b\.png is a damaged PNG image \(.*\): remove it or convert it/)
})

it('samples batches onto a device and writes a PNG grid', async () => {
  const set = proceduralShapes(10, 1)
  using batch = sampleImages(Device.cpu(), set, 4, 9)
  expect(batch.shape).toEqual([4, 3, 32, 32])
  const file = path.join(dir, 'grid.png')
  writeImageGrid(file, await batch.toArray(), 4, 32, 2)
  const back = PNG.sync.read(readFileSync(file))
  expect([back.width, back.height]).toEqual([67, 67])
})
