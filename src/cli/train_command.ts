// `bssn train` and `bssn compare`: GANs on the built-in 2-D mixtures with the chosen discriminator
// normalizations, trained in parallel worker threads, with metrics.jsonl per run and one report.html.
import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import { mixtures } from '../data/toy2d.js'
import { writeImageGrid } from '../data/images.js'
import { datasetHelp } from '../train/tasks.js'
import type { NormChoice, TrainResult } from '../train/trainer.js'
import { UsageError } from './args.js'
import { writeChartPngs } from './chart_png.js'
import { normLabel, writeReport, type ReportSubject } from './report.js'
import type { WorkerConfig } from './train_worker.js'

export const norms: readonly NormChoice[] = ['none', 'sn', 'ssn', 'bsn', 'bssn']

export interface TrainCommandOptions {
  norms: NormChoice[]
  scale: number
  dataset: string
  arch: string
  steps: number
  batch: number
  lr: number
  betas: [number, number]
  nDis: number
  seed: number
  device: string
  out: string
  evalEvery: number
  width: number
  checkpointEvery: number
  evalSamples?: number
  resume?: string
  print: (line: string) => void
  progress: boolean
}

export async function runTraining(o: TrainCommandOptions): Promise<TrainResult[]> {
  const is2d = o.dataset in mixtures
  if (!is2d && !(o.dataset === 'shapes' || /^(cifar10|png):.+/.test(o.dataset)))
    throw new UsageError(`--dataset must be one of ${datasetHelp}, got '${o.dataset}'`)
  const arch = o.arch === 'auto' ? (is2d ? 'mlp' : 'sngan') : o.arch
  if (arch !== (is2d ? 'mlp' : 'sngan')) throw new UsageError(`--arch must be ${is2d ? 'mlp for 2-D data' : 'sngan for 32x32 images'}, got '${o.arch}'`)
  const subject: ReportSubject = is2d
    ? { kind: '2d', dataset: o.dataset, mixture: mixtures[o.dataset as keyof typeof mixtures] }
    : { kind: 'image', dataset: o.dataset, imageSize: 32 }
  for (const n of o.norms) if (!norms.includes(n)) throw new UsageError(`--norm must be one of ${norms.join(', ')}, got '${n}'`)
  if (o.resume && o.norms.length !== 1) throw new UsageError('--resume continues one run: use it with train')
  if (o.resume && !existsSync(o.resume)) throw new UsageError(`--resume: no such checkpoint '${o.resume}'`)
  mkdirSync(o.out, { recursive: true })
  const label = (n: NormChoice) => normLabel(n, o.scale)
  o.print(`training ${o.norms.map(label).join(' and ')} on ${o.dataset}: ${o.steps} steps, batch ${o.batch}, Adam ${o.lr} (${o.betas.join(', ')}), n_dis ${o.nDis}, seed ${o.seed}, device ${o.device} -> ${o.out}`)

  const progress = new Map<NormChoice, number>()
  const start = Date.now()
  const showProgress = () => {
    const done = [...progress.values()].reduce((a, b) => a + b, 0)
    const total = o.steps * o.norms.length
    const seconds = (Date.now() - start) / 1000
    const eta = done ? (seconds / done) * (total - done) : 0
    const width = 30
    const filled = Math.round((done / total) * width)
    process.stdout.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} steps, ${(done / Math.max(seconds, 1e-3)).toFixed(0)} steps/s, ETA ${eta.toFixed(0)} s  `)
  }
  const workers = o.norms.map((norm) => {
    const config: WorkerConfig = {
      norm,
      scale: o.scale,
      dataset: o.dataset,
      steps: o.steps,
      batch: o.batch,
      lr: o.lr,
      betas: o.betas,
      nDis: o.nDis,
      seed: o.seed,
      width: o.width,
      evalEvery: o.evalEvery,
      evalSamples: o.evalSamples ?? (is2d ? 2500 : 256),
      device: o.device,
      out: path.join(o.out, norm),
      checkpointEvery: o.checkpointEvery,
      resume: o.resume,
    }
    return new Worker(new URL('./train_worker.js', import.meta.url), { workerData: config })
  })
  // Ctrl-C: every run stops at its next step and the report of what was trained is written.
  const onSigint = () => {
    o.print('\ninterrupted: finishing the report of the steps done so far')
    workers.forEach((w) => w.postMessage('stop'))
  }
  process.once('SIGINT', onSigint)
  try {
    const results = await Promise.all(
      workers.map(
        (worker, i) =>
          new Promise<TrainResult>((resolve, reject) => {
            worker.on('message', (m: { type: string; norm: NormChoice; step?: number; record?: TrainResult['history'][number]; result?: TrainResult }) => {
              if (m.type === 'step') {
                progress.set(m.norm, m.step!)
                if (o.progress) showProgress()
              } else if (m.type === 'eval') {
                progress.set(m.norm, m.record!.step)
                if (!o.progress) {
                  const r = m.record!
                  o.print(`${label(m.norm)} step ${r.step}: ${qualityText(r)}, loss D ${r.lossD.toFixed(3)}`)
                } else showProgress()
              } else if (m.type === 'done') {
                resolve(m.result!)
              }
            })
            worker.on('error', reject)
            worker.on('exit', (code) => code !== 0 && reject(new Error(`training run ${o.norms[i]} exited with ${code}`)))
          }),
      ),
    )
    if (o.progress) process.stdout.write('\n')
    const file = path.join(o.out, 'report.html')
    const charts = writeReport(file, results, subject, `bssn: ${o.norms.map(label).join(' vs ')} on ${o.dataset}`)
    writeChartPngs(path.join(o.out, 'charts'), charts)
    for (const r of results) {
      if (!is2d) writeImageGrid(path.join(o.out, r.config.norm, 'samples.png'), r.samples, Math.min(64, r.samples.length / 3072), 32, 8)
      const h = r.history[r.history.length - 1]
      if (h) o.print(`${label(r.config.norm)}: ${qualityText(h)} after ${h.step} steps (${r.stepsPerSecond.toFixed(1)} steps/s)`)
    }
    o.print(`report: ${file} (charts as PNG in ${path.join(o.out, 'charts')})`)
    return results
  } finally {
    process.off('SIGINT', onSigint)
  }
}

function qualityText(r: TrainResult['history'][number]): string {
  return r.modes !== undefined
    ? `${r.modesCovered}/${r.modes} modes, ${(100 * (r.highQuality ?? 0)).toFixed(1)}% high quality`
    : `precision ${(r.precision ?? 0).toFixed(3)}, recall ${(r.recall ?? 0).toFixed(3)}`
}
