// Comparisons with a float64 reference: relative to the largest reference magnitude, and never NaN.
import { expect } from 'vitest'

export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length)
  let scale = 0
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]))
  let worst = 0
  for (let i = 0; i < actual.length; i++) {
    if (!Number.isFinite(actual[i])) return Infinity
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]))
  }
  return scale === 0 ? worst : worst / scale
}

export function expectCloseArray(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what = 'values'): void {
  const err = maxRelativeError(actual, expected)
  expect(err, `${what}: max relative error ${err}`).toBeLessThan(tolerance)
}

export function expectCloseNumber(actual: number | undefined, expected: number, tolerance: number, what = 'value'): void {
  expect(actual, what).toBeTypeOf('number')
  const err = Math.abs(actual! - expected) / Math.max(Math.abs(expected), 1e-30)
  expect(err, `${what}: ${actual} vs ${expected} (relative error ${err})`).toBeLessThan(tolerance)
}
