// One GAN training step (n_dis discriminator steps, then one generator step) with hinge losses, as the SNGAN
// and BSSN papers train. The discriminator's weights are normalized by `normalization` (one batched BSSN
// forward per discriminator pass) when given.
import { noGrad } from '../autograd/tape.js'
import { tidy } from '../autograd/scope.js'
import type { Module } from '../nn/module.js'
import type { SpectralNorm } from '../nn/spectral_norm.js'
import type { Tensor } from '../tensor.js'
import type { Optimizer } from './optimizer.js'
import { hingeLossD, hingeLossG } from './losses.js'

export interface GanParts {
  generator: Module
  discriminator: Module
  optG: Optimizer
  optD: Optimizer
  normalization?: SpectralNorm
  /** Latent vectors for one batch (new tensors). */
  sampleZ: () => Tensor
  /** A batch of real samples (a new tensor, or one kept by the caller). */
  sampleReal: () => Tensor
  nDis?: number
  /** Called after each discriminator backward, while D's gradients are the D loss's (diagnostics). */
  afterDiscriminatorBackward?: () => void
}

/** Runs one step; returns the losses as 1-element tensors the caller disposes (reading them waits for the step). */
export function ganStep(p: GanParts): { lossD: Tensor; lossG: Tensor } {
  return tidy(() => {
    let lossD: Tensor | undefined
    for (let i = 0; i < (p.nDis ?? 1); i++) {
      lossD?.dispose()
      p.normalization?.forward()
      const fake = noGrad(() => p.generator.forward(p.sampleZ()))
      lossD = hingeLossD(p.discriminator.forward(p.sampleReal()), p.discriminator.forward(fake))
      p.optD.zeroGrad()
      lossD.backward()
      p.afterDiscriminatorBackward?.()
      p.optD.step()
    }
    p.normalization?.forward()
    const lossG = hingeLossG(p.discriminator.forward(p.generator.forward(p.sampleZ())))
    p.optG.zeroGrad()
    lossG.backward()
    p.optG.step()
    return { lossD: lossD!, lossG }
  })
}
