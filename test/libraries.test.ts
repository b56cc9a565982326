// Optional CUDA libraries: where they are missing (CI), the reason names the library and what was tried; the
// rest of the package keeps working.
import { expect, it } from 'vitest'

import { Device } from '../src/index.js'
import { native } from '../src/native.js'

it('reports each optional library as loaded with a version, or with an error naming it', () => {
  const libs = native().libraries()
  for (const [name, label] of [['cublas', 'cuBLAS'], ['cudnn', 'cuDNN']] as const) {
    const status = libs[name]
    if (status.loaded) {
      expect(status.version).toMatch(/^\d+\.\d+\.\d+$/)
    } else {
      expect(status.error).toMatch(native().builtWithCuda ? new RegExp(`${label} could not be loaded; tried:`) : /built without the CUDA backend/)
    }
  }
  // and the CPU backend is unaffected
  expect(Device.cpu().info()).toMatchObject({ kind: 'cpu', name: 'CPU', streamThreads: 1 })
})

const host = native().cudaHost()
const driverPresent = !native().builtWithCuda || host.available || host.driverVersion !== 0
it.skipIf(driverPresent)('without an NVIDIA driver, the CUDA fallback reason says so (not "driver version is insufficient")', () => {
  expect(Device.auto()).toMatchObject({ kind: 'cpu', fallbackReason: expect.stringMatching(/^no NVIDIA driver found \(libcuda\.so\.1/) })
})
