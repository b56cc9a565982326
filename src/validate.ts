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

/** An options object: undefined gives {}; anything but a plain object is a TypeError. */
export function checkOptions<T extends object>(value: T | undefined, what = 'options'): Partial<T> {
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw typeError(`expected ${what} to be an object, got ${describe(value)}`)
  return value
}

export function checkFunction<F extends (...args: never[]) => unknown>(value: unknown, what: string): F {
  if (typeof value !== 'function') throw typeError(`expected ${what} to be a function, got ${describe(value)}`)
  return value as F
}

export function checkBoolean(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') throw typeError(`expected ${what} to be a boolean, got ${describe(value)}`)
  return value
}
