// Optimizers update parameters in place from their .grad, on the parameters' device, recording nothing.
import { checkTensor, type Tensor } from '../tensor.js'
import { checkNumber } from '../validate.js'
import { typeError, rangeError } from '../errors.js'

export abstract class Optimizer {
  readonly params: readonly Tensor[]

  constructor(params: readonly Tensor[]) {
    if (!Array.isArray(params) || params.length === 0) throw typeError('expected a non-empty array of parameters')
    params.forEach((p, i) => checkTensor(p, `params[${i}]`))
    this.params = [...params]
  }

  /** One update of every parameter that has a gradient. */
  abstract step(): void

  /** Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose()
      p.grad = undefined
    }
  }

  /**
   * @internal Whether a captured graph of step() stays right when replayed: the step count and everything derived
   * from it live on the device.
   */
  get capturable(): boolean {
    return false
  }

  /**
   * @internal A captured graph replayed `n` more of this optimizer's steps: advances what the host knows of the step
   * count (the device's advanced by itself).
   */
  noteReplayedSteps(n: number): void {
    void n
  }

  /** Frees the optimizer's state tensors. */
  abstract dispose(): void

  protected static rate(value: unknown, what: string): number {
    const x = checkNumber(value, what)
    if (x < 0) throw rangeError(`expected ${what} >= 0, got ${x}`)
    return x
  }
}
