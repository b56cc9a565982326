// Training a GAN (a task: data, networks, quality measure) with a chosen discriminator normalization,
// recording what the BSSN paper plots: sample quality over training, and per discriminator layer the gradient
// norm, the variance of the normalized weight against its bound 1/max(m, n), and sigma1 / sigma2.
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'

import { keep, tidy } from '../autograd/scope.js'
import { noGrad } from '../autograd/tape.js'
import { Device } from '../device.js'
import { bssnError, rangeError, typeError } from '../errors.js'
import { mul, sum } from '../nn/functional.js'
import { isNormalizable } from '../nn/module.js'
import { SpectralNorm } from '../nn/spectral_norm.js'
import type { NormalizationMode } from '../normalize/options.js'
import type { Tensor } from '../tensor.js'
import { Adam } from './adam.js'
import { checkGanCheckpoint, loadGanCheckpoint, saveGanCheckpoint, type GanCheckpointParts } from './checkpoint.js'
import { GanStepper } from './gan_stepper.js'
import { broadcastTrainingState } from '../distributed/broadcast_state.js'
import { DistributedDataParallel } from '../distributed/ddp.js'
import type { ProcessGroup } from '../distributed/process_group.js'
import type { GanNetworks, GanTask, Quality } from './tasks.js'
import { topSingularValues, type LayerSpectrum } from './spectrum.js'

export type NormChoice = 'none' | NormalizationMode

export interface TrainConfig {
  norm: NormChoice
  scale: number
  task: GanTask
  steps: number
  batch: number
  lr: number
  betas: [number, number]
  nDis: number
  seed: number
  evalEvery: number
  evalSamples: number
  device: Device
  /** Folder for metrics.jsonl and checkpoint.safetensors (created). */
  out?: string
  /** Write checkpoint.safetensors every N steps (and at the end or an interruption) when > 0. */
  checkpointEvery?: number
  /** Continue the run saved in this checkpoint (same config): bit-for-bit the run it interrupted. */
  resume?: string
  /**
   * Capture the training step into a CUDA graph and replay it (train/gan_stepper.ts): default on CUDA unless
   * BSSN_CUDA_GRAPHS=0; the same results as eager steps, bit for bit.
   */
  capture?: boolean
  /**
   * A data-parallel run (initDistributed()): `batch` is the global batch, each rank trains on its rows of it,
   * gradients are averaged across ranks (distributed/ddp.ts), rank 0's state is broadcast at the start and at a
   * resume, and only rank 0 writes `out` (metrics, checkpoints). Steps run eagerly.
   */
  distributed?: ProcessGroup
  /** The gradient buckets' size in bytes for the data-parallel all-reduce (default 4 MiB). */
  bucketBytes?: number
}

export interface LayerDiagnostics {
  gradNorm: number
  variance: number
  bound: number
  sigma1?: number
  sigma2?: number
  /** What the weight was divided by: sigma1, or (sigma1 + sigma2) / 2 under bsn/bssn. */
  divisor?: number
  /** The spectral norm of the normalized W1 as the estimates give it: c * sigma1 / divisor (1 under sn). */
  effective?: number
}

export interface EvalRecord extends Quality {
  step: number
  seconds: number
  lossD: number
  lossG: number
  layers: LayerDiagnostics[]
}

export interface TrainResult {
  config: Omit<TrainConfig, 'device' | 'task' | 'resume'> & { device: string; dataset: string; architecture: string }
  history: EvalRecord[]
  /** The shape of each discriminator layer's weight, in the order of EvalRecord.layers. */
  layerShapes: number[][]
  /** Each discriminator layer's top singular values of W1 and W2 (raw weights) at the end of the run. */
  layerSpectra: LayerSpectrum[]
  samples: Float32Array
  stepsPerSecond: number
  interrupted: boolean
}

export interface TrainHooks {
  onEval?: (record: EvalRecord) => void
  /** A step the device has finished (reported as fences resolve: not every step number is reported). */
  onStep?: (step: number) => void
  shouldStop?: () => boolean
  /** @internal Called with the run's parts after its last step, before they are freed (tests read the state). */
  atEnd?: (parts: GanCheckpointParts) => Promise<void>
}

// Distinct, reproducible seeds for every random draw of the run.
const seedOf = (run: number, step: number, stream: number) => ((run * 1_000_003 + step * 31 + stream) >>> 0) % 2 ** 31

type PartsConfig = Pick<TrainConfig, 'norm' | 'scale' | 'seed' | 'lr' | 'betas'>

/** The networks, their normalization and optimizers of a run, as a checkpoint holds them. */
function buildGanParts(config: PartsConfig, networks: GanNetworks, device: Device): Required<Pick<GanCheckpointParts, 'generator' | 'discriminator' | 'optG' | 'optD'>> & GanCheckpointParts {
  const { generator, discriminator } = networks.build(device, seedOf(config.seed, 0, 1))
  const scaled = config.norm === 'ssn' || config.norm === 'bssn'
  const normalization = config.norm === 'none' ? undefined : new SpectralNorm(discriminator, { mode: config.norm, scale: scaled ? config.scale : 1, seed: config.seed })
  const optG = new Adam(generator.parameters(), { lr: config.lr, betas: config.betas })
  const optD = new Adam(discriminator.parameters(), { lr: config.lr, betas: config.betas })
  return { generator, discriminator, optG, optD, normalization }
}

const disposeParts = (p: GanCheckpointParts) => [p.normalization, p.optG, p.optD, p.generator, p.discriminator].forEach((x) => x?.dispose())

/**
 * Checks, on the CPU and before anything else is done, that `file` can resume a run of `config` on `networks`: the
 * checks loadGanCheckpoint makes (ERR_BSSN_BAD_CHECKPOINT), and the records of its metrics.jsonl. Returns its step
 * and saved config.
 */
export async function checkResume(file: string, config: PartsConfig, networks: GanNetworks): Promise<{ step: number; config: Record<string, unknown> }> {
  const parts = buildGanParts(config, networks, Device.cpu())
  try {
    const saved = await checkGanCheckpoint(file, parts)
    readHistory(file, saved.step)
    return saved
  } finally {
    disposeParts(parts)
  }
}

/** The records of the run's metrics.jsonl (beside its checkpoint) up to `step`; none when it has none. */
function readHistory(checkpoint: string, step: number): EvalRecord[] {
  const file = path.join(path.dirname(checkpoint), 'metrics.jsonl')
  if (!existsSync(file)) return []
  const records: EvalRecord[] = []
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return
      let record: unknown
      try {
        record = JSON.parse(line)
      } catch {}
      const s = (record as { step?: unknown } | undefined)?.step
      if (typeof record !== 'object' || record === null || !Number.isSafeInteger(s))
        throw bssnError(`${file} line ${i + 1} is not a metrics record (a JSON object with a step): move the file away to resume without the earlier records`, 'ERR_BSSN_BAD_CHECKPOINT')
      if ((s as number) <= step) records.push(record as EvalRecord)
    })
  return records
}

// In a data-parallel run, how often the ranks agree on whether to stop (a stop asked of some ranks only must not
// leave the others waiting in a collective): every this many steps, at the cost of one tiny all-reduce and read.
const STOP_VOTE_EVERY = 10

export async function trainGan(config: TrainConfig, hooks: TrainHooks = {}): Promise<TrainResult> {
  const { device, task } = config
  const pg = config.distributed
  const world = pg?.worldSize ?? 1
  if (pg && !pg.device.equals(device)) throw typeError(`config.device (${device.name}) is not the process group's device (${pg.device.name})`)
  if (config.batch % world !== 0) throw rangeError(`the global batch (${config.batch}) must split evenly over ${world} ranks`)
  // This rank's rows of every global batch; rank 0 alone writes the run's files.
  const share = config.batch / world
  const rows: [number, number] | undefined = pg ? [pg.rank * share, (pg.rank + 1) * share] : undefined
  const lead = !pg || pg.rank === 0
  const out = lead ? config.out : undefined
  const parts = buildGanParts(config, task, device)
  const { generator: G, discriminator: D, optG, optD, normalization: sn } = parts
  const scaled = config.norm === 'ssn' || config.norm === 'bssn'
  const dLayers = D.modules().filter(isNormalizable)
  const evalZ = keep(device.randn([config.evalSamples, task.zDim], { seed: seedOf(config.seed, 0, 3) }))
  const history: EvalRecord[] = []
  const metricsFile = out ? path.join(out, 'metrics.jsonl') : undefined
  let step = 0
  const ddp: DistributedDataParallel[] = []
  try {
    if (config.resume && lead) {
      step = (await loadGanCheckpoint(config.resume, parts)).step
      // Keep the records of the steps the checkpoint covers (from the metrics beside it: the run may go elsewhere).
      history.push(...readHistory(config.resume, step))
    }
    if (pg) {
      // Rank 0's state (a fresh start or the checkpoint it read) on every rank; from here the ranks stay equal.
      step = await broadcastTrainingState(pg, parts, step)
      for (const m of [D, G]) ddp.push(new DistributedDataParallel(m, pg, { bucketBytes: config.bucketBytes }))
    }
  } catch (e) {
    ddp.forEach((d) => d.dispose())
    evalZ.dispose()
    disposeParts(parts)
    throw e
  }
  if (out) {
    mkdirSync(out, { recursive: true })
    writeFileSync(metricsFile!, history.map((r) => JSON.stringify(r) + '\n').join(''))
  }
  const checkpointFile = out ? path.join(out, 'checkpoint.safetensors') : undefined
  const { device: _device, task: _task, resume: _resume, distributed: _distributed, ...savedConfig } = config
  const runConfig = { ...savedConfig, dataset: task.dataset, architecture: task.architecture }
  // Written beside and renamed over the last one, so an abort mid-write keeps the last complete checkpoint.
  const checkpoint = async () => {
    if (!checkpointFile || !config.checkpointEvery) return
    // Only a state every rank agreed on is saved: a failed collective (a rank died) leaves the last checkpoint alone.
    await pg?.synchronize()
    await saveGanCheckpoint(`${checkpointFile}.partial`, parts, step, runConfig)
    renameSync(`${checkpointFile}.partial`, checkpointFile)
  }
  const stepper = new GanStepper(
    {
      generator: G,
      discriminator: D,
      optG,
      optD,
      normalization: sn,
      nDis: config.nDis,
      zShape: [config.batch, task.zDim],
      zRows: rows,
      zSeed: (s, draw) => seedOf(config.seed, s, 10 + draw),
      sampleReal: (s, draw) => task.sampleReal(device, config.batch, seedOf(config.seed, s, 100 + draw), rows),
    },
    // The all-reduce runs on a second stream, which a captured step would have to fork and join: eager for now.
    { capture: pg ? false : config.capture },
  )
  // A captured step's losses are the graph's outputs (overwritten by the next step, never disposed here).
  const release = (losses: { lossD: Tensor; lossG: Tensor; captured: boolean } | undefined) => {
    if (losses && !losses.captured) [losses.lossD, losses.lossG].forEach((t) => t.dispose())
  }
  let gradSquares: Tensor[] = []
  const start = performance.now()
  const startStep = step
  let interrupted = false
  let unevaluated: { lossD: Tensor; lossG: Tensor; captured: boolean } | undefined
  const record = (r: EvalRecord) => {
    history.push(r)
    if (metricsFile) appendFileSync(metricsFile, JSON.stringify(r) + '\n')
    hooks.onEval?.(r)
  }
  let lastYield = start
  const ahead: Array<Promise<unknown>> = [] // data-parallel: fences of the steps the device has not yet finished
  // Progress counts steps the device has finished, not steps enqueued (the queue may run ahead of the device):
  // one fence in flight at a time, reporting the step it follows when it resolves.
  let fenceInFlight = false
  const reportFinished = (enqueued: number) => {
    if (!hooks.onStep || fenceInFlight) return
    fenceInFlight = true
    device.synchronize().then(
      () => {
        fenceInFlight = false
        hooks.onStep?.(enqueued)
      },
      () => (fenceInFlight = false),
    )
  }
  try {
    while (step < config.steps) {
      pg?.check()
      if (pg ? step % STOP_VOTE_EVERY === 0 && (await stopVote(pg, hooks.shouldStop?.() ?? false)) : hooks.shouldStop?.()) {
        interrupted = true
        break
      }
      step++
      const evaluating = step % config.evalEvery === 0 || step === config.steps
      const losses = stepper.step(step, {
        afterDiscriminatorBackward: evaluating && lead
          ? () => {
              gradSquares.forEach((t) => t.dispose())
              gradSquares = dLayers.map((l) => keep(noGrad(() => sum(mul(l.weight.grad!, l.weight.grad!)))))
            }
          : undefined,
      })
      reportFinished(step)
      if (pg) {
        // At most two steps ahead of the device: a collective that hangs (a peer died unseen) stalls the stream, and
        // a loop far ahead would block in a native wait (an upload's staging memory, say) where the watchdog, a
        // timer, could never run to abort it. Awaiting a fence keeps the event loop free.
        ahead.push(device.synchronize().then(() => undefined, (e: unknown) => e))
        if (ahead.length > 2) {
          const failed = await ahead.shift()
          pg.check()
          if (failed) throw failed
        }
      }
      // The loop enqueues without waiting; yielding now and then lets fences report progress and messages arrive.
      if (performance.now() - lastYield > 50) {
        await new Promise((resolve) => setImmediate(resolve))
        lastYield = performance.now()
      }
      if (config.checkpointEvery && step % config.checkpointEvery === 0) await checkpoint()
      release(unevaluated)
      unevaluated = undefined
      if (!evaluating) {
        unevaluated = losses // kept for an evaluation at an interruption
        continue
      }
      await evaluateOn(step, losses)
    }
    if (config.checkpointEvery && step % config.checkpointEvery !== 0) await checkpoint()
    // An interrupted run is evaluated where it stopped, after its checkpoint (the gradient norms unknown), so its metrics end there.
    if (unevaluated) {
      gradSquares.forEach((t) => t.dispose())
      gradSquares = []
      const losses = unevaluated
      unevaluated = undefined
      await evaluateOn(step, losses)
    }
    // Every collective of the run completed: a rank that died at the end fails the run here, not silently.
    await pg?.synchronize()
    await hooks.atEnd?.(parts)
    const samples = await tidy(() => noGrad(() => G.forward(evalZ))).toArray()
    hooks.onStep?.(step)  // everything before the samples has run
    const seconds = (performance.now() - start) / 1000
    return {
      config: { ...runConfig, device: device.name },
      history,
      layerShapes: dLayers.map((l) => [...l.weight.shape]),
      layerSpectra: await Promise.all(dLayers.map(async (l) => topSingularValues(await l.weight.toArray(), l.weight.shape))),
      samples,
      stepsPerSecond: (step - startStep) / Math.max(seconds, 1e-9),
      interrupted,
    }
  } finally {
    release(unevaluated)
    gradSquares.forEach((t) => t.dispose())
    evalZ.dispose()
    stepper.dispose()
    ddp.forEach((d) => d.dispose())
    disposeParts(parts)
  }

  // The losses are averaged over the ranks (each rank's are its share's); rank 0 alone judges and records.
  async function evaluateOn(step: number, losses: { lossD: Tensor; lossG: Tensor; captured: boolean }): Promise<void> {
    pg?.allReduce([losses.lossD, losses.lossG], 'avg')
    if (lead) record(await evaluate(step, losses))
    else release(losses)
  }

  async function evaluate(step: number, losses: { lossD: Tensor; lossG: Tensor; captured: boolean }): Promise<EvalRecord> {
    const { lossD, lossG } = losses
    const samples = tidy(() => noGrad(() => G.forward(evalZ)))
    const sigmas = sn ? await sn.sigmas() : undefined
    const weights = dLayers.map((l) => l.effectiveWeight) // the normalized weights under a normalization
    const [points, ld, lg, grads, normalized] = await Promise.all([
      samples.toArray(),
      lossD.toArray(),
      lossG.toArray(),
      Promise.all(gradSquares.map((t) => t.toArray())),
      Promise.all(weights.map((w) => w.toArray())),
    ])
    samples.dispose()
    release(losses)
    const quality = task.quality(points, config.evalSamples)
    const layers = dLayers.map((l, i): LayerDiagnostics => {
      const w = normalized[i]
      let s = 0
      let ss = 0
      for (const x of w) {
        s += x
        ss += x * x
      }
      const mean = s / w.length
      const [m, n] = [l.weight.shape[0], l.weight.size / l.weight.shape[0]]
      return {
        gradNorm: grads[i] ? Math.sqrt(grads[i][0]) : NaN, // NaN (null in JSON): not measured at this step
        variance: ss / w.length - mean * mean,
        bound: 1 / Math.max(m, n),
        sigma1: sigmas?.[i].sigma1,
        sigma2: sigmas?.[i].sigma2,
        divisor: sigmas?.[i].divisor,
        effective: sigmas ? ((scaled ? config.scale : 1) * sigmas[i].sigma1) / sigmas[i].divisor : undefined,
      }
    })
    return {
      step,
      seconds: (performance.now() - start) / 1000,
      lossD: ld[0],
      lossG: lg[0],
      ...quality,
      layers,
    }
  }
}

/** Whether any rank asked to stop (every rank calls it at the same steps and gets the same answer). */
async function stopVote(pg: ProcessGroup, stop: boolean): Promise<boolean> {
  const flag = keep(pg.device.tensor(new Float32Array([stop ? 1 : 0]), [1]))
  try {
    pg.allReduce(flag, 'sum')
    return (await flag.toArray())[0] > 0
  } finally {
    flag.dispose()
  }
}
