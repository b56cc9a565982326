// One GAN training step (n_dis discriminator steps, then one generator step) with hinge losses, as the SNGAN
// and BSSN papers train. The discriminator's weights are normalized by `normalization` (one batched BSSN
// forward per discriminator pass) when given.
import { noGrad } from '../autograd/tape.js'
import { tidy } from '../autograd/scope.js'
import { BatchNorm2d } from '../nn/batch_norm.js'
import { cat } from '../nn/functional.js'
import { Module } from '../nn/module.js'
import { SpectralNorm } from '../nn/spectral_norm.js'
import type { Tensor } from '../tensor.js'
import { typeError } from '../errors.js'
import { checkFunction, checkInteger, describe } from '../validate.js'
import { Optimizer } from './optimizer.js'
import { hingeLossD, hingeLossDJoint, hingeLossG } from './losses.js'

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
  /**
   * Run D once on real and fake samples concatenated (half the launches, larger products; the same losses and
   * gradients up to summation order). Default: when D has no BatchNorm, whose batch statistics would then mix real
   * and fake (two passes keep each batch's own, as PyTorch's usual loop does).
   */
  jointDiscriminator?: boolean
  /** Called after each discriminator backward, while D's gradients are the D loss's (diagnostics). */
  afterDiscriminatorBackward?: () => void
}

/**
 * Runs one step; after it, D's parameters hold the gradients of the last discriminator step (the generator step
 * computes none for them). Returns the losses as 1-element tensors the caller disposes (reading them waits for the step). */
export function ganStep(p: GanParts): { lossD: Tensor; lossG: Tensor } {
  checkParts(p)
  const joint = p.jointDiscriminator ?? !p.discriminator.modules().some((m) => m instanceof BatchNorm2d)
  return tidy(() => {
    let lossD: Tensor | undefined
    for (let i = 0; i < (p.nDis ?? 1); i++) {
      lossD?.dispose()
      p.normalization?.forward()
      const fake = noGrad(() => p.generator.forward(p.sampleZ()))
      const real = p.sampleReal()
      if (joint) {
        const scores = p.discriminator.forward(cat([real, fake]))
        // D's scores per sample times the real samples: the first of them are D(real)
        lossD = hingeLossDJoint(scores, (scores.size / (real.shape[0] + fake.shape[0])) * real.shape[0])
      } else {
        lossD = hingeLossD(p.discriminator.forward(real), p.discriminator.forward(fake))
      }
      p.optD.zeroGrad()
      lossD.backward()
      p.afterDiscriminatorBackward?.()
      p.optD.step()
    }
    // The generator step needs D's input gradient only: D's parameters are frozen for it (their gradients would be
    // dropped by the next optD.zeroGrad() anyway), which skips D's weight and bias gradients and BSSN's backward.
    const lossG = frozen(p.discriminator, () => {
      p.normalization?.forward()
      const loss = hingeLossG(p.discriminator.forward(p.generator.forward(p.sampleZ())))
      p.optG.zeroGrad()
      loss.backward() // frozen still: nodes ask at backward whether an input needs a gradient
      return loss
    })
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
  if (p.jointDiscriminator !== undefined && typeof p.jointDiscriminator !== 'boolean')
    throw typeError(`expected parts.jointDiscriminator to be a boolean, got ${describe(p.jointDiscriminator)}`)
}
