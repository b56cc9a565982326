// Runs a suite on every backend. CUDA skips visibly (with the reason) where it is unusable, and fails
// instead when BSSN_REQUIRE_CUDA=1 (the GPU host's check).
import { describe } from 'vitest'

import { Device } from '../../src/index.js'
import { native } from '../../src/native.js'

export const requireCuda = process.env.BSSN_REQUIRE_CUDA === '1'
/** The addon is the emulated build (npm run test:emulated): CUDA runs on the CPU under native/emulator. */
export const emulated = native().emulator !== undefined

export function cudaSkipReason(): string | undefined {
  const status = native().cudaStatus()
  return status.available || requireCuda ? undefined : status.reason
}

export function forEachBackend(body: (device: () => Device) => void): void {
  describe('cpu', () => body(() => Device.cpu()))
  const reason = cudaSkipReason()
  if (reason === undefined) describe('cuda', () => body(() => Device.cuda(0)))
  else describe.skip(`cuda (skipped: ${reason})`, () => body(() => Device.cuda(0)))
}
