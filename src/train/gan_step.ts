// One GAN training step (n_dis discriminator steps, then one generator step) with hinge losses, as the SNGAN
// and BSSN papers train. The discriminator's weights are normalized by `normalization` (one batched BSSN
// forward per discriminator pass) when given.
import { noGrad } from '../autograd/tape.js'
import { tidy } from '../autograd/scope.js'
import { Module } from '../nn/module.js'
import { SpectralNorm } from '../nn/spectral_norm.js'
import type { Tensor } from '../tensor.js'
import { typeError } from '../errors.js'
import { checkFunction, checkInteger, describe } from '../validate.js'
import { Optimizer } from './optimizer.js'
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

/**
 * Runs one step; after it, D's parameters hold the gradients of the last discriminator step (the generator step
 * computes none for them). Returns the losses as 1-element tensors the caller disposes (reading them waits for the step). */
export function ganStep(p: GanParts): { lossD: Tensor; lossG: Tensor } {
  checkParts(p)
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
    // The generator step needs D's input gradient only: D's parameters are frozen for it (their gradients would be
    // dropped by the next optD.zeroGrad() anyway), which skips D's weight and bias gradients and BSSN's backward.
    const lossG = frozen(p.discriminator, () => {
      p.normalization?.forward()
      return hingeLossG(p.discriminator.forward(p.generator.forward(p.sampleZ())))
    })
    p.optG.zeroGrad()
    lossG.backward()
    p.optG.step()
    return { lossD: lossD!, lossG }
  })
}

/** Runs `fn` (which records the graph) with `module`'s trainable parameters not requiring gradients. */
function frozen<T>(module: Module, fn: () => T): T {
  const params = module.parameters().filter((t) => t.requiresGrad)
  params.forEach((t) => (t.requiresGrad = false))
  try {
    return fn()
  } finally {
    params.forEach((t) => (t.requiresGrad = true))
  }
}

function checkParts(p: GanParts): void {
  if (typeof p !== 'object' || p === null) throw typeError(`expected the GAN's parts { generator, discriminator, optG, optD, sampleZ, sampleReal }, got ${describe(p)}`)
  for (const key of ['generator', 'discriminator'] as const)
    if (!(p[key] instanceof Module)) throw typeError(`expected parts.${key} to be a Module, got ${describe(p[key])}`)
  for (const key of ['optG', 'optD'] as const)
    if (!(p[key] instanceof Optimizer)) throw typeError(`expected parts.${key} to be an Optimizer, got ${describe(p[key])}`)
  checkFunction(p.sampleZ, 'parts.sampleZ')
  checkFunction(p.sampleReal, 'parts.sampleReal')
  if (p.afterDiscriminatorBackward !== undefined) checkFunction(p.afterDiscriminatorBackward, 'parts.afterDiscriminatorBackward')
  if (p.normalization !== undefined && !(p.normalization instanceof SpectralNorm))
    throw typeError(`expected parts.normalization to be a SpectralNorm, got ${describe(p.normalization)}`)
  checkInteger(p.nDis ?? 1, 'parts.nDis', 1)
}
