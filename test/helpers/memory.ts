// A device's memory stats with earlier tests' garbage gone: every file runs in one process (vitest.config.ts), and a
// baseline taken while unreachable tensors still await the collector moves when they are finalized mid-test (seen
// once under ASan: 8 live tensors at the baseline, 1 after the step under test).
import type { Device } from '../../src/index.js'

export async function settledStats(device: Device): Promise<ReturnType<Device['memoryStats']>> {
  const gc = (globalThis as { gc?: () => void }).gc // --expose-gc (vitest.config.ts)
  for (let i = 0; i < 3; i++) {
    gc?.()
    await new Promise((resolve) => setTimeout(resolve, 5)) // finalizers run after the collection
  }
  await device.synchronize()
  return device.memoryStats()
}
