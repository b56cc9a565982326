// BSSN: a batch of weights normalized together (SN, SSN, BSN or BSSN), one native call per forward.
import type { Device } from '../device.js'
import { bssnError, rangeError, typeError } from '../errors.js'
import type { NativeNormalizerHandle } from '../native.js'
import { native } from '../native.js'
import { Tensor } from '../tensor.js'
import { describe } from '../validate.js'
import { resolveOptions, type BSSNOptions, type NormalizationMode } from './options.js'

export interface LayerSigmas {
  /** Spectral norm estimate of W1 (the weight with `dim` first, reshaped to a matrix). */
  sigma1: number
  /** Spectral norm estimate of W2 (the first two axes swapped); only for 'bsn' and 'bssn'. */
  sigma2?: number
  /** What the weight was divided by: sigma1, or (sigma1 + sigma2) / 2. */
  divisor: number
  /**
   * Power-iteration steps (and eval forwards) since construction that met a non-finite value in this weight: each
   * gave NaN sigmas and a NaN output, and left the state as it was (README "Bad numbers").
   */
  nonFiniteSteps: number
}

export interface LayerState {
  u: Float32Array
  v: Float32Array
  /** Second direction, for weights of 3 or more dimensions. */
  u2?: Float32Array
  v2?: Float32Array
}

const stateKeys = ['u', 'v', 'u2', 'v2'] as const
// Slots per layer in the native sigma buffer (kSigmaStride): sigma1, sigma2, divisor, non-finite step count.
const sigmaStride = 4

/** Checks a batch of weights: a non-empty array of live tensors on one device. */
export function checkWeights(weights: unknown): readonly Tensor[] {
  if (!Array.isArray(weights)) throw typeError(`expected weights to be an array of tensors, got ${describe(weights)}`)
  if (weights.length === 0) throw rangeError('expected at least one weight, got an empty array')
  for (const [i, w] of weights.entries()) {
    if (!(w instanceof Tensor)) throw typeError(`expected weights[${i}] to be a Tensor, got ${describe(w)}`)
    if (w.disposed) throw bssnError(`weights[${i}] was disposed`, 'ERR_BSSN_DISPOSED')
    if (!w.device.equals(weights[0].device))
      throw typeError(`expected every weight on one device; weights[${i}] is on ${w.device.name}, weights[0] on ${weights[0].device.name}`)
  }
  return weights
}

export class BSSN {
  readonly mode: NormalizationMode
  readonly scale: number
  readonly powerIterations: number
  readonly warmupIterations: number
  readonly eps: number
  readonly dims: readonly number[]
  readonly seed: number
  readonly device: Device

  readonly #weights: readonly Tensor[]
  readonly #handle: NativeNormalizerHandle
  #outputs: readonly Tensor[] | undefined
  #gradOutputs: readonly Tensor[] | undefined
  #training = true
  #disposed = false

  constructor(weights: readonly Tensor[], options: BSSNOptions = {}) {
    checkWeights(weights)
    const o = resolveOptions(options, weights.length)
    this.mode = o.mode
    this.scale = o.scale
    this.powerIterations = o.powerIterations
    this.warmupIterations = o.warmupIterations
    this.eps = o.eps
    this.dims = o.dims
    this.seed = o.seed
    this.device = weights[0].device
    this.#weights = Object.freeze([...weights])
    this.#handle = new (native().NormalizerHandle)(
      weights.map((w) => w.handle),
      { mode: o.mode, scale: o.scale, eps: o.eps, warmupIterations: o.warmupIterations, seed: o.seed, dims: o.dims },
    )
  }

  /** Number of weights. */
  get size(): number {
    return this.#weights.length
  }

  get weights(): readonly Tensor[] {
    return this.#weights
  }

  get training(): boolean {
    return this.#training
  }

  train(): this {
    this.#training = true
    return this
  }

  eval(): this {
    this.#training = false
    return this
  }

  /**
   * Normalizes every weight. Training mode first runs `powerIterations` power iterations and keeps the new
   * state; eval mode uses the stored state. Returns tensors owned by this object, reused by every call (their
   * dispose() is a no-op: they are freed with this object).
   */
  forward(): Tensor[] {
    this.#checkAlive()
    this.#handle.forward(this.#iterations(), null, true)
    return [...this.#ownedOutputs()]
  }

  /**
   * The scale-only forward: advances the state (training mode) and computes sigmas and divisors, but writes no
   * normalized copy, for layers that multiply their output by c / divisor instead of materializing the weight.
   */
  updateSigmas(): void {
    this.#checkAlive()
    this.#handle.forward(this.#iterations(), null, false)
  }

  /**
   * @internal Writes the normalized weights into `outputs` (one per weight, caller-owned). `call` replaces
   * powerIterations, scale and eps for this call (bssnNormalize).
   */
  forwardInto(outputs: readonly Tensor[], training = this.#training, call?: Pick<BSSNOptions, 'powerIterations' | 'scale' | 'eps'>): void {
    this.#checkAlive()
    const iterations = training ? (call?.powerIterations ?? this.powerIterations) : 0
    const params = call && { scale: call.scale ?? this.scale, eps: call.eps ?? this.eps }
    this.#handle.forward(iterations, outputs.map((t) => t.handle), true, params)
  }

  /**
   * The gradient with respect to each original weight, given the gradient with respect to each normalized
   * weight of the last forward (or of the scale-only updateSigmas: the same normalized weight, not materialized).
   * As PyTorch, u and v are constants: dW = (c/s) G - (c/s^2) <G, W> ds/dW, with ds/dW = u1 v1^T (averaged with
   * u2 v2^T mapped back from W2's layout in bsn/bssn). One native call for all layers; returns tensors owned by
   * this object, reused by every call.
   */
  backward(gradNormalized: readonly Tensor[]): Tensor[] {
    this.#checkAlive()
    if (!Array.isArray(gradNormalized)) throw typeError(`expected an array of gradient tensors, got ${describe(gradNormalized)}`)
    for (const [i, g] of gradNormalized.entries())
      if (!(g instanceof Tensor)) throw typeError(`expected gradNormalized[${i}] to be a Tensor, got ${describe(g)}`)
    this.#handle.backward(gradNormalized.map((g) => g.handle), null)
    this.#gradOutputs ??= this.#handle.gradOutputs().map((h) => new Tensor(h, this.device, 'BSSN'))
    return [...this.#gradOutputs]
  }

  /** @internal Writes the weight gradients into `outputs` (one per weight, caller-owned). */
  backwardInto(gradNormalized: readonly Tensor[], outputs: readonly Tensor[]): void {
    this.#checkAlive()
    this.#handle.backward(gradNormalized.map((g) => g.handle), outputs.map((t) => t.handle))
  }

  /** Per layer sigma1, sigma2 (bidirectional modes) and divisor, as of the last forward (or the warm-up). */
  async sigmas(): Promise<LayerSigmas[]> {
    this.#checkAlive()
    const values = await this.#handle.sigmas()
    const counts = new Uint32Array(values.buffer, values.byteOffset, values.length)  // slot 3 holds a uint32
    const bidirectional = this.mode === 'bsn' || this.mode === 'bssn'
    return this.#weights.map((_, i) => {
      const at = i * sigmaStride
      const sigma1 = values[at]
      const divisor = values[at + 2]
      const nonFiniteSteps = counts[at + 3]
      return bidirectional ? { sigma1, sigma2: values[at + 1], divisor, nonFiniteSteps } : { sigma1, divisor, nonFiniteSteps }
    })
  }

  /** The power iteration state of layer i (1-D weights have none: empty u and v). */
  async getState(i: number): Promise<LayerState> {
    this.#checkAlive()
    const sizes = this.#handle.stateSizes(this.#layer(i))
    const all = await this.#handle.getState(i)
    const u = all.slice(0, sizes.u1)
    const v = all.slice(sizes.u1, sizes.u1 + sizes.v1)
    if (sizes.u2 === 0) return { u, v }
    const at = sizes.u1 + sizes.v1
    return { u, v, u2: all.slice(at, at + sizes.u2), v2: all.slice(at + sizes.u2, at + sizes.u2 + sizes.v2) }
  }

  /** Replaces layer i's state (stream-ordered: forwards enqueued before still see the old one). Omitted vectors stay. */
  setState(i: number, state: Partial<LayerState>): void {
    this.#checkAlive()
    const sizes = this.#handle.stateSizes(this.#layer(i))
    if (typeof state !== 'object' || state === null) throw typeError(`expected a state object, got ${describe(state)}`)
    const expected = [sizes.u1, sizes.v1, sizes.u2, sizes.v2]
    stateKeys.forEach((key, which) => {
      const values = state[key]
      if (values === undefined) return
      if (!(values instanceof Float32Array)) throw typeError(`expected state.${key} to be a Float32Array, got ${describe(values)}`)
      if (values.length !== expected[which])
        throw rangeError(`expected state.${key} of layer ${i} to have ${expected[which]} values, got ${values.length}`)
    })
    stateKeys.forEach((key, which) => {
      const values = state[key]
      if (values !== undefined) this.#handle.setState(i, which as 0 | 1 | 2 | 3, values)
    })
  }

  /** @internal Copies another batch's layer state into layer i, in stream order. */
  adoptState(i: number, other: BSSN, otherLayer: number): void {
    this.#checkAlive()
    this.#handle.adoptState(i, other.#handle, otherLayer)
  }

  get disposed(): boolean {
    return this.#disposed
  }

  /** Frees the state and the owned outputs at once. The weights stay the caller's. */
  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    this.#handle.dispose()
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  #iterations(): number {
    return this.#training ? this.powerIterations : 0
  }

  #ownedOutputs(): readonly Tensor[] {
    this.#outputs ??= this.#handle.outputs().map((h) => new Tensor(h, this.device, 'BSSN'))
    return this.#outputs
  }

  #layer(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.#weights.length)
      throw rangeError(`expected a layer index in 0..${this.#weights.length - 1}, got ${describe(i)}`)
    return i
  }

  #checkAlive(): void {
    if (this.#disposed) throw bssnError('BSSN was disposed', 'ERR_BSSN_DISPOSED')
  }
}
