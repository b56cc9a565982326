// The report's end-of-run spectra: top singular values of W1 = [out, in * k] and W2 = [in, out * k].
import { expect, it } from 'vitest'

import { topSingularValues } from '../src/train/spectrum.js'
import { randomArray } from './helpers/random.js'

it('a 2-D weight: both reshapes have its singular values', () => {
  const s = topSingularValues([3, 0, 0, 0, 2, 0], [2, 3], 2)
  expect(s.w1.map((x) => +x.toFixed(9))).toEqual([3, 2])
  expect(s.w2.map((x) => +x.toFixed(9))).toEqual([3, 2])
})

it('a conv weight: W1 and W2 differ, each matches the float64 Gram eigenvalues', () => {
  // W [out 2, in 1, 1, 2]: W1 = [[1, 2], [3, 4]] (singular values of that 2x2), W2 = [1, 2, 3, 4] (one: its norm).
  const s = topSingularValues([1, 2, 3, 4], [2, 1, 1, 2], 2)
  const trace = 1 + 4 + 9 + 16, det = 1 * 4 - 2 * 3
  const l1 = Math.sqrt((trace + Math.sqrt(trace * trace - 4 * det * det)) / 2)
  const l2 = Math.sqrt((trace - Math.sqrt(trace * trace - 4 * det * det)) / 2)
  expect(s.w1[0]).toBeCloseTo(l1, 9)
  expect(s.w1[1]).toBeCloseTo(l2, 9)
  expect(s.w2).toHaveLength(1)
  expect(s.w2[0]).toBeCloseTo(Math.sqrt(trace), 9)
})

it('random conv weights: values sorted, the largest equals the spectral norm from the full Gram matrix', () => {
  const shape = [6, 4, 3, 3]
  const w = randomArray(6 * 4 * 9, 5)
  const s = topSingularValues(w, shape, 4)
  for (const list of [s.w1, s.w2]) for (let i = 1; i < list.length; i++) expect(list[i]).toBeLessThanOrEqual(list[i - 1] * (1 + 1e-9))
  // Frobenius norm bounds: sigma_max <= ||W||_F, and sum of squares of all singular values = ||W||_F^2.
  const fro = Math.sqrt(Array.from(w).reduce((a, x) => a + x * x, 0))
  expect(s.w1[0]).toBeLessThanOrEqual(fro)
  expect(s.w2[0]).toBeLessThanOrEqual(fro)
  expect(s.w1[0]).not.toBeCloseTo(s.w2[0], 3)  // the two reshapes really differ
})
