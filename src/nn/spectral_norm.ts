// SpectralNorm: every normalizable layer of a model (Linear, Conv2d, ConvTranspose2d) normalized by one BSSN
// batch per step: one native call for the forward of all weights and one for the backward.
import { keep } from '../autograd/scope.js'
import { needsGrad, record } from '../autograd/tape.js'
import { BSSN } from '../normalize/bssn.js'
import type { BSSNOptions } from '../normalize/options.js'
import { Tensor } from '../tensor.js'
import { isNormalizable, Module, type NormalizableLayer } from './module.js'
import { rangeError, typeError } from '../errors.js'
import { checkOptions, describe } from '../validate.js'

export type SpectralNormOptions = Omit<BSSNOptions, 'dims'>

export class SpectralNorm {
  readonly layers: readonly NormalizableLayer[]
  readonly normalizer: BSSN
  #join: Tensor | undefined

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
    this.#join?.dispose() // the previous step's graph is done with it
    this.#join = undefined
    if (!needsGrad(raw)) {
      this.layers.forEach((l, i) => {
        normalized[i].requiresGrad = false
        normalized[i].gradFn = undefined
        l.effectiveWeight = normalized[i]
      })
      return
    }
    // One hidden tensor joins the outputs: each normalized weight passes its gradient to it, and its node,
    // run after all of theirs, maps them to the raw weights in one batched backward.
    const stash: Array<Tensor | undefined> = new Array(raw.length)
    const device = this.normalizer.device
    const join = record(device.zeros([1]), raw, 'spectralNorm', () => {
      const grads = raw.map((w, i) => stash[i] ?? device.zeros(w.shape))
      const out = raw.map((w) => device.empty(w.shape))
      this.normalizer.backwardInto(grads, out)
      grads.forEach((g) => g.dispose())
      return out
    })
    this.#join = keep(join)
    normalized.forEach((w, i) => {
      w.requiresGrad = true
      w.gradFn = {
        name: 'spectralNorm.output',
        inputs: [join],
        backward: (g) => {
          stash[i] = g.clone()
          return [device.zeros([1])]
        },
      }
      this.layers[i].effectiveWeight = w
    })
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
    this.#join?.dispose()
    this.normalizer.dispose()
  }
}
