// GAN training steps at GPU speed: on CUDA, after `warmup` eager steps (which make the optimizer state, cuBLAS and
// cuDNN plans and BSSN's plans), one step is captured into a CUDA graph and every later step is one graph launch
// plus two host-to-device copies (the latent seeds and the real batch), as torch.cuda.graph /
// make_graphed_callables would run it. Elsewhere, or with capture off, each step runs eagerly (ganStep). Both give
// the same losses and weights bit for bit: the captured kernels are the eager ones, and the latent noise of a draw
// comes from the same seed, read on the device from a table written before each replay.
import { keep, tidy } from '../autograd/scope.js'
import { CapturedGraph } from '../capture.js'
import type { Device } from '../device.js'
import { native } from '../native.js'
import { Module } from '../nn/module.js'
import { checkTensor, type Tensor } from '../tensor.js'
import { rangeError, typeError } from '../errors.js'
import { checkBoolean, checkFunction, checkInteger, checkOptions, checkShape, describe } from '../validate.js'
import { ganStep, type GanParts } from './gan_step.js'
import type { Optimizer } from './optimizer.js'

export interface GanStepperParts extends Omit<GanParts, 'sampleZ' | 'sampleReal' | 'afterDiscriminatorBackward'> {
  /** The latent batch's shape, e.g. [batch, zDim]: standard normal values. */
  zShape: readonly number[]
  /** The seed of a step's latent draw (draws are numbered in the step: 0, 2, ... for z, 1, 3, ... for real batches). */
  zSeed: (step: number, draw: number) => number
  /**
   * The rows [from, to) of each latent draw this process trains on, zShape being the whole draw's (a data-parallel
   * rank's share of the global batch, so N ranks see the latents one process would). Default: all of them.
   */
  zRows?: readonly [number, number]
  /** A new tensor of real samples for a step's draw (run outside any capture, so it may read host data). */
  sampleReal: (step: number, draw: number) => Tensor
}

export interface GanStepperOptions {
  /** Capture the step into a CUDA graph (default: on CUDA devices with capturable optimizers, unless BSSN_CUDA_GRAPHS=0). */
  capture?: boolean
  /** Eager steps before the capture (default 2; at least 1, which makes the optimizers' state). */
  warmup?: number
}

/** Whether steps are captured by default on `device`: CUDA, unless BSSN_CUDA_GRAPHS=0 turns graphs off. */
export function captureByDefault(device: Device): boolean {
  return device.kind === 'cuda' && process.env.BSSN_CUDA_GRAPHS !== '0'
}

export class GanStepper {
  readonly parts: GanStepperParts
  readonly device: Device
  /** Whether steps are captured (on CUDA; after the warm-up). */
  readonly capture: boolean
  readonly warmup: number
  #eagerSteps = 0 // since the last capture was dropped
  #graph: CapturedGraph | undefined
  #seeds: Tensor | undefined // uint64 seeds of the z draws, as float32 bits
  #reals: Tensor[] = [] // the real batches' static inputs
  #losses: { lossD: Tensor; lossG: Tensor } | undefined // the static outputs
  #tf32 = '' // the device's TF32 setting when the graph was captured
  #replays = 0 // of the current graph

  constructor(parts: GanStepperParts, options: GanStepperOptions = {}) {
    if (typeof parts !== 'object' || parts === null) throw typeError(`expected the GAN's parts, got ${describe(parts)}`)
    if (!(parts.generator instanceof Module)) throw typeError(`expected parts.generator to be a Module, got ${describe(parts.generator)}`)
    checkShape(parts.zShape)
    checkFunction(parts.zSeed, 'parts.zSeed')
    checkFunction(parts.sampleReal, 'parts.sampleReal')
    if (parts.zRows !== undefined) {
      if (!Array.isArray(parts.zRows) || parts.zRows.length !== 2) throw typeError(`expected parts.zRows to be [from, to], got ${describe(parts.zRows)}`)
      checkInteger(parts.zRows[0], 'parts.zRows[0]', 0, parts.zShape[0] - 1)
      checkInteger(parts.zRows[1], 'parts.zRows[1]', parts.zRows[0] + 1, parts.zShape[0])
    }
    options = checkOptions(options)
    this.parts = parts
    this.device = parts.generator.parameters()[0].device
    const capture = checkBoolean(options.capture ?? (captureByDefault(this.device) && parts.optD.capturable && parts.optG.capturable), 'options.capture')
    if (capture && this.device.kind !== 'cuda') throw rangeError(`capturing steps needs a CUDA device, got ${this.device.name}`)
    if (capture && !(parts.optD.capturable && parts.optG.capturable))
      throw rangeError('capturing steps needs optimizers whose step count lives on the device (bssn\'s Adam and SGD)')
    this.capture = capture
    this.warmup = checkInteger(options.warmup ?? 2, 'options.warmup', 1)
  }

  /** Whether the next step() replays a captured graph. */
  get captured(): boolean {
    return this.#graph !== undefined
  }

  /**
   * Runs training step `step` (numbered from 1; it picks the step's seeds and real batches). Returns the losses: new
   * tensors the caller disposes when eager; when captured, the graph's outputs, valid until the next step (read
   * them before it; do not dispose them). `afterDiscriminatorBackward` makes this step eager (a diagnostic hook
   * cannot run inside a graph).
   */
  step(step: number, hooks: { afterDiscriminatorBackward?: () => void } = {}): { lossD: Tensor; lossG: Tensor; captured: boolean } {
    checkInteger(step, 'step', 1)
    if (!this.capture || hooks.afterDiscriminatorBackward || this.#eagerSteps < this.warmup) {
      this.#eagerSteps++
      return { ...this.#eager(step, hooks.afterDiscriminatorBackward), captured: false }
    }
    const nDis = this.parts.nDis ?? 1
    const reals = Array.from({ length: nDis }, (_, i) => this.parts.sampleReal(step, 2 * i + 1))
    try {
      reals.forEach((r, i) => checkTensor(r, `sampleReal(${step}, ${2 * i + 1})`))
      if (this.#graph && (reals.some((r, i) => !sameShape(r, this.#reals[i])) || tf32Of(this.device) !== this.#tf32)) {
        // A new shape, or TF32 switched (a graph keeps the math modes of its capture): new plans are made by eager
        // steps first (cuDNN's algorithm search cannot run in a capture), then the step is captured again.
        this.#drop()
        this.#eagerSteps = 1
        reals.forEach((r) => r.dispose())
        return { ...this.#eager(step), captured: false }
      }
      if (!this.#graph) this.#record(reals)
      this.#seeds!.write(this.#seedTable(step))
      reals.forEach((r, i) => this.#reals[i].copyFrom(r))
    } finally {
      reals.forEach((r) => r.dispose())
    }
    this.#graph!.replay()
    // The first replay runs the step the capture counted; later ones advance the optimizers' host step counts.
    if (this.#replays++ > 0) {
      this.parts.optD.noteReplayedSteps(nDis)
      this.parts.optG.noteReplayedSteps(1)
    }
    return { ...this.#losses!, captured: true }
  }

  #eager(step: number, afterDiscriminatorBackward?: () => void) {
    let draw = 0
    return ganStep({
      ...this.parts,
      sampleZ: () => this.#rows(this.device.randn(this.parts.zShape, { seed: this.parts.zSeed(step, draw++) })),
      sampleReal: () => this.parts.sampleReal(step, draw++),
      afterDiscriminatorBackward,
    })
  }

  // Captures one step on static inputs shaped as `reals`: its z from the seed table, its real batches copied in.
  #record(reals: readonly Tensor[]): void {
    const nDis = this.parts.nDis ?? 1
    this.#seeds = keep(this.device.empty([2 * (nDis + 1)]))
    this.#reals = reals.map((r) => keep(this.device.empty(r.shape)))
    this.#replays = 0
    const opts = [this.parts.optD, this.parts.optG]
    const stepsBefore = opts.map(hostSteps)
    let captured
    try {
      captured = CapturedGraph.capture(this.device, () =>
        tidy(() => {
          let z = 0
          let real = 0
          return ganStep({
            ...this.parts,
            sampleZ: () => {
              const t = this.device.empty(this.parts.zShape)
              native().ops.randnFromTable(t.handle, this.#seeds!.handle, z++, 1)
              return this.#rows(t)
            },
            sampleReal: () => this.#reals[real++],
          })
        }),
      )
    } catch (error) {
      // Nothing ran: the optimizers' host step counts go back to what the device has, the static inputs go.
      opts.forEach((o, i) => o.noteReplayedSteps(stepsBefore[i] - hostSteps(o)))
      this.#drop()
      throw error
    }
    this.#graph = captured.graph
    this.#tf32 = tf32Of(this.device)
    this.#losses = { lossD: keep(captured.result.lossD), lossG: keep(captured.result.lossG) }
  }

  // The process's rows of a latent draw (a new tensor; the draw is freed).
  #rows(z: Tensor): Tensor {
    const rows = this.parts.zRows
    if (!rows) return z
    const per = z.size / z.shape[0]
    const out = this.device.empty([rows[1] - rows[0], ...z.shape.slice(1)])
    native().ops.copyRange(out.handle, 0, z.handle, rows[0] * per, (rows[1] - rows[0]) * per)
    z.dispose()
    return out
  }

  #seedTable(step: number): Float32Array {
    const nDis = this.parts.nDis ?? 1
    const seeds = new BigUint64Array(nDis + 1)
    for (let i = 0; i <= nDis; i++) seeds[i] = BigInt(checkInteger(this.parts.zSeed(step, 2 * i), 'zSeed()', 0))
    return new Float32Array(seeds.buffer)
  }

  #drop(): void {
    this.#graph?.dispose()
    this.#graph = undefined
    this.#seeds?.dispose()
    this.#seeds = undefined
    this.#reals.forEach((t) => t.dispose())
    this.#reals = []
    this.#losses?.lossD.dispose()
    this.#losses?.lossG.dispose()
    this.#losses = undefined
  }

  /** Frees the graph and its static tensors (the parts are the caller's). */
  dispose(): void {
    this.#drop()
  }
}

const tf32Of = (device: Device) => JSON.stringify(device.tf32)
// What the host counts of an optimizer's steps (Adam's stepCount; 0 for one that counts none).
const hostSteps = (o: Optimizer) => (o as { stepCount?: number }).stepCount ?? 0

function sameShape(a: Tensor, b: Tensor): boolean {
  return a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i])
}
