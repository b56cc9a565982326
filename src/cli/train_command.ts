// `bssn train` and `bssn compare`: GANs with the chosen discriminator normalizations over one or more seeds,
// trained in worker threads, with metrics.jsonl and a checkpoint per run and one report.html.
//
// Every input (a resumed checkpoint to its last value) is checked, then the run folder is claimed, before any
// work; results are staged inside the run folder and moved up at the end (run_folder.ts).
import { spawnSync } from 'node:child_process'
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import { CIFAR_RECORD, writeImageGrid } from '../data/images.js'
import { mixtures } from '../data/toy2d.js'
import { packageRoot } from '../native.js'
import { readGanCheckpoint } from '../train/checkpoint.js'
import { datasetHelp, imageArchSize, networksFor, type ImageArch } from '../train/tasks.js'
import { checkResume, type NormChoice, type TrainResult } from '../train/trainer.js'
import { UsageError } from './args.js'
import { writeChartPngs } from './chart_png.js'
import { RateEstimate } from './progress.js'
import { normLabel, writeReport, type ReportEnvironment, type ReportSubject } from './report.js'
import { abandonRunFolder, claimRunFolder, finishRunFolder, fsReason, type RunFolder } from './run_folder.js'
import type { WorkerConfig, WorkerMessage, WorkerRequest } from './train_worker.js'
import type { DistributedEnv } from '../distributed/env.js'

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
  /**
   * This process is one rank of a data-parallel run (torchrun's variables): the runs train on every rank, one after
   * another, on the global --batch; rank 0 alone prints, checks the checkpoint to resume and writes the run folder.
   */
  distributed?: DistributedEnv
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

/** A dataset path that is missing, unreadable or of the wrong kind, said in the user's terms (headers only: the data is read by the runs). */
function checkDatasetPath(spec: string): void {
  const [kind, location] = [spec.slice(0, spec.indexOf(':')), spec.slice(spec.indexOf(':') + 1)]
  const expected = kind === 'cifar10' ? "CIFAR-10's binary version: a folder with data_batch_*.bin, or one such file" : 'a folder of .png files'
  const unreadable = (what: string, error: unknown) => new UsageError(`--dataset ${spec}: '${what}' cannot be read (${fsReason(error)}): give a ${kind === 'png' ? 'folder' : 'path'} you can read`)
  if (!existsSync(location)) throw new UsageError(`--dataset ${spec}: '${location}' does not exist (expected ${expected})`)
  const isDir = statSync(location).isDirectory()
  if (kind === 'png' && !isDir) throw new UsageError(`--dataset ${spec}: '${location}' is a file (expected ${expected})`)
  let files = [location]
  if (isDir) {
    let names: string[]
    try {
      names = readdirSync(location)
    } catch (error) {
      throw unreadable(location, error)
    }
    files = names.filter((f) => (kind === 'cifar10' ? /^data_batch_\d+\.bin$/.test(f) : f.toLowerCase().endsWith('.png'))).map((f) => path.join(location, f))
    if (!files.length) throw new UsageError(`--dataset ${spec}: '${location}' has no ${kind === 'cifar10' ? 'data_batch_*.bin files' : '.png files'} (expected ${expected})`)
  }
  const head = Buffer.alloc(24)
  for (const file of files) {
    let got: number
    try {
      const fd = openSync(file, 'r')
      try {
        got = readSync(fd, head, 0, head.length, 0)
      } finally {
        closeSync(fd)
      }
    } catch (error) {
      throw unreadable(file, error)
    }
    if (kind === 'cifar10') {
      const size = statSync(file).size
      if (size === 0 || size % CIFAR_RECORD !== 0) throw new UsageError(`--dataset ${spec}: '${file}' has ${size} bytes, not a whole number of CIFAR-10 records (${CIFAR_RECORD} bytes each)`)
    } else if (got < 24 || !head.subarray(0, 8).equals(pngSignature) || head.toString('latin1', 12, 16) !== 'IHDR' || head.readUInt32BE(16) === 0 || head.readUInt32BE(20) === 0)
      throw new UsageError(`--dataset ${spec}: '${file}' is not a PNG image (its first bytes are not a PNG signature and header): remove it or convert it`)
  }
  const images = kind === 'cifar10' ? files.reduce((n, f) => n + Math.floor(statSync(f).size / CIFAR_RECORD), 0) : files.length
  if (images < 40) throw new UsageError(`--dataset ${spec}: ${images} images, but at least 40 are needed (a fifth is held out for evaluation)`)
}

const pngSignature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

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
  // A rank other than 0 trains and stays quiet: rank 0 speaks and writes for the run.
  const lead = !o.distributed || o.distributed.rank === 0
  if (!lead) o = { ...o, print: () => {}, progress: false }
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
  const world = o.distributed?.worldSize ?? 1
  if (batch % world !== 0) throw new UsageError(`--batch ${batch} must split evenly over the ${world} ranks (a multiple of ${world})`)
  const imageArch: ImageArch = arch === 'mlp' ? 'sngan' : arch
  const architecture = arch === 'mlp' ? `mlp(width=${o.width})` : arch === 'dcgan16' ? 'dcgan16(channels=16)' : 'sngan'

  let resumeStep = 0
  // Rank 0 reads the checkpoint and broadcasts it: the other ranks (on other machines, maybe) need no copy.
  if (o.resume && lead) {
    if (o.norms.length !== 1 || o.seeds.length !== 1) throw new UsageError('--resume continues one run: use it with train (one --norm, one --seed)')
    if (o.resume.trim() === '' || !existsSync(o.resume) || !statSync(o.resume).isFile()) throw new UsageError(`--resume: no such checkpoint '${o.resume}' (expected the checkpoint.safetensors of a run)`)
    const damaged = (error: unknown) => {
      const code = (error as { code?: string } | undefined)?.code
      return code === 'ERR_BSSN_BAD_CHECKPOINT' ? new UsageError(`--resume: ${error instanceof Error ? error.message : String(error)}`) : error
    }
    let saved: { step: number; config: Record<string, unknown> }
    try {
      saved = readGanCheckpoint(o.resume)
    } catch (error) {
      throw damaged(error)
    }
    const want: Record<string, unknown> = { dataset: datasetName(o.dataset), norm: o.norms[0], batch, architecture, seed: o.seeds[0], nDis: o.nDis }
    if (o.norms[0] === 'ssn' || o.norms[0] === 'bssn') want.scale = o.scale
    const mismatches = Object.entries(want)
      .filter(([k, v]) => saved.config[k] !== undefined && saved.config[k] !== v)
      .map(([k, v]) => `${k} ${JSON.stringify(saved.config[k])} in the checkpoint, ${JSON.stringify(v)} asked`)
    if (mismatches.length) throw new UsageError(`--resume: ${o.resume} was trained with another configuration: ${mismatches.join('; ')}. Give the flags of the run it saved.`)
    if (steps <= saved.step) throw new UsageError(`--resume: the checkpoint is at step ${saved.step}; --steps (${steps}) must be above it`)
    // Every tensor against the model it will be loaded into, and the metrics beside it, before anything is created.
    try {
      await checkResume(o.resume, { norm: o.norms[0], scale: o.scale, seed: o.seeds[0], lr: o.lr, betas: o.betas }, networksFor(o.dataset, o.width, imageArch))
    } catch (error) {
      throw damaged(error)
    }
    resumeStep = saved.step
  }

  let drawn = false
  const clearLine = () => {
    if (drawn) process.stdout.write('\r\x1b[K')
    drawn = false
  }

  // 2. The run folder, claimed before any work (a resumed run gets a new one too: it never writes beside its
  // checkpoint). Signals are handled from here on, so no signal leaves a half-made folder behind.
  const stopFlag = new Int32Array(new SharedArrayBuffer(4))
  const active = new Set<Worker>()
  let stopping = false
  let signals = 0
  let phase: 'training' | 'report' = 'training'
  let folder: RunFolder | undefined
  const onSignal = (signal: NodeJS.Signals) => {
    signals++
    clearLine()
    const again = signal === 'SIGINT' ? 'Ctrl-C again' : 'a second signal'
    if (signals === 1) {
      stopping = true
      Atomics.store(stopFlag, 0, 1) // read by every run between steps, whatever its event loop is doing
      o.print(
        phase === 'training'
          ? `\ninterrupted (${signal}): finishing the current step of each run, then writing checkpoints, metrics and the report; ${again} aborts at once`
          : `\ninterrupted (${signal}) while writing the report: finishing it; ${again} aborts at once`,
      )
    } else {
      o.print(`\naborted (${signal} again): stopped at once without a report; the last complete checkpoints are in ${folder?.stage ?? '(none yet)'}`)
      // Workers are stopped first: exiting under a running native call would crash the process instead.
      void Promise.all([...active].map((w) => w.terminate())).finally(() => process.exit(130))
    }
  }
  // A rank started by `--gpus`: the launcher's signals come as messages (the n-th one counts if this rank has had
  // fewer: a terminal's Ctrl-C reached it directly too), and the launcher's end (killed, terminal closed) stops it.
  const launched = Boolean(o.handleSignals && o.distributed && process.send)
  const onLauncher = (m: unknown) => {
    const s = m as { type?: string; signal?: NodeJS.Signals; count?: number } | undefined
    if (s?.type === 'bssn-stop' && (s.count ?? 0) > signals) onSignal(s.signal ?? 'SIGTERM')
  }
  const onOrphaned = () => signals === 0 && onSignal('SIGHUP')
  if (o.handleSignals) {
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  }
  if (launched) {
    process.on('message', onLauncher)
    process.on('disconnect', onOrphaned)
    process.channel?.unref() // the channel alone keeps no rank alive
  }
  try {
    if (!lead) return await trainInto(undefined)
    folder = claimRunFolder({ out: o.out, force: o.force, base: path.join('runs', `${o.command}-${o.dataset.replace(/[^A-Za-z0-9_.-]+/g, '_')}`) })
    return await trainInto(folder)
  } finally {
    if (o.handleSignals) {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
    if (launched) {
      process.off('message', onLauncher)
      process.off('disconnect', onOrphaned)
    }
  }

  // 3. The runs, written into the staging folder; then the report, and the results moved into place.
  // (A rank other than 0 has no folder: it trains, and its results are rank 0's.)
  async function trainInto(f: RunFolder | undefined): Promise<TrainResult[]> {
    const { out, stage } = f ?? { out: '', stage: '' }
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
    const estimate = new RateEstimate()
    const total = (steps - resumeStep) * specs.length
    let warned = false
    let lastLine: number | undefined
    const showProgress = () => {
      const done = [...progress.values()].reduce((a, b) => a + b, 0)
      estimate.update(done)
      const rate = estimate.rate
      const eta = estimate.eta(total)
      if (!warned && o.deviceKind === 'cpu' && rate !== undefined && estimate.seconds > 20 && eta! > 3600) {
        warned = true
        clearLine()
        o.print(`warning: at ${rate.toFixed(2)} steps/s this will take about ${(eta! / 3600).toFixed(1)} hours on the CPU; fewer --steps, --arch dcgan16 or a GPU would be quicker (Ctrl-C stops it cleanly)`)
      }
      const text = `${done}/${total} steps, ${rate === undefined ? '-' : rate.toFixed(1)} steps/s, ETA ${eta === undefined ? '-' : `${eta.toFixed(0)} s`}`
      if (o.progress) {
        const width = 30
        const filled = Math.round((done / Math.max(total, 1)) * width)
        process.stdout.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}  `)
        drawn = true
      } else if (rate !== undefined && (lastLine === undefined || performance.now() - lastLine >= 30_000)) {
        // Logs get a plain line: once the rate is known, then every 30 s.
        lastLine = performance.now()
        o.print(`progress: ${text}`)
      }
    }

    let real: { pixels: Float32Array; count: number } | undefined
    /** One run on `worker` (a lane's), to its result. */
    const runOn = (worker: Worker, spec: RunSpec) =>
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
          out: f ? path.join(stage, spec.dir) : undefined,
          checkpointEvery: o.checkpointEvery,
          resume: lead ? o.resume : undefined,
          // Each run meets the other ranks afresh; the token keeps another launch's ranks (or another run's) out.
          distributed: o.distributed ? { token: `${process.env.BSSN_RUN_TOKEN ?? `${o.distributed.masterAddr}:${o.distributed.masterPort}`}/${spec.norm}/${spec.seed}` } : undefined,
          stop: stopFlag,
        }
        const onMessage = (m: WorkerMessage) => {
          if (m.type === 'step') {
            progress.set(spec, m.step - resumeStep)
            showProgress()
          } else if (m.type === 'eval') {
            clearLine()
            o.print(`${runName(spec)} step ${m.record.step}: ${qualityText(m.record)}, loss D ${m.record.lossD.toFixed(3)}`)
            showProgress()
          } else {
            settle()
            if (m.type === 'done') {
              real ??= m.real
              resolve(m.result)
            } else reject(Object.assign(new Error(`${runName(spec)}: ${m.message}`), { code: m.code }))
          }
        }
        const onError = (e: Error) => {
          settle()
          reject(e)
        }
        const onExit = (code: number) => {
          settle()
          reject(new Error(`training run ${runName(spec)} exited with ${code}`))
        }
        const settle = () => {
          worker.off('message', onMessage)
          worker.off('error', onError)
          worker.off('exit', onExit)
        }
        worker.on('message', onMessage)
        worker.on('error', onError)
        worker.on('exit', onExit)
        worker.postMessage({ type: 'run', config } satisfies WorkerRequest)
      })

    // CPU runs share the cores: at most one per core at a time. CUDA runs all start at once. Each lane trains its
    // runs one after another in one worker thread.
    // A data-parallel run's runs take every rank's GPU, one after another.
    const concurrency = o.distributed ? 1 : o.deviceKind === 'cpu' ? Math.max(1, availableParallelism()) : specs.length
    const results: Array<TrainResult | undefined> = new Array(specs.length)
    let next = 0
    const lane = async () => {
      if (next >= specs.length || stopping) return
      const worker = new Worker(new URL('./train_worker.js', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 8 } })
      active.add(worker)
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
      let closed = false
      try {
        while (next < specs.length && !stopping) {
          const i = next++
          results[i] = await runOn(worker, specs[i])
          // A data-parallel run stopped by the ranks' vote stops every rank's later runs, signalled or not.
          if (results[i]!.interrupted) stopping = true
        }
        worker.postMessage({ type: 'close' } satisfies WorkerRequest)
        await exited
        closed = true
      } finally {
        // A failed run's worker would otherwise stay, idle, and keep the process alive.
        if (!closed) await worker.terminate()
        active.delete(worker)
      }
    }
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, specs.length) }, lane))
    } catch (error) {
      clearLine()
      await Promise.all([...active].map((w) => w.terminate()))
      const finished = specs.filter((_, i) => results[i])
      const code = (error as { code?: string } | undefined)?.code
      const message = error instanceof Error ? error.message : String(error)
      if (!f) throw error
      // Runs that finished keep their results; with none, the run leaves nothing behind, unless a failed data-parallel
      // run (a rank died) left checkpoints to resume from.
      if (finished.length) throw new Error(`${message}\nthe finished runs (${finished.map(runName).join(', ')}) have their checkpoints and metrics in ${stage}`)
      if (code === 'ERR_BSSN_COLLECTIVE_FAILED' && hasCheckpoint(stage))
        throw Object.assign(new Error(`${message}\nthe last complete checkpoints are in ${stage} (--resume continues from them, on any number of GPUs)`), { code })
      abandonRunFolder(f)
      throw code === 'ERR_BSSN_BAD_DATASET' ? new UsageError(message) : error
    }
    phase = 'report'
    clearLine()
    const done = results.filter((r): r is TrainResult => r !== undefined)
    if (!f) return done
    const skipped = specs.filter((_, i) => !results[i])
    if (skipped.length) o.print(`not started (interrupted): ${skipped.map(runName).join(', ')}`)

    // A failure from here on keeps the runs' results and says where they are.
    try {
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
    } catch (error) {
      throw new Error(`the report could not be written (${fsReason(error)}); the runs' checkpoints and metrics are in ${stage}`)
    }
    finishRunFolder(f, o.print)
    for (const r of done) {
      const h = r.history[r.history.length - 1]
      if (h) o.print(`${label(r.config.norm)} seed ${r.config.seed}: ${qualityText(h)} after ${h.step} steps (${r.stepsPerSecond.toFixed(1)} steps/s)`)
    }
    o.print(`report: ${path.join(out, 'report.html')} (charts as PNG in ${path.join(out, 'charts')})`)
    return done
  }
}

function qualityText(r: TrainResult['history'][number]): string {
  return r.modes !== undefined
    ? `${r.modesCovered}/${r.modes} modes, ${(100 * (r.highQuality ?? 0)).toFixed(1)}% high quality`
    : `precision ${(r.precision ?? 0).toFixed(3)}, recall ${(r.recall ?? 0).toFixed(3)}`
}

/** Whether a staging folder holds a run's checkpoint (<norm>/seed-<s>/checkpoint.safetensors). */
function hasCheckpoint(stage: string): boolean {
  try {
    return readdirSync(stage, { recursive: true, encoding: 'utf8' }).some((e) => path.basename(e) === 'checkpoint.safetensors')
  } catch {
    return false
  }
}
