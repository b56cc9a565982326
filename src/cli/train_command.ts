// `bssn train` and `bssn compare`: GANs with the chosen discriminator normalizations over one or more seeds,
// trained in worker threads, with metrics.jsonl and a checkpoint per run and one report.html.
//
// Every input is checked before anything is created. Results go to a staging folder beside --out that is
// renamed into place at the end, so a failed run never leaves a half-written --out nor wipes an older one.
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import { writeImageGrid } from '../data/images.js'
import { mixtures } from '../data/toy2d.js'
import { packageRoot } from '../native.js'
import { readSafetensors } from '../train/safetensors.js'
import { datasetHelp, imageArchSize, type ImageArch } from '../train/tasks.js'
import type { NormChoice, TrainResult } from '../train/trainer.js'
import { UsageError } from './args.js'
import { writeChartPngs } from './chart_png.js'
import { normLabel, writeReport, type ReportEnvironment, type ReportSubject } from './report.js'
import type { WorkerConfig } from './train_worker.js'

export const norms: readonly NormChoice[] = ['none', 'sn', 'ssn', 'bsn', 'bssn']
export const archs = ['mlp', 'dcgan16', 'sngan'] as const

/** Defaults that depend on the networks: the small CNN is sized for 2 CPU cores. */
export const archDefaults: Record<(typeof archs)[number], { steps: number; batch: number; evalEvery: number; evalSamples: number }> = {
  mlp: { steps: 2000, batch: 256, evalEvery: 100, evalSamples: 2500 },
  dcgan16: { steps: 500, batch: 32, evalEvery: 50, evalSamples: 256 },
  sngan: { steps: 2000, batch: 64, evalEvery: 100, evalSamples: 256 },
}

export interface TrainCommandOptions {
  command: 'train' | 'compare'
  norms: NormChoice[]
  scale: number
  dataset: string
  arch: string
  steps?: number
  batch?: number
  lr: number
  betas: [number, number]
  nDis: number
  seeds: number[]
  device: string
  /** The resolved device: CPU runs share the cores (at most one run per core at a time). */
  deviceKind: 'cpu' | 'cuda'
  deviceName: string
  /** undefined: runs/<command>-<dataset> (or -2, -3, ... when that is taken). */
  out?: string
  force: boolean
  evalEvery?: number
  width: number
  checkpointEvery: number
  evalSamples?: number
  resume?: string
  print: (line: string) => void
  progress: boolean
  /** Installs the SIGINT / SIGTERM handlers (the CLI does). */
  handleSignals?: boolean
}

interface RunSpec {
  norm: NormChoice
  seed: number
  dir: string
}

/** The dataset's name as a task records it in checkpoints. */
function datasetName(spec: string): string {
  if (spec.startsWith('cifar10:')) return 'cifar10'
  if (spec.startsWith('png:')) return `png:${path.basename(spec.slice(4))}`
  return spec
}

/** A dataset path that is missing or of the wrong kind, said in the user's terms. */
function checkDatasetPath(spec: string): void {
  const [kind, location] = [spec.slice(0, spec.indexOf(':')), spec.slice(spec.indexOf(':') + 1)]
  const expected = kind === 'cifar10' ? "CIFAR-10's binary version: a folder with data_batch_*.bin, or one such file" : 'a folder of .png files'
  if (!existsSync(location)) throw new UsageError(`--dataset ${spec}: '${location}' does not exist (expected ${expected})`)
  const isDir = statSync(location).isDirectory()
  if (kind === 'png' && !isDir) throw new UsageError(`--dataset ${spec}: '${location}' is a file (expected ${expected})`)
  if (isDir) {
    const files = readdirSync(location)
    const ok = kind === 'cifar10' ? files.some((f) => /^data_batch_\d+\.bin$/.test(f)) : files.some((f) => f.toLowerCase().endsWith('.png'))
    if (!ok) throw new UsageError(`--dataset ${spec}: '${location}' has no ${kind === 'cifar10' ? 'data_batch_*.bin files' : '.png files'} (expected ${expected})`)
  }
}

const isNonEmptyDir = (dir: string) => existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0)

function environment(deviceName: string, command: string): ReportEnvironment {
  let version = 'unknown'
  try {
    version = (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version
  } catch {}
  const git = spawnSync('git', ['describe', '--always', '--dirty', '--abbrev=12'], { cwd: packageRoot, encoding: 'utf8' })
  const commit = git.status === 0 ? git.stdout.trim() : 'unknown (not a git checkout)'
  return { version, commit, device: deviceName, date: new Date().toISOString(), node: process.version, command }
}

export async function runTraining(o: TrainCommandOptions): Promise<TrainResult[]> {
  // 1. Every input, before anything is created.
  const is2d = o.dataset in mixtures
  if (!is2d && !(o.dataset === 'shapes' || /^(cifar10|png):.+/.test(o.dataset))) throw new UsageError(`--dataset must be one of ${datasetHelp}, got '${o.dataset}'`)
  if (!(archs as readonly string[]).includes(o.arch) && o.arch !== 'auto') throw new UsageError(`--arch must be auto, ${archs.join(', ')}, got '${o.arch}'`)
  const arch = (o.arch === 'auto' ? (is2d ? 'mlp' : o.dataset === 'shapes' ? 'dcgan16' : 'sngan') : o.arch) as (typeof archs)[number]
  if (is2d !== (arch === 'mlp')) throw new UsageError(`--arch must be ${is2d ? 'mlp for 2-D data' : 'dcgan16 (16x16) or sngan (32x32) for images'}, got '${o.arch}'`)
  if (o.norms.length === 0) throw new UsageError('--norms is empty: name at least one of ' + norms.join(', '))
  for (const n of o.norms) if (!norms.includes(n)) throw new UsageError(`--norm must be one of ${norms.join(', ')}, got '${n}'`)
  const dup = o.norms.find((n, i) => o.norms.indexOf(n) !== i)
  if (dup) throw new UsageError(`--norms names '${dup}' twice`)
  if (o.seeds.length === 0) throw new UsageError('--seeds is empty')
  const dupSeed = o.seeds.find((s, i) => o.seeds.indexOf(s) !== i)
  if (dupSeed !== undefined) throw new UsageError(`--seeds names ${dupSeed} twice`)
  if (!(o.scale > 0) || !Number.isFinite(o.scale)) throw new UsageError(`--scale must be a number > 0 (the constant c), got ${o.scale}`)
  if (!is2d && o.dataset !== 'shapes') checkDatasetPath(o.dataset)
  const d = archDefaults[arch]
  const steps = o.steps ?? d.steps
  const batch = o.batch ?? d.batch
  const evalEvery = o.evalEvery ?? d.evalEvery
  const evalSamples = o.evalSamples ?? d.evalSamples
  if (!is2d && evalSamples <= 3) throw new UsageError(`--eval-samples must be at least 4 for images (k-NN precision/recall with k = 3), got ${evalSamples}`)
  const imageArch: ImageArch = arch === 'mlp' ? 'sngan' : arch
  const architecture = arch === 'mlp' ? `mlp(width=${o.width})` : arch === 'dcgan16' ? 'dcgan16(channels=16)' : 'sngan'

  let out: string
  let resumeStep = 0
  if (o.resume) {
    if (o.norms.length !== 1 || o.seeds.length !== 1) throw new UsageError('--resume continues one run: use it with train (one --norm, one --seed)')
    if (!existsSync(o.resume) || !statSync(o.resume).isFile()) throw new UsageError(`--resume: no such checkpoint '${o.resume}' (expected the checkpoint.safetensors of a run)`)
    let saved: { step: number; config: Record<string, unknown> }
    try {
      const { metadata } = readSafetensors(o.resume)
      if (metadata.format !== 'bssn-gan-1') throw new Error(`format '${metadata.format ?? 'none'}', expected 'bssn-gan-1'`)
      saved = { step: Number(metadata.step), config: JSON.parse(metadata.config ?? '{}') as Record<string, unknown> }
    } catch (error) {
      throw new UsageError(`--resume: ${o.resume} is not a bssn checkpoint we can read: ${error instanceof Error ? error.message : String(error)}`)
    }
    const want: Record<string, unknown> = { dataset: datasetName(o.dataset), norm: o.norms[0], batch, architecture, seed: o.seeds[0], nDis: o.nDis }
    if (o.norms[0] === 'ssn' || o.norms[0] === 'bssn') want.scale = o.scale
    const mismatches = Object.entries(want)
      .filter(([k, v]) => saved.config[k] !== undefined && saved.config[k] !== v)
      .map(([k, v]) => `${k} ${JSON.stringify(saved.config[k])} in the checkpoint, ${JSON.stringify(v)} asked`)
    if (mismatches.length) throw new UsageError(`--resume: ${o.resume} was trained with another configuration: ${mismatches.join('; ')}. Give the flags of the run it saved.`)
    if (steps <= saved.step) throw new UsageError(`--resume: the checkpoint is at step ${saved.step}; --steps (${steps}) must be above it`)
    resumeStep = saved.step
    // The run's folder is <out>/<norm>/seed-<seed>/: continue there unless told otherwise.
    out = o.out ?? path.dirname(path.dirname(path.dirname(path.resolve(o.resume))))
  } else if (o.out !== undefined) {
    if (existsSync(o.out) && !statSync(o.out).isDirectory()) throw new UsageError(`--out '${o.out}' is a file, not a folder`)
    if (isNonEmptyDir(o.out) && !o.force) throw new UsageError(`--out '${o.out}' exists and is not empty: choose another folder, or pass --force to replace it once this run has finished`)
    out = o.out
  } else {
    const base = path.join('runs', `${o.command}-${o.dataset.replace(/[^A-Za-z0-9_.-]+/g, '_')}`)
    out = base
    for (let k = 2; isNonEmptyDir(out); k++) out = `${base}-${k}`
  }

  // 2. The runs, in a staging folder renamed into place at the end, so a failed run never leaves a half-written
  // folder nor touches an older one. A resumed run continues in a copy of its folder.
  const stage = path.join(path.dirname(out), `.${path.basename(out)}.partial`)
  rmSync(stage, { recursive: true, force: true })
  if (o.resume && existsSync(out)) cpSync(out, stage, { recursive: true })
  mkdirSync(stage, { recursive: true })
  const label = (n: NormChoice) => normLabel(n, o.scale)
  const specs: RunSpec[] = o.norms.flatMap((norm) => o.seeds.map((seed) => ({ norm, seed, dir: path.join(norm, `seed-${seed}`) })))
  const runName = (s: RunSpec) => `${label(s.norm)} seed ${s.seed}`
  if (o.resume) o.print(`resuming from step ${resumeStep}: ${o.resume}`)
  o.print(
    `training ${o.norms.map(label).join(', ')} x seed${o.seeds.length > 1 ? 's' : ''} ${o.seeds.join(', ')} on ${o.dataset} (${architecture}): ${steps} steps, batch ${batch}, Adam ${o.lr} (${o.betas.join(', ')}), n_dis ${o.nDis}, device ${o.deviceName} -> ${out}`,
  )
  if (is2d && o.norms.includes('ssn') && o.norms.includes('bssn'))
    o.print('note: on fully connected layers W2 = W1^T, so bssn equals ssn exactly here; --dataset shapes has a convolutional discriminator, where they differ')

  const progress = new Map<RunSpec, number>()
  const start = Date.now()
  const total = (steps - resumeStep) * specs.length
  let warned = false
  let drawn = false
  const showProgress = () => {
    const done = [...progress.values()].reduce((a, b) => a + b, 0)
    const seconds = (Date.now() - start) / 1000
    const eta = done ? (seconds / done) * (total - done) : 0
    if (!warned && o.deviceKind === 'cpu' && done > 0 && seconds > 20 && eta > 3600) {
      warned = true
      clearLine()
      o.print(`warning: at ${(done / seconds).toFixed(2)} steps/s this will take about ${(eta / 3600).toFixed(1)} hours on the CPU; fewer --steps, --arch dcgan16 or a GPU would be quicker (Ctrl-C stops it cleanly)`)
    }
    if (!o.progress) return
    const width = 30
    const filled = Math.round((done / Math.max(total, 1)) * width)
    process.stdout.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} steps, ${(done / Math.max(seconds, 1e-3)).toFixed(1)} steps/s, ETA ${eta.toFixed(0)} s  `)
    drawn = true
  }
  const clearLine = () => {
    if (drawn) process.stdout.write('\r\x1b[K')
    drawn = false
  }

  const active = new Set<Worker>()
  let stopping = false
  let signals = 0
  const onSignal = (signal: NodeJS.Signals) => {
    signals++
    clearLine()
    if (signals === 1) {
      stopping = true
      o.print(`\ninterrupted (${signal}): finishing the current step of each run, then writing checkpoints, metrics and the report; ${signal === 'SIGINT' ? 'Ctrl-C' : 'a second signal'} again aborts at once`)
      active.forEach((w) => w.postMessage('stop'))
    } else {
      o.print(`\naborted (${signal} again): stopped at once without a report; the last complete checkpoints are in ${stage}`)
      // Workers are stopped first: exiting under a running native call would crash the process instead.
      void Promise.all([...active].map((w) => w.terminate())).finally(() => process.exit(130))
    }
  }
  if (o.handleSignals) {
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  }
  let real: { pixels: Float32Array; count: number } | undefined
  const runOne = (spec: RunSpec) =>
    new Promise<TrainResult>((resolve, reject) => {
      const config: WorkerConfig = {
        norm: spec.norm,
        scale: o.scale,
        dataset: o.dataset,
        arch: imageArch,
        steps,
        batch,
        lr: o.lr,
        betas: o.betas,
        nDis: o.nDis,
        seed: spec.seed,
        width: o.width,
        evalEvery,
        evalSamples,
        device: o.device,
        out: path.join(stage, spec.dir),
        checkpointEvery: o.checkpointEvery,
        resume: o.resume,
      }
      const worker = new Worker(new URL('./train_worker.js', import.meta.url), { workerData: config })
      active.add(worker)
      let settled = false
      worker.on('message', (m: { type: string; step?: number; record?: TrainResult['history'][number]; result?: TrainResult; real?: typeof real }) => {
        if (m.type === 'step') {
          progress.set(spec, m.step! - resumeStep)
          showProgress()
        } else if (m.type === 'eval') {
          clearLine()
          o.print(`${runName(spec)} step ${m.record!.step}: ${qualityText(m.record!)}, loss D ${m.record!.lossD.toFixed(3)}`)
          showProgress()
        } else if (m.type === 'done') {
          settled = true
          real ??= m.real
          resolve(m.result!)
        }
      })
      worker.on('error', (e) => {
        settled = true
        reject(e)
      })
      worker.on('exit', (code) => {
        active.delete(worker)
        if (!settled) reject(new Error(`training run ${runName(spec)} exited with ${code}`))
      })
    })

  try {
    // CPU runs share the cores: at most one per core at a time. CUDA runs all start at once.
    const concurrency = o.deviceKind === 'cpu' ? Math.max(1, availableParallelism()) : specs.length
    const results: Array<TrainResult | undefined> = new Array(specs.length)
    let next = 0
    const lane = async () => {
      while (next < specs.length && !stopping) {
        const i = next++
        results[i] = await runOne(specs[i])
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, specs.length) }, lane))
    clearLine()
    const done = results.filter((r): r is TrainResult => r !== undefined)
    const skipped = specs.filter((_, i) => !results[i])
    if (skipped.length) o.print(`not started (interrupted): ${skipped.map(runName).join(', ')}`)

    // 3. Report, charts and samples, then the folder into place.
    const subject: ReportSubject = is2d
      ? { kind: '2d', dataset: o.dataset, architecture, mixture: mixtures[o.dataset as keyof typeof mixtures] }
      : { kind: 'image', dataset: o.dataset, architecture, imageSize: imageArchSize[imageArch], real }
    const env = environment(o.deviceName, `bssn ${process.argv.slice(2).join(' ')}`.trim())
    const title = `bssn: ${o.norms.map(label).join(' vs ')} on ${o.dataset}`
    const charts = writeReport(path.join(stage, 'report.html'), done, subject, title, env)
    writeChartPngs(path.join(stage, 'charts'), charts)
    for (const r of done) {
      const dir = path.join(stage, r.config.norm, `seed-${r.config.seed}`)
      if (!is2d) writeImageGrid(path.join(dir, 'samples.png'), r.samples, Math.min(64, r.samples.length / (3 * imageArchSize[imageArch] ** 2)), imageArchSize[imageArch], 8)
    }
    if (!is2d && real) writeImageGrid(path.join(stage, 'real.png'), real.pixels, real.count, imageArchSize[imageArch], 8)
    const old = existsSync(out) ? path.join(path.dirname(out), `.${path.basename(out)}.old-${process.pid}`) : undefined
    if (old) renameSync(out, old)
    renameSync(stage, out)
    if (old) rmSync(old, { recursive: true, force: true })
    for (const r of done) {
      const h = r.history[r.history.length - 1]
      if (h) o.print(`${label(r.config.norm)} seed ${r.config.seed}: ${qualityText(h)} after ${h.step} steps (${r.stepsPerSecond.toFixed(1)} steps/s)`)
    }
    o.print(`report: ${path.join(out, 'report.html')} (charts as PNG in ${path.join(out, 'charts')})`)
    return done
  } catch (error) {
    // A failed run leaves no half-written folder behind; a resumed run's own folder was never touched.
    active.forEach((w) => void w.terminate())
    rmSync(stage, { recursive: true, force: true })
    throw error
  } finally {
    if (o.handleSignals) {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
}

function qualityText(r: TrainResult['history'][number]): string {
  return r.modes !== undefined
    ? `${r.modesCovered}/${r.modes} modes, ${(100 * (r.highQuality ?? 0)).toFixed(1)}% high quality`
    : `precision ${(r.precision ?? 0).toFixed(3)}, recall ${(r.recall ?? 0).toFixed(3)}`
}
