// bssnNormalize: the one-call form for services that hold weight handles and want them normalized.
// The power-iteration state belongs to each weight handle: repeated calls keep advancing it, whichever
// batch of weights a call passes, and it is released when the weight is disposed. A batch (a native normalizer) is
// kept per weights, dims and mode, what the state's shape and the directions it iterates depend on; scale, eps and
// powerIterations apply per call, seed and warmupIterations when a weight's state is made. So what a weight holds
// stays bounded whatever options successive calls pass.
import { Tensor } from '../tensor.js'
import { describe } from '../validate.js'
import { BSSN, checkWeights } from './bssn.js'
import { resolveOptions, type BSSNOptions, type ResolvedOptions } from './options.js'
import { typeError, rangeError } from '../errors.js'

export interface NormalizeCallOptions extends BSSNOptions {
  /** Training mode (default) advances the state by `powerIterations`; false evaluates with the stored state. */
  training?: boolean
}

interface Batch {
  readonly bssn: BSSN
  readonly weights: readonly Tensor[]
  readonly options: ResolvedOptions
  readonly key: string
}

// Where each weight's state lives now: the batch that last advanced it.
const stateOwner = new WeakMap<Tensor, { batch: Batch; layer: number }>()
// Batches by their first weight (so they go with it), then by weight ids, dims and mode.
const batchesByFirst = new WeakMap<Tensor, Map<string, Batch>>()

/**
 * Normalizes `weight` (or a batch of weights, in one native call) and returns new tensors owned by the caller.
 * Options are BSSN's, plus `training`.
 */
export function bssnNormalize(weight: Tensor, options?: NormalizeCallOptions): Tensor
export function bssnNormalize(weights: readonly Tensor[], options?: NormalizeCallOptions): Tensor[]
export function bssnNormalize(input: Tensor | readonly Tensor[], options: NormalizeCallOptions = {}): Tensor | Tensor[] {
  const single = input instanceof Tensor
  const weights = checkWeights(single ? [input] : input)
  weights.forEach((w, i) => {
    if (weights.indexOf(w) !== i) throw rangeError(`weights[${i}] repeats weights[${weights.indexOf(w)}]: each weight has one state`)
  })
  if (typeof options !== 'object' || options === null) throw typeError(`expected options to be an object, got ${describe(options)}`)
  const { training = true, ...bssnOptions } = options
  if (typeof training !== 'boolean') throw typeError(`expected training to be a boolean, got ${describe(training)}`)
  const resolved = resolveOptions(bssnOptions, weights.length)

  const batch = batchFor(weights, resolved)
  weights.forEach((w, i) => {
    const owner = stateOwner.get(w)
    if (owner && owner.batch !== batch && !owner.batch.bssn.disposed) adopt(batch, i, owner.batch, owner.layer)
  })
  const outputs = weights.map((w) => w.device.empty(w.shape))
  batch.bssn.forwardInto(outputs, training, resolved)
  weights.forEach((w, i) => stateOwner.set(w, { batch, layer: i }))
  return single ? outputs[0] : outputs
}

function batchFor(weights: readonly Tensor[], options: ResolvedOptions, warmup = options.warmupIterations): Batch {
  const key = `${weights.map((w) => w.id).join(',')}|${options.dims.join(',')}|${options.mode}`
  let batches = batchesByFirst.get(weights[0])
  if (!batches) batchesByFirst.set(weights[0], (batches = new Map()))
  let batch = batches.get(key)
  if (!batch) {
    batch = { bssn: new BSSN(weights, { ...options, warmupIterations: warmup }), weights, options, key }
    batches.set(key, batch)
    const created = batch
    for (const w of weights) w.onDispose(() => release(created, w))
  }
  return batch
}
// State sizes differ when a weight is seen with another dim: it then starts afresh.
function adopt(batch: Batch, layer: number, from: Batch, fromLayer: number): void {
  const rank = batch.weights[layer].shape.length
  const axis = (dim: number) => (dim + rank) % rank
  if (axis(batch.options.dims[layer]) === axis(from.options.dims[fromLayer])) batch.bssn.adoptState(layer, from.bssn, fromLayer)
}

// A weight of `batch` was disposed: free the batch, moving the state of its other weights to batches of their own.
function release(batch: Batch, disposed: Tensor): void {
  if (batch.bssn.disposed) return
  batch.weights.forEach((w, i) => {
    if (w === disposed || w.disposed || stateOwner.get(w)?.batch !== batch) return
    const home = batchFor([w], { ...batch.options, dims: [batch.options.dims[i]] }, 0)
    home.bssn.adoptState(0, batch.bssn, i)
    stateOwner.set(w, { batch: home, layer: 0 })
  })
  batchesByFirst.get(batch.weights[0])?.delete(batch.key)
  batch.bssn.dispose()
}
