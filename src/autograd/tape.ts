// Reverse-mode autograd over tensor handles. An op whose inputs need gradients records a node on its output;
// loss.backward() walks the nodes in reverse topological order, accumulates each leaf's gradient in .grad,
// and releases the graph.
import { native } from '../native.js'
import type { Tensor } from '../tensor.js'
import { BinaryOpCode } from '../native.js'
import { keep } from './scope.js'
import { checkFunction } from '../validate.js'
import { rangeError, typeError } from '../errors.js'

/** How a single-output op's inputs get their gradients. */
export interface GradNode {
  readonly name: string
  readonly inputs: readonly Tensor[]
  readonly outputCount?: undefined
  // Gradients of the inputs given the output's (undefined where an input needs none). New tensors.
  backward(gradOutput: Tensor): Array<Tensor | undefined>
}

/**
 * An op with several outputs (a batched normalization's weights): one node, run once after every output's gradient
 * is complete, with one gradient per output (undefined for an output no gradient reached).
 */
export interface MultiGradNode {
  readonly name: string
  readonly inputs: readonly Tensor[]
  readonly outputCount: number
  backward(gradOutputs: ReadonlyArray<Tensor | undefined>): Array<Tensor | undefined>
}

export type AnyGradNode = GradNode | MultiGradNode

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

/**
 * @internal Attaches one node to every output when any input needs a gradient (output i is the node's output i).
 * Returns whether it did.
 */
export function recordMulti(outputs: readonly Tensor[], inputs: readonly Tensor[], name: string, backward: MultiGradNode['backward']): boolean {
  if (!needsGrad(inputs)) return false
  const node: MultiGradNode = { name, inputs, outputCount: outputs.length, backward }
  outputs.forEach((output, i) => {
    output.requiresGrad = true
    output.gradFn = node
    output.gradSlot = i
  })
  return true
}

/** @internal Attaches a node to `output` when any input needs a gradient. */
export function record(output: Tensor, inputs: readonly Tensor[], name: string, backward: GradNode['backward']): Tensor {
  if (needsGrad(inputs)) {
    output.requiresGrad = true
    output.gradFn = { name, inputs, backward }
    output.gradSlot = 0
  }
  return output
}

function accumulate(into: Tensor, add: Tensor): void {
  native().ops.binary(BinaryOpCode.Add, into.handle, add.handle, into.handle)
}

/**
 * @internal Told when a leaf's gradient is complete within a backward (its last contribution accumulated), as
 * PyTorch's post-accumulate-grad hooks, and once when that backward ends. Data-parallel training starts a bucket's
 * all-reduce from here while backward goes on (distributed/ddp.ts).
 */
export interface GradHook {
  gradReady(leaf: Tensor): void
  backwardEnded(): void
  /** The backward threw after this hook heard of a gradient: `error` goes on to the caller after this. */
  backwardFailed(error: unknown): void
}
const gradHooks = new WeakMap<Tensor, GradHook>()

/** @internal Sets (or, with undefined, removes) the hook of a leaf tensor. */
export function setGradHook(leaf: Tensor, hook: GradHook | undefined): void {
  if (hook) gradHooks.set(leaf, hook)
  else gradHooks.delete(leaf)
}

/** @internal The body of Tensor.backward(). */
export function runBackward(root: Tensor, gradient?: Tensor): void {
  if (!root.requiresGrad) throw typeError('backward() on a tensor that does not require gradients (no parameter reaches it)')
  if (!gradient && root.size !== 1)
    throw rangeError(`backward() without a gradient needs a one-element tensor, got shape [${root.shape.join(', ')}]`)
  if (gradient && gradient.size !== root.size)
    throw rangeError(`the gradient has shape [${gradient.shape.join(', ')}], expected [${root.shape.join(', ')}]`)

  const seed = gradient ? gradient.clone() : root.device.full(root.shape, 1)
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

  // Reverse topological order of the nodes reachable from root (iterative DFS: graphs can be deep). A node with
  // several outputs runs once, after all of them have their gradients.
  const order: AnyGradNode[] = []
  const seen = new Set<AnyGradNode>()
  const holders: Tensor[] = [root] // the tensors whose nodes this backward releases
  const stack: Array<[AnyGradNode, boolean]> = [[root.gradFn, false]]
  while (stack.length) {
    const [node, done] = stack.pop()!
    if (done) {
      order.push(node)
      continue
    }
    if (seen.has(node)) continue
    seen.add(node)
    stack.push([node, true])
    for (const input of node.inputs)
      if (input.gradFn) {
        holders.push(input)
        if (!seen.has(input.gradFn)) stack.push([input.gradFn, false])
      }
  }

  // Hooked leaves: how many of the nodes still to run take each one (its gradient is complete at zero).
  const pending = new Map<Tensor, number>()
  for (const node of order)
    for (const input of node.inputs)
      if (!input.gradFn && input.requiresGrad && gradHooks.has(input)) pending.set(input, (pending.get(input) ?? 0) + 1)
  const hooksRun = new Set<GradHook>()
  const settle = (node: AnyGradNode) => {
    if (pending.size === 0) return
    for (const input of node.inputs) {
      const left = pending.get(input)
      if (left === undefined) continue
      if (left > 1) {
        pending.set(input, left - 1)
        continue
      }
      pending.delete(input)
      const hook = gradHooks.get(input)!
      hooksRun.add(hook)
      hook.gradReady(input)
    }
  }

  try {
    const slotsOf = (node: AnyGradNode) => new Array<Tensor | undefined>(node.outputCount ?? 1)
    const grads = new Map<AnyGradNode, Array<Tensor | undefined>>([[root.gradFn, slotsOf(root.gradFn)]])
    grads.get(root.gradFn)![root.gradSlot] = seed
    for (let n = order.length - 1; n >= 0; n--) {
      const node = order[n]
      const gs = grads.get(node)
      grads.delete(node)
      if (!gs || gs.every((g) => !g)) {
        settle(node)
        continue
      }
      const inputGrads = node.outputCount === undefined ? node.backward(gs[0]!) : node.backward(gs)
      gs.forEach((g) => g?.dispose())
      node.inputs.forEach((input, i) => {
        const gi = inputGrads[i]
        if (!gi) return
        if (!input.requiresGrad) return gi.dispose()
        if (input.gradFn) {
          let slots = grads.get(input.gradFn)
          if (!slots) grads.set(input.gradFn, (slots = slotsOf(input.gradFn)))
          const existing = slots[input.gradSlot]
          if (existing) {
            accumulate(existing, gi)
            gi.dispose()
          } else {
            slots[input.gradSlot] = gi
          }
        } else if (input.grad) {
          accumulate(input.grad, gi)
          gi.dispose()
        } else {
          input.grad = keep(gi)
        }
      })
      settle(node)
    }
  } catch (error) {
    // A hook that started work on this backward's gradients (a gradient all-reduce) must not be left half-way.
    for (const hook of hooksRun) hook.backwardFailed(error)
    throw error
  }
  for (const hook of hooksRun) hook.backwardEnded()
  // Release the graph: its saved tensors can now be disposed or collected.
  for (const t of holders) t.gradFn = undefined
}
