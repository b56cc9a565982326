// Reverse-mode autograd over tensor handles. An op whose inputs need gradients records a node on its output;
// loss.backward() walks the nodes in reverse topological order, accumulates each leaf's gradient in .grad,
// and releases the graph.
import { native } from '../native.js'
import type { Tensor } from '../tensor.js'
import { BinaryOpCode } from '../native.js'
import { keep } from './scope.js'
import { checkFunction } from '../validate.js'
import { rangeError, typeError } from '../errors.js'

export interface GradNode {
  readonly name: string
  readonly inputs: readonly Tensor[]
  // Gradients of the inputs given the output's (undefined where an input needs none). New tensors.
  backward(gradOutput: Tensor): Array<Tensor | undefined>
}

let gradEnabled_ = true

/** Runs `fn` without recording gradients (evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  checkFunction(fn, 'the argument of noGrad()')
  const previous = gradEnabled_
  gradEnabled_ = false
  try {
    return fn()
  } finally {
    gradEnabled_ = previous
  }
}

export function needsGrad(inputs: readonly Tensor[]): boolean {
  return gradEnabled_ && inputs.some((t) => t.requiresGrad)
}

/** @internal Attaches a node to `output` when any input needs a gradient. */
export function record(output: Tensor, inputs: readonly Tensor[], name: string, backward: GradNode['backward']): Tensor {
  if (needsGrad(inputs)) {
    output.requiresGrad = true
    output.gradFn = { name, inputs, backward }
  }
  return output
}

function accumulate(into: Tensor, add: Tensor): void {
  native().ops.binary(BinaryOpCode.Add, into.handle, add.handle, into.handle)
}

/** @internal The body of Tensor.backward(). */
export function runBackward(root: Tensor, gradient?: Tensor): void {
  if (!root.requiresGrad) throw typeError('backward() on a tensor that does not require gradients (no parameter reaches it)')
  if (!gradient && root.size !== 1)
    throw rangeError(`backward() without a gradient needs a one-element tensor, got shape [${root.shape.join(', ')}]`)
  if (gradient && gradient.size !== root.size)
    throw rangeError(`the gradient has shape [${gradient.shape.join(', ')}], expected [${root.shape.join(', ')}]`)

  // Reverse topological order of the nodes reachable from root (iterative DFS: graphs can be deep).
  const order: Tensor[] = []
  const seen = new Set<Tensor>()
  const stack: Array<[Tensor, boolean]> = [[root, false]]
  while (stack.length) {
    const [t, done] = stack.pop()!
    if (done) {
      order.push(t)
      continue
    }
    if (seen.has(t) || !t.gradFn) continue
    seen.add(t)
    stack.push([t, true])
    for (const input of t.gradFn.inputs) if (input.gradFn && !seen.has(input)) stack.push([input, false])
  }

  const seed = gradient ? gradient.clone() : root.device.tensor([1], root.shape)
  if (!root.gradFn) {
    // a leaf: its own gradient
    if (root.grad) {
      accumulate(root.grad, seed)
      seed.dispose()
    } else {
      root.grad = keep(seed)
    }
    return
  }
  const grads = new Map<Tensor, Tensor>([[root, seed]])
  for (let n = order.length - 1; n >= 0; n--) {
    const t = order[n]
    const node = t.gradFn!
    const g = grads.get(t)
    grads.delete(t)
    if (!g) continue
    const inputGrads = node.backward(g)
    g.dispose()
    node.inputs.forEach((input, i) => {
      const gi = inputGrads[i]
      if (!gi) return
      if (!input.requiresGrad) return gi.dispose()
      if (input.gradFn) {
        const existing = grads.get(input)
        if (existing) {
          accumulate(existing, gi)
          gi.dispose()
        } else {
          grads.set(input, gi)
        }
      } else if (input.grad) {
        accumulate(input.grad, gi)
        gi.dispose()
      } else {
        input.grad = keep(gi)
      }
    })
  }
  // Release the graph: its saved tensors can now be disposed or collected.
  for (const t of order) t.gradFn = undefined
}
