// SpectralNorm: every normalizable layer of a model (Linear, Conv2d, ConvTranspose2d) normalized by one BSSN
// batch per step: one native call for the forward of all weights and one for the backward.
import { recordMulti } from '../autograd/tape.js'
import { BSSN } from '../normalize/bssn.js'
import type { BSSNOptions } from '../normalize/options.js'
import { isNormalizable, Module, type NormalizableLayer } from './module.js'
import { rangeError, typeError } from '../errors.js'
import { checkOptions, describe } from '../validate.js'

export type SpectralNormOptions = Omit<BSSNOptions, 'dims'>

export class SpectralNorm {
  readonly layers: readonly NormalizableLayer[]
  readonly normalizer: BSSN

  /** Takes over every normalizable layer of `model` (or the `layers` given). */
  constructor(model: Module, options: SpectralNormOptions & { layers?: readonly NormalizableLayer[] } = {}) {
    if (!(model instanceof Module)) throw typeError(`expected model to be a Module, got ${describe(model)}`)
    const { layers, ...bssnOptions } = checkOptions(options)
    if (layers !== undefined && !(Array.isArray(layers) && layers.every(isNormalizable)))
      throw typeError('expected options.layers to be an array of Linear, Conv2d or ConvTranspose2d layers')
    this.layers = layers ?? model.modules().filter(isNormalizable)
    if (this.layers.length === 0) throw rangeError('SpectralNorm: the model has no Linear, Conv2d or ConvTranspose2d layer')
    this.normalizer = new BSSN(
      this.layers.map((l) => l.weight),
      { ...bssnOptions, dims: this.layers.map((l) => l.weightDim) },
    )
  }

  /**
   * Normalizes every weight (training mode advances the power iteration) and points each layer at its
   * normalized weight. Call once per step, before the model's forward; backward() then reaches the raw weights.
   */
  forward(): void {
    const normalized = this.normalizer.forward()
    const raw = this.layers.map((l) => l.weight)
    const device = this.normalizer.device
    normalized.forEach((w) => {
      w.requiresGrad = false
      w.gradFn = undefined
    })
    // One node for all the normalized weights: run once their gradients are complete, it maps them to the raw
    // weights in one batched backward (a weight no gradient reached contributes zeros).
    recordMulti(normalized, raw, 'spectralNorm', (grads) => {
      const given = raw.map((w, i) => grads[i] ?? device.zeros(w.shape))
      const out = raw.map((w) => device.empty(w.shape))
      this.normalizer.backwardInto(given, out)
      raw.forEach((_, i) => grads[i] || given[i].dispose())
      return out
    })
    this.layers.forEach((l, i) => (l.effectiveWeight = normalized[i]))
  }

  /** Per layer sigma1, sigma2 and divisor of the last forward. */
  sigmas() {
    return this.normalizer.sigmas()
  }

  train(): this {
    this.normalizer.train()
    return this
  }

  eval(): this {
    this.normalizer.eval()
    return this
  }

  /** Gives the layers their raw weights back and frees the normalizer. */
  dispose(): void {
    this.layers.forEach((l) => (l.effectiveWeight = l.weight))
    this.normalizer.dispose()
  }
}
