// What one Adam.step() of the SNGAN generator costs on the emulated CUDA device after its first step: at most two
// launches (the device step count's increment and one multi-tensor update), and no allocation, synchronization or
// host-to-device copy, so a captured graph can replay it. Skips visibly outside the emulated build and under
// AddressSanitizer (no counting there).
import { describe, expect, it } from 'vitest'

import { Adam, Device, snganCnnGenerator } from '../../src/index.js'
import { costSkipReason } from '../helpers/cost.js'
import { native } from '../../src/native.js'

const reason = costSkipReason()
const suite = reason === undefined ? describe : describe.skip

suite(`Adam.step() on the emulated device${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it('updates the SNGAN generator in <= 2 launches, 0 allocations, 0 syncs, 0 bytes to the device', async () => {
    const device = Device.cuda(0)
    const G = snganCnnGenerator({ device, seed: 1 })
    const params = G.parameters()
    for (const p of params) p.grad = p.clone() // nonzero (random init), and a copy costs less than a draw here
    const opt = new Adam(params, { lr: 2e-4, betas: [0.5, 0.999] })
    opt.step() // the first step allocates the moments and the step count
    await device.synchronize()
    const before = await params[0].toArray()
    const emulator = native().emulator!
    emulator.cost.start()
    try {
      opt.step()
    } catch (error) {
      emulator.cost.stop() // counting off again for whoever comes next
      throw error
    }
    const cost = emulator.cost.stop()
    const names = cost.kernels.map((k) => k.kernel)
    expect(cost.launches, names.join(', ')).toBeLessThanOrEqual(2)
    expect(names.filter((n) => n === 'adamKernel')).toHaveLength(1)
    expect(cost.deviceAllocations + cost.pinnedAllocations).toBe(0)
    expect(cost.synchronizations).toBe(0)
    expect(cost.bytesToDevice).toBe(0)
    expect(Array.from(await params[0].toArray())).not.toEqual(Array.from(before)) // the counted step did update
    expect(opt.stepCount).toBe(2)
    opt.dispose()
    G.dispose() // its parameters and their gradients
  })
})
