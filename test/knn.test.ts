// k-NN precision and recall behave as their definitions say on sets of known overlap.
import { expect, it } from 'vitest'

import { imageFeatures, knnPrecisionRecall } from '../src/train/knn.js'
import { proceduralShapes } from '../src/data/images.js'
import { HostRandom } from '../src/random.js'

function cluster(centers: number[][], perCenter: number, seed: number, spread = 0.05): Float32Array {
  const random = new HostRandom(seed)
  return Float32Array.from(centers.flatMap((c) => Array.from({ length: perCenter }, () => c.map((v) => v + spread * random.normal())).flat()))
}

it('same distribution: both high (k-NN balls miss a few); disjoint: both 0; half the modes: full precision, half recall', () => {
  const modes = [[0, 0], [4, 0], [0, 4], [4, 4]]
  const real = cluster(modes, 25, 1)
  const same = knnPrecisionRecall(real, cluster(modes, 25, 2), 2)
  expect(same.precision).toBeGreaterThan(0.8)
  expect(same.recall).toBeGreaterThan(0.8)
  const far = knnPrecisionRecall(real, cluster([[40, 40]], 100, 3), 2)
  expect(far).toEqual({ precision: 0, recall: 0 })
  const half = knnPrecisionRecall(real, cluster(modes.slice(0, 2), 50, 4), 2)
  expect(half.precision).toBeGreaterThan(0.8)
  expect(half.recall).toBeGreaterThan(0.4)
  expect(half.recall).toBeLessThan(0.6)
  expect(() => knnPrecisionRecall(real, cluster([[0, 0]], 3, 5), 2)).toThrow(/more than k = 3 samples/)
})

it('image features average 4x4 blocks of a 32x32 image', () => {
  const set = proceduralShapes(2, 1)
  const f = imageFeatures(set.pixels, 2, 32)
  expect(f.length).toBe(384)
  let s = 0
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) s += set.pixels[y * 32 + x]
  expect(f[0]).toBeCloseTo(s / 16, 6)
})
