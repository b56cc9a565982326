// Module: a layer or a network of layers, with parameters, train/eval mode, and explicit disposal.
import { keep } from '../autograd/scope.js'
import type { Tensor } from '../tensor.js'

/** A layer whose weight spectral normalization can replace (Linear, Conv2d: dim 0; ConvTranspose2d: dim 1). */
export interface NormalizableLayer {
  readonly weight: Tensor
  /** The output axis of the weight, as PyTorch's spectral_norm counts it. */
  readonly weightDim: number
  /** @internal The weight forward() uses: the normalized one while a SpectralNorm drives the layer. */
  effectiveWeight: Tensor
}

export function isNormalizable(m: unknown): m is NormalizableLayer & Module {
  return m instanceof Module && 'weightDim' in m && 'effectiveWeight' in m
}

export abstract class Module {
  #training = true
  readonly #parameters: Array<[string, Tensor]> = []
  readonly #children: Module[] = []

  abstract forward(x: Tensor): Tensor

  /** Every parameter of this module and its children, in registration order. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t)
  }

  /** Every parameter with its PyTorch-style name ('0.weight', '3.bias', ...), in registration order. */
  namedParameters(prefix = ''): Array<[string, Tensor]> {
    return [
      ...this.#parameters.map(([name, t]): [string, Tensor] => [prefix + name, t]),
      ...this.#children.flatMap((c, i) => c.namedParameters(`${prefix}${i}.`)),
    ]
  }

  /** Children with their names, as namedParameters prefixes them. */
  namedModules(prefix = ''): Array<[string, Module]> {
    return [[prefix.replace(/\.$/, ''), this], ...this.#children.flatMap((c, i) => c.namedModules(`${prefix}${i}.`))]
  }

  get training(): boolean {
    return this.#training
  }

  train(mode = true): this {
    this.#training = mode
    this.#children.forEach((c) => c.train(mode))
    return this
  }

  eval(): this {
    return this.train(false)
  }

  /** Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose()
      p.grad = undefined
    }
  }

  /** Frees the parameters (and their gradients) at once. */
  dispose(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose()
      p.grad = undefined
      p.dispose()
    }
  }

  [Symbol.dispose](): void {
    this.dispose()
  }

  /** Registers a trainable tensor: it requires gradients and survives tidy(). */
  protected registerParameter(t: Tensor, name: string): Tensor {
    t.requiresGrad = true
    this.#parameters.push([name, keep(t)])
    return t
  }

  protected registerModule<M extends Module>(m: M): M {
    this.#children.push(m)
    return m
  }

  /** This module and all its descendants, depth first. */
  modules(): Module[] {
    return this.namedModules().map(([, m]) => m)
  }
}
