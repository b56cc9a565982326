// One SNGAN training step end to end (the models of the BSSN paper) on every backend, with and without BSSN on D.
import { expect, it, vi } from 'vitest'

import { Adam, ganStep, snganCnnDiscriminator, snganCnnGenerator, SpectralNorm } from '../src/index.js'
import { native } from '../src/native.js'
import { forEachBackend } from './helpers/backends.js'

forEachBackend((getDevice) => {
  it.each([undefined, 'bssn'] as const)('a GAN step with normalization %s updates both networks', async (mode) => {
    const device = getDevice()
    const batch = 2
    const G = snganCnnGenerator({ device, seed: 1 })
    const D = snganCnnDiscriminator({ device, seed: 2 })
    const sn = mode ? new SpectralNorm(D, { mode }) : undefined
    const optG = new Adam(G.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
    const optD = new Adam(D.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
    using real = device.rand([batch, 3, 32, 32], { seed: 3, low: -1, high: 1 })
    const g0 = await G.parameters()[0].toArray()
    const d0 = await D.parameters()[0].toArray()
    const forward = vi.spyOn(native().NormalizerHandle.prototype, 'forward')
    try {
      let seed = 10
      const { lossD, lossG } = ganStep({
        generator: G,
        discriminator: D,
        optG,
        optD,
        normalization: sn,
        sampleZ: () => device.randn([batch, 128], { seed: seed++ }),
        sampleReal: () => real,
      })
      const [ld, lg] = [(await lossD.toArray())[0], (await lossG.toArray())[0]]
      expect(Number.isFinite(ld) && Number.isFinite(lg)).toBe(true)
      expect(ld).toBeGreaterThanOrEqual(0) // a hinge loss
      expect(await G.parameters()[0].toArray()).not.toEqual(g0)
      expect(await D.parameters()[0].toArray()).not.toEqual(d0)
      // one batched normalization per discriminator pass: the D step and the G step
      expect(forward).toHaveBeenCalledTimes(mode ? 2 : 0)
      lossD.dispose()
      lossG.dispose()
    } finally {
      forward.mockRestore()
      sn?.dispose()
      ;[optG, optD, G, D].forEach((x) => x.dispose())
    }
  }, 120_000)
})
