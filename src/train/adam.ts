// Adam (PyTorch's semantics, L2 weight decay added to the gradient): one native call updates every parameter (a
// multi-tensor update, two launches on CUDA), with the step count kept on the device so a captured graph advances it.
import { keep } from '../autograd/scope.js'
import { native, type NativeTensorHandle } from '../native.js'
import { checkTensor, type Tensor } from '../tensor.js'
import { checkInteger, checkOptions, describe } from '../validate.js'
import { Optimizer } from './optimizer.js'
import { rangeError, typeError } from '../errors.js'

export interface AdamOptions {
  lr?: number
  betas?: readonly [number, number]
  eps?: number
  weightDecay?: number
}

export class Adam extends Optimizer {
  readonly lr: number
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  #step = 0
  #stepTensor: Tensor | undefined
  readonly #state = new Map<Tensor, { m: Tensor; v: Tensor }>()

  constructor(params: readonly Tensor[], options: AdamOptions = {}) {
    super(params)
    options = checkOptions(options)
    this.lr = Optimizer.rate(options.lr ?? 1e-3, 'lr')
    const betas = options.betas ?? [0.9, 0.999]
    if (!Array.isArray(betas) || betas.length !== 2) throw typeError(`expected betas to be a pair of numbers, got ${describe(betas)}`)
    const [b1, b2] = betas
    this.beta1 = Optimizer.rate(b1, 'betas[0]')
    this.beta2 = Optimizer.rate(b2, 'betas[1]')
    if (this.beta1 >= 1 || this.beta2 >= 1) throw rangeError(`expected betas in [0, 1), got [${b1}, ${b2}]`)
    this.eps = Optimizer.rate(options.eps ?? 1e-8, 'eps')
    this.weightDecay = Optimizer.rate(options.weightDecay ?? 0, 'weightDecay')
  }

  /** The step count (the host's mirror of the device's count). */
  get stepCount(): number {
    return this.#step
  }

  /** @internal The step count and bias corrections live on the device: replayed graphs stay right. */
  override get capturable(): boolean {
    return true
  }

  /**
   * @internal Advances the host's step count by `n` steps that a replayed captured graph ran on the device (each
   * replay of step()'s native call increments the device's count itself). Negative: steps a capture counted that
   * never ran (the capture failed).
   */
  override noteReplayedSteps(n: number): void {
    checkInteger(n, 'n', -this.#step)
    this.#step += n
  }

  step(): void {
    const params: NativeTensorHandle[] = [], grads: NativeTensorHandle[] = [], ms: NativeTensorHandle[] = [], vs: NativeTensorHandle[] = []
    for (const p of this.params) {
      if (!p.grad) continue
      let s = this.#state.get(p)
      if (!s) {
        s = { m: keep(p.device.zeros(p.shape)), v: keep(p.device.zeros(p.shape)) }
        this.#state.set(p, s)
      }
      params.push(p.handle), grads.push(p.grad.handle), ms.push(s.m.handle), vs.push(s.v.handle)
    }
    // Called even without gradients: the device's count advances with the host's.
    native().ops.adam(params, grads, ms, vs, this.#deviceStep().handle, {
      lr: this.lr,
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      weightDecay: this.weightDecay,
    })
    this.#step++
  }

  // The device's step count: one int64 (as two float32 slots), made from the host's count when first needed (also
  // after dispose()), then kept, so that captured graphs keep its address.
  #deviceStep(): Tensor {
    this.#stepTensor ??= keep(this.#stepValue(this.#step))
    return this.#stepTensor
  }

  #stepValue(step: number): Tensor {
    return this.params[0].device.tensor(new Float32Array(BigInt64Array.of(BigInt(step)).buffer), [2])
  }

  /** The step count and, per parameter (in `params` order), its first and second moments (undefined before its first update). */
  state(): { step: number; moments: Array<{ m: Tensor; v: Tensor } | undefined> } {
    return { step: this.#step, moments: this.params.map((p) => this.#state.get(p)) }
  }

  /** Restores what state() returned (the tensors are copied in). */
  loadState(step: number, moments: ReadonlyArray<{ m: Tensor; v: Tensor } | undefined>): void {
    checkInteger(step, 'step', 0)
    if (!Array.isArray(moments)) throw typeError(`expected moments to be an array, got ${describe(moments)}`)
    moments.forEach((s, i) => {
      if (s === undefined) return
      if (typeof s !== 'object' || s === null) throw typeError(`expected moments[${i}] to be { m, v } or undefined, got ${describe(s)}`)
      checkTensor(s.m, `moments[${i}].m`)
      checkTensor(s.v, `moments[${i}].v`)
    })
    if (moments.length !== this.params.length) throw rangeError(`expected ${this.params.length} moment pairs, got ${moments.length}`)
    this.#step = step
    // Written into the existing buffer (a captured graph holds its address), bit for bit as an int64.
    if (this.#stepTensor) {
      const value = this.#stepValue(step)
      try {
        this.#stepTensor.copyFrom(value)
      } finally {
        value.dispose()
      }
    }
    moments.forEach((s, i) => {
      const p = this.params[i]
      if (!s) return
      let mine = this.#state.get(p)
      if (!mine) {
        mine = { m: keep(p.device.zeros(p.shape)), v: keep(p.device.zeros(p.shape)) }
        this.#state.set(p, mine)
      }
      mine.m.copyFrom(s.m)
      mine.v.copyFrom(s.v)
    })
  }

  dispose(): void {
    this.#stepTensor?.dispose()
    this.#stepTensor = undefined
    for (const s of this.#state.values()) {
      s.m.dispose()
      s.v.dispose()
    }
    this.#state.clear()
  }
}
