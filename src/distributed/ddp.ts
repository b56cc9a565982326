// Gradient averaging across ranks after backward, as PyTorch's DistributedDataParallel does it: the module's
// parameters go into buckets of about `bucketBytes` in reverse registration order (roughly the order backward
// computes their gradients); as soon as every gradient of a bucket is complete, the bucket's all-reduce (average,
// one NCCL group) is enqueued on the communicator's own stream, after the device stream's work so far, while the
// device's stream goes on with the rest of backward. When backward ends, the remaining buckets go and the device's
// stream waits for them (on the device, not the host), so an optimizer step enqueued next sees averaged gradients.
//
// Unlike DDP this wraps no forward: nothing is broadcast per step. Every rank's weights stay equal because every rank
// applies the same averaged gradients; spectral normalization's u and v then follow from equal weights by the same
// deterministic power iteration (no per-forward buffer broadcast, the cause of PyTorch #22095).
import { setGradHook, type GradHook } from '../autograd/tape.js'
import { keep } from '../autograd/scope.js'
import { bssnError, typeError } from '../errors.js'
import { Module } from '../nn/module.js'
import type { Tensor } from '../tensor.js'
import { checkInteger, checkOptions, describe } from '../validate.js'
import { ProcessGroup } from './process_group.js'

export interface DistributedDataParallelOptions {
  /** A bucket's size in bytes (default 4 MiB; PyTorch's default is 25 MiB, smaller buckets start sooner). */
  bucketBytes?: number
  /** @internal Called as each bucket's all-reduce is enqueued (tests count the overlap with backward). */
  onBucket?: (bucket: number) => void
}

export class DistributedDataParallel implements GradHook {
  readonly module: Module
  readonly group: ProcessGroup
  /** The parameters of each bucket, in the order their all-reduces are enqueued. */
  readonly buckets: ReadonlyArray<readonly Tensor[]>
  readonly #bucketOf = new Map<Tensor, number>()
  readonly #onBucket: ((bucket: number) => void) | undefined
  #waiting: number[] | undefined // per bucket, the gradients not yet complete in this backward (made at its first hook)
  #next = 0 // the next bucket to enqueue: buckets go in order on every rank, as NCCL needs
  #bytes = 0 // all-reduced in this backward
  #bytesPerBackward = 0
  #disposed = false

  constructor(module: Module, group: ProcessGroup, options: DistributedDataParallelOptions = {}) {
    if (!(module instanceof Module)) throw typeError(`expected a Module, got ${describe(module)}`)
    if (!(group instanceof ProcessGroup)) throw typeError(`expected a ProcessGroup (from initDistributed()), got ${describe(group)}`)
    options = checkOptions(options)
    const bucketBytes = checkInteger(options.bucketBytes ?? 4 << 20, 'options.bucketBytes', 1)
    this.module = module
    this.group = group
    this.#onBucket = options.onBucket
    const params = module.parameters().filter((t) => t.requiresGrad)
    params.forEach((t, i) => {
      if (!t.device.equals(group.device)) throw typeError(`parameter ${i} is on ${t.device.name}, not on this rank's ${group.device.name}`)
    })
    const buckets: Tensor[][] = []
    let bytes = Infinity
    for (const t of [...params].reverse()) {
      if (bytes + t.size * 4 > bucketBytes && bytes > 0) {
        buckets.push([])
        bytes = 0
      }
      buckets[buckets.length - 1].push(t)
      bytes += t.size * 4
    }
    this.buckets = buckets
    buckets.forEach((b, i) => b.forEach((t) => this.#bucketOf.set(t, i)))
    params.forEach((t) => setGradHook(t, this))
  }

  /** The bytes each rank all-reduced in the last backward. */
  get bytesPerBackward(): number {
    return this.#bytesPerBackward
  }

  /** @internal A parameter's gradient is complete. */
  gradReady(leaf: Tensor): void {
    const b = this.#bucketOf.get(leaf)
    if (b === undefined) return
    const waiting = this.#waitingNow()
    if (--waiting[b] === 0) this.#launchReady()
  }

  /** @internal Backward ended: the buckets not yet sent go (a parameter no gradient reached gets zeros), then the join. */
  backwardEnded(): void {
    try {
      for (let b = this.#next; b < this.buckets.length; b++)
        for (const t of this.buckets[b]) if (!t.grad && t.requiresGrad) t.grad = keep(t.device.zeros(t.shape))
      this.#waitingNow().fill(0)
      this.#launchReady()
      this.group.join()
      this.#bytesPerBackward = this.#bytes
    } catch (error) {
      // A zeros() out of memory or a failed launch after a bucket went ends the group, as a backward's throw does;
      // the first error is the one reported.
      try {
        this.backwardFailed(error)
      } catch {}
      throw error
    } finally {
      this.#reset()
    }
  }

  /**
   * @internal The backward threw (out of memory, say) after some of this module's gradients were complete. Once a
   * bucket went, this rank can no longer issue what its peers issue: the device's stream waits for what went (so no
   * gradient buffer is reused under it) and the group is ended, which fails the peers' collectives instead of leaving
   * them waiting for ours.
   */
  backwardFailed(error: unknown): void {
    const started = this.#next > 0
    this.#reset()
    if (!started || this.group.failure) return
    try {
      this.group.join()
    } finally {
      const why = error instanceof Error ? error.message : String(error)
      this.group.abort(bssnError(`rank ${this.group.rank}: a backward failed after its gradient all-reduce started (${why}); the ranks can no longer agree, so the group was ended`, 'ERR_BSSN_COLLECTIVE_FAILED'))
    }
  }

  /** Removes the hooks: later backwards average nothing. */
  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    for (const t of this.#bucketOf.keys()) setGradHook(t, undefined)
  }

  #launchReady(): void {
    while (this.#next < this.buckets.length && this.#waiting![this.#next] === 0) {
      const b = this.#next++
      const grads = this.buckets[b].filter((t) => t.requiresGrad).map((t) => t.grad!)
      this.group.allReduceOverlapped(grads, 'avg')
      this.#bytes += grads.reduce((n, g) => n + g.size * 4, 0)
      this.#onBucket?.(b)
    }
  }

  #reset(): void {
    this.#waiting = undefined
    this.#next = 0
    this.#bytes = 0
  }

  // Counted when a backward first reaches the module: which parameters are trainable may change between backwards.
  #waitingNow(): number[] {
    return (this.#waiting ??= this.buckets.map((b) => b.filter((t) => t.requiresGrad).length))
  }
}
