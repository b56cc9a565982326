// tidy(): every tensor created inside the callback is disposed when it returns, except what it returns, the
// gradients it left on parameters, and tensors marked with keep(). Keeps device memory flat across steps.
import type { Tensor } from '../tensor.js'
import { typeError } from '../errors.js'

const scopes: Set<Tensor>[] = []

/** @internal Called by the Tensor constructor. */
export function track(t: Tensor): void {
  scopes[scopes.length - 1]?.add(t)
}

/** Excludes `t` from every open tidy scope, so it survives them. Returns t. */
export function keep<T extends Tensor>(t: T): T {
  for (const scope of scopes) scope.delete(t)
  return t
}

function collect(value: unknown, into: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 4) return
  if (into.has(value)) return
  into.add(value)
  if (Array.isArray(value)) value.forEach((v) => collect(v, into, depth + 1))
  else if (Object.getPrototypeOf(value) === Object.prototype) Object.values(value).forEach((v) => collect(v, into, depth + 1))
}

/**
 * Runs `fn` and disposes the tensors it created, except the ones it returns (a tensor, or arrays and plain
 * objects of them) and the ones kept with keep(). Gradients assigned to parameters are kept by backward().
 */
export function tidy<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw typeError('tidy expects a function')
  const scope = new Set<Tensor>()
  scopes.push(scope)
  let result: T
  try {
    result = fn()
  } finally {
    scopes.pop()
  }
  if (result instanceof Promise) throw typeError('tidy expects a synchronous function (the tensors of an async one would outlive it)')
  const returned = new Set<unknown>()
  collect(result, returned)
  for (const t of scope) {
    if (returned.has(t)) {
      scopes[scopes.length - 1]?.add(t) // an enclosing scope owns it now
      continue
    }
    if (!t.disposed && !t.owned) t.dispose()
  }
  return result
}
