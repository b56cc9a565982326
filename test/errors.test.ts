// Errors carry a stable `code` (as Node's do), from the native addon and from the TypeScript layer alike.
import { expect, it } from 'vitest'

import { BSSN, bssnNormalize, Device } from '../src/index.js'
import { native } from '../src/native.js'

const codeOf = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return (e as { code?: unknown }).code
  }
  return 'no error'
}

it('a disposed tensor or BSSN: ERR_BSSN_DISPOSED, from TypeScript and from native code', async () => {
  const device = Device.cpu()
  const w = device.randn([4, 3], { seed: 1 })
  const norm = new BSSN([w])
  const handle = w.handle
  w.dispose()
  await expect(w.toArray()).rejects.toMatchObject({ code: 'ERR_BSSN_DISPOSED' }) // a promise rejects (test/promise_errors.test.ts)
  expect(codeOf(() => handle.clone())).toBe('ERR_BSSN_DISPOSED')  // the native handle itself
  norm.dispose()
  expect(codeOf(() => norm.forward())).toBe('ERR_BSSN_DISPOSED')
})

it('bad arguments: ERR_BSSN_INVALID_ARGUMENT (TypeError) and ERR_BSSN_OUT_OF_RANGE (RangeError), both layers', () => {
  const device = Device.cpu()
  expect(codeOf(() => device.zeros('3' as unknown as number[]))).toBe('ERR_BSSN_INVALID_ARGUMENT')
  expect(codeOf(() => device.zeros([-1]))).toBe('ERR_BSSN_OUT_OF_RANGE')
  expect(codeOf(() => native().cpu().zeros([1.5]))).toMatch(/^ERR_BSSN_(INVALID_ARGUMENT|OUT_OF_RANGE)$/)
  using w = device.randn([4, 3], { seed: 1 })
  expect(codeOf(() => bssnNormalize(w, { scale: 0 }))).toBe('ERR_BSSN_OUT_OF_RANGE')
})

it('an allocation the machine cannot satisfy: ERR_BSSN_OUT_OF_MEMORY', () => {
  expect(codeOf(() => Device.cpu().zeros([2 ** 40]))).toBe('ERR_BSSN_OUT_OF_MEMORY')
})

it.skipIf(native().cudaStatus().available)('no usable CUDA: ERR_BSSN_CUDA_UNAVAILABLE', () => {
  expect(codeOf(() => Device.cuda(0))).toBe('ERR_BSSN_CUDA_UNAVAILABLE')
})
