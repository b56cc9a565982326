// Training a GAN (a task: data, networks, quality measure) with a chosen discriminator normalization,
// recording what the BSSN paper plots: sample quality over training, and per discriminator layer the gradient
// norm, the variance of the normalized weight against its bound 1/max(m, n), and sigma1 / sigma2.
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'

import { keep, tidy } from '../autograd/scope.js'
import { noGrad } from '../autograd/tape.js'
import type { Device } from '../device.js'
import { mul, sum } from '../nn/functional.js'
import { isNormalizable } from '../nn/module.js'
import { SpectralNorm } from '../nn/spectral_norm.js'
import type { NormalizationMode } from '../normalize/options.js'
import type { Tensor } from '../tensor.js'
import { Adam } from './adam.js'
import { loadGanCheckpoint, saveGanCheckpoint } from './checkpoint.js'
import { ganStep } from './gan_step.js'
import type { GanTask, Quality } from './tasks.js'
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
}

// Distinct, reproducible seeds for every random draw of the run.
const seedOf = (run: number, step: number, stream: number) => ((run * 1_000_003 + step * 31 + stream) >>> 0) % 2 ** 31

export async function trainGan(config: TrainConfig, hooks: TrainHooks = {}): Promise<TrainResult> {
  const { device, task } = config
  const { generator: G, discriminator: D } = task.build(device, seedOf(config.seed, 0, 1))
  const scaled = config.norm === 'ssn' || config.norm === 'bssn'
  const sn = config.norm === 'none' ? undefined : new SpectralNorm(D, { mode: config.norm, scale: scaled ? config.scale : 1, seed: config.seed })
  const optG = new Adam(G.parameters(), { lr: config.lr, betas: config.betas })
  const optD = new Adam(D.parameters(), { lr: config.lr, betas: config.betas })
  const dLayers = D.modules().filter(isNormalizable)
  const evalZ = keep(device.randn([config.evalSamples, task.zDim], { seed: seedOf(config.seed, 0, 3) }))
  const history: EvalRecord[] = []
  const metricsFile = config.out ? path.join(config.out, 'metrics.jsonl') : undefined
  const parts = { generator: G, discriminator: D, optG, optD, normalization: sn }
  let step = 0
  if (config.resume) {
    step = loadGanCheckpoint(config.resume, parts).step
    // Keep the records of the steps the checkpoint covers.
    if (metricsFile && existsSync(metricsFile))
      for (const line of readFileSync(metricsFile, 'utf8').split('\n'))
        if (line.trim()) {
          const record = JSON.parse(line) as EvalRecord
          if (record.step <= step) history.push(record)
        }
  }
  if (config.out) {
    mkdirSync(config.out, { recursive: true })
    writeFileSync(metricsFile!, history.map((r) => JSON.stringify(r) + '\n').join(''))
  }
  const checkpointFile = config.out ? path.join(config.out, 'checkpoint.safetensors') : undefined
  const { device: _device, task: _task, resume: _resume, ...savedConfig } = config
  const runConfig = { ...savedConfig, dataset: task.dataset, architecture: task.architecture }
  // Written beside and renamed over the last one, so an abort mid-write keeps the last complete checkpoint.
  const checkpoint = async () => {
    if (!checkpointFile || !config.checkpointEvery) return
    await saveGanCheckpoint(`${checkpointFile}.partial`, parts, step, runConfig)
    renameSync(`${checkpointFile}.partial`, checkpointFile)
  }
  let gradSquares: Tensor[] = []
  const start = performance.now()
  const startStep = step
  let interrupted = false
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
      if (hooks.shouldStop?.()) {
        interrupted = true
        break
      }
      step++
      const evaluating = step % config.evalEvery === 0 || step === config.steps
      let draw = 0
      const { lossD, lossG } = ganStep({
        generator: G,
        discriminator: D,
        optG,
        optD,
        normalization: sn,
        nDis: config.nDis,
        sampleZ: () => device.randn([config.batch, task.zDim], { seed: seedOf(config.seed, step, 10 + draw++) }),
        sampleReal: () => task.sampleReal(device, config.batch, seedOf(config.seed, step, 100 + draw++)),
        afterDiscriminatorBackward: evaluating
          ? () => {
              gradSquares.forEach((t) => t.dispose())
              gradSquares = dLayers.map((l) => keep(noGrad(() => sum(mul(l.weight.grad!, l.weight.grad!)))))
            }
          : undefined,
      })
      reportFinished(step)
      if (config.checkpointEvery && step % config.checkpointEvery === 0) await checkpoint()
      if (!evaluating) {
        lossD.dispose()
        lossG.dispose()
        continue
      }
      const record = await evaluate(step, lossD, lossG)
      history.push(record)
      if (metricsFile) appendFileSync(metricsFile, JSON.stringify(record) + '\n')
      hooks.onEval?.(record)
    }
    if (config.checkpointEvery && step % config.checkpointEvery !== 0) await checkpoint()
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
    gradSquares.forEach((t) => t.dispose())
    evalZ.dispose()
    sn?.dispose()
    ;[optG, optD, G, D].forEach((x) => x.dispose())
  }

  async function evaluate(step: number, lossD: Tensor, lossG: Tensor): Promise<EvalRecord> {
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
    lossD.dispose()
    lossG.dispose()
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
        gradNorm: Math.sqrt(grads[i]?.[0] ?? 0),
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
