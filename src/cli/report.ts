// report.html: one self-contained page comparing runs (inline SVG charts, a table of final metrics, the config).
import { writeFileSync } from 'node:fs'

import { imageGridPng } from '../data/images.js'
import type { Mixture2d } from '../data/toy2d.js'
import type { TrainResult } from '../train/trainer.js'
import { lineChart, scatterPlot, type Series } from './svg.js'

/** How a run is named in output: the normalization, with c where the mode uses it. */
export function normLabel(norm: string, scale: number): string {
  return norm === 'ssn' || norm === 'bssn' ? `${norm} (c = ${Number(scale.toFixed(4))})` : norm
}

/** What the runs trained on, as the report shows it. */
export interface ReportSubject {
  kind: '2d' | 'image'
  dataset: string
  mixture?: Mixture2d
  imageSize?: number
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)

export interface NamedChart {
  name: string
  svg: string
}

/** Writes report.html; returns its line charts (for PNG copies). */
export function writeReport(file: string, runs: readonly TrainResult[], subject: ReportSubject, title: string): NamedChart[] {
  const mixture = subject.mixture
  const charts: NamedChart[] = []
  const named = (name: string, svg: string) => {
    charts.push({ name, svg })
    return svg
  }
  const label = (r: TrainResult) => normLabel(r.config.norm, r.config.scale)
  const perRun = (f: (r: TrainResult) => Array<[number, number]>) => runs.map((r): Series => ({ name: label(r), points: f(r) }))
  const last = (r: TrainResult) => r.history[r.history.length - 1]
  const rows = runs
    .map((r) => {
      const h = last(r)
      const quality = !h
        ? '<td>-</td><td>-</td>'
        : subject.kind === '2d'
          ? `<td>${h.modesCovered} / ${h.modes}</td><td>${(100 * (h.highQuality ?? 0)).toFixed(1)}%</td>`
          : `<td>${(h.precision ?? 0).toFixed(3)}</td><td>${(h.recall ?? 0).toFixed(3)}</td>`
      return `<tr><td>${esc(label(r))}</td>${quality}<td>${h?.lossD.toFixed(3) ?? '-'}</td><td>${h?.lossG.toFixed(3) ?? '-'}</td><td>${r.stepsPerSecond.toFixed(1)}</td><td>${h?.step ?? 0}${r.interrupted ? ' (interrupted)' : ''}</td></tr>`
    })
    .join('\n')
  const layerCount = runs[0]?.history[0]?.layers.length ?? 0
  const layerCharts: string[] = []
  for (let i = 0; i < layerCount; i++) {
    layerCharts.push(
      named(`d-layer-${i}-gradient-norm`, lineChart(`D layer ${i}: gradient Frobenius norm`, perRun((r) => r.history.map((h) => [h.step, h.layers[i].gradNorm])), { xLabel: 'step', logY: true })),
      named(`d-layer-${i}-weight-variance`, lineChart(
        `D layer ${i}: variance of the normalized weight`,
        [
          ...perRun((r) => r.history.map((h) => [h.step, h.layers[i].variance])),
          { name: 'bound 1/max(m, n)', points: runs[0].history.map((h) => [h.step, h.layers[i].bound]), dashed: true },
        ],
        { xLabel: 'step', logY: true },
      )),
      named(`d-layer-${i}-sigmas`, lineChart(
        `D layer ${i}: sigma1 (W1) and sigma2 (W2)`,
        runs.flatMap((r): Series[] => [
          { name: `${label(r)} sigma1`, points: r.history.filter((h) => h.layers[i].sigma1 !== undefined).map((h) => [h.step, h.layers[i].sigma1!]) },
          { name: `${label(r)} sigma2`, points: r.history.filter((h) => h.layers[i].sigma2 !== undefined).map((h) => [h.step, h.layers[i].sigma2!]), dashed: true },
        ]),
        { xLabel: 'step' },
      )),
    )
  }
  const samples =
    subject.kind === '2d' && mixture
      ? runs.map((r) => scatterPlot(label(r), r.samples, mixture.modes, Math.max(...mixture.modes.flat().map(Math.abs)) * 1.6)).join('\n')
      : runs
          .map((r) => {
            const size = subject.imageSize ?? 32
            const count = Math.min(64, r.samples.length / (3 * size * size))
            const png = imageGridPng(r.samples, count, size, 8).toString('base64')
            return `<figure><img src="data:image/png;base64,${png}" width="${2 * (8 * (size + 1) + 1)}" style="image-rendering:pixelated"><figcaption>${esc(label(r))}</figcaption></figure>`
          })
          .join('\n')
  const qualityCharts =
    subject.kind === '2d'
      ? [
          named('modes-covered', lineChart('modes covered', perRun((r) => r.history.map((h) => [h.step, h.modesCovered ?? 0])), { xLabel: 'step' })),
          named('high-quality', lineChart('high-quality samples (share)', perRun((r) => r.history.map((h) => [h.step, h.highQuality ?? 0])), { xLabel: 'step' })),
        ]
      : [
          named('precision', lineChart('k-NN precision', perRun((r) => r.history.map((h) => [h.step, h.precision ?? 0])), { xLabel: 'step' })),
          named('recall', lineChart('k-NN recall', perRun((r) => r.history.map((h) => [h.step, h.recall ?? 0])), { xLabel: 'step' })),
        ]
  const about =
    subject.kind === '2d' && mixture
      ? `Dataset <b>${mixture.name}</b> (${mixture.modes.length} Gaussian modes, std ${mixture.std}). A sample is high quality within 3 std of a mode; a mode is covered with at least 0.8% of the samples there.`
      : `Dataset <b>${esc(subject.dataset)}</b> (32x32 RGB, SNGAN CNN). Precision: share of generated images inside the k-NN (k = 3) balls of held-out real ones; recall: the reverse. Features: the images averaged to 8x8 RGB (no pretrained network).`
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1500px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f3f3f3}.charts{display:flex;flex-wrap:wrap;gap:12px}pre{background:#f7f7f7;padding:8px}</style>
</head><body>
<h1>${esc(title)}</h1>
<p>${about}</p>
<h2>Final metrics</h2>
<table><tr><th>D normalization</th>${subject.kind === '2d' ? '<th>modes covered</th><th>high quality</th>' : '<th>precision</th><th>recall</th>'}<th>loss D</th><th>loss G</th><th>steps/s</th><th>steps</th></tr>
${rows}
</table>
<h2>Samples at the end${subject.kind === '2d' ? ' (red circles: the modes)' : ''}</h2>
<div class="charts">${samples}</div>
<h2>Quality over training</h2>
<div class="charts">
${qualityCharts.join('\n')}
${named('loss-d', lineChart('discriminator hinge loss', perRun((r) => r.history.map((h) => [h.step, h.lossD])), { xLabel: 'step' }))}
</div>
<h2>Discriminator layers</h2>
<div class="charts">${layerCharts.join('\n')}</div>
<h2>Configuration</h2>
${runs.map((r) => `<pre>${esc(JSON.stringify(r.config, null, 2))}</pre>`).join('\n')}
</body></html>
`
  writeFileSync(file, html)
  return charts
}
