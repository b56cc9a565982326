// Argument checks shared by the public API: each error says what was expected and what came.
import { typeError, rangeError } from './errors.js'

export function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return `an array of length ${value.length}`
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`
  if (typeof value === 'object') return `an object (${(value as object).constructor?.name ?? 'Object'})`
  if (typeof value === 'string') return `the string '${value}'`
  return `${typeof value} ${String(value)}`
}

export function checkShape(shape: unknown, what = 'shape'): number[] {
  if (!Array.isArray(shape)) throw typeError(`expected ${what} to be an array of non-negative integers, got ${describe(shape)}`)
  for (const [i, d] of shape.entries()) {
    if (typeof d !== 'number') throw typeError(`expected ${what}[${i}] to be a number, got ${describe(d)}`)
    if (!Number.isSafeInteger(d) || d < 0)
      throw rangeError(`expected ${what}[${i}] to be a non-negative integer, got ${d}`)
  }
  return [...shape]
}

export function checkInteger(value: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw typeError(`expected ${what} to be an integer, got ${describe(value)}`)
  if (!Number.isInteger(value) || value < min || value > max)
    throw rangeError(`expected ${what} to be an integer in ${min}..${max}, got ${value}`)
  return value
}

export function checkNumber(value: unknown, what: string): number {
  if (typeof value !== 'number') throw typeError(`expected ${what} to be a number, got ${describe(value)}`)
  if (!Number.isFinite(value)) throw rangeError(`expected ${what} to be finite, got ${value}`)
  return value
}

export function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}
