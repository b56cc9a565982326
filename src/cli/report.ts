// report.html: one self-contained page comparing runs (inline SVG charts, a table of final metrics, the config).
import { writeFileSync } from 'node:fs'

import type { Mixture2d } from '../data/toy2d.js'
import type { Train2dResult } from '../train/trainer2d.js'
import { lineChart, scatterPlot, type Series } from './svg.js'

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)

export function writeReport(file: string, runs: readonly Train2dResult[], mixture: Mixture2d, title: string): void {
  const label = (r: Train2dResult) => (r.config.norm === "ssn" || r.config.norm === "bssn" ? `${r.config.norm} (c = ${Number(r.config.scale.toFixed(4))})` : r.config.norm)
  const perRun = (f: (r: Train2dResult) => Array<[number, number]>) => runs.map((r): Series => ({ name: label(r), points: f(r) }))
  const last = (r: Train2dResult) => r.history[r.history.length - 1]
  const rows = runs
    .map((r) => {
      const h = last(r)
      return `<tr><td>${esc(label(r))}</td><td>${h ? `${h.modesCovered} / ${h.modes}` : '-'}</td><td>${h ? (100 * h.highQuality).toFixed(1) + '%' : '-'}</td><td>${h?.lossD.toFixed(3) ?? '-'}</td><td>${h?.lossG.toFixed(3) ?? '-'}</td><td>${r.stepsPerSecond.toFixed(1)}</td><td>${h?.step ?? 0}${r.interrupted ? ' (interrupted)' : ''}</td></tr>`
    })
    .join('\n')
  const layerCount = runs[0]?.history[0]?.layers.length ?? 0
  const layerCharts: string[] = []
  for (let i = 0; i < layerCount; i++) {
    layerCharts.push(
      lineChart(`D layer ${i}: gradient Frobenius norm`, perRun((r) => r.history.map((h) => [h.step, h.layers[i].gradNorm])), { xLabel: 'step', logY: true }),
      lineChart(
        `D layer ${i}: variance of the normalized weight`,
        [
          ...perRun((r) => r.history.map((h) => [h.step, h.layers[i].variance])),
          { name: 'bound 1/max(m, n)', points: runs[0].history.map((h) => [h.step, h.layers[i].bound]), dashed: true },
        ],
        { xLabel: 'step', logY: true },
      ),
      lineChart(
        `D layer ${i}: sigma1 (W1) and sigma2 (W2)`,
        runs.flatMap((r): Series[] => [
          { name: `${label(r)} sigma1`, points: r.history.filter((h) => h.layers[i].sigma1 !== undefined).map((h) => [h.step, h.layers[i].sigma1!]) },
          { name: `${label(r)} sigma2`, points: r.history.filter((h) => h.layers[i].sigma2 !== undefined).map((h) => [h.step, h.layers[i].sigma2!]), dashed: true },
        ]),
        { xLabel: 'step' },
      ),
    )
  }
  const extent = Math.max(...mixture.modes.flat().map(Math.abs)) * 1.6
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1500px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f3f3f3}.charts{display:flex;flex-wrap:wrap;gap:12px}pre{background:#f7f7f7;padding:8px}</style>
</head><body>
<h1>${esc(title)}</h1>
<p>Dataset <b>${mixture.name}</b> (${mixture.modes.length} Gaussian modes, std ${mixture.std}). A sample is high quality within 3 std of a mode; a mode is covered with at least 0.8% of the samples there.</p>
<h2>Final metrics</h2>
<table><tr><th>D normalization</th><th>modes covered</th><th>high quality</th><th>loss D</th><th>loss G</th><th>steps/s</th><th>steps</th></tr>
${rows}
</table>
<h2>Samples at the end (red circles: the modes)</h2>
<div class="charts">${runs.map((r) => scatterPlot(label(r), r.samples, mixture.modes, extent)).join('\n')}</div>
<h2>Quality over training</h2>
<div class="charts">
${lineChart('modes covered', perRun((r) => r.history.map((h) => [h.step, h.modesCovered])), { xLabel: 'step' })}
${lineChart('high-quality samples (share)', perRun((r) => r.history.map((h) => [h.step, h.highQuality])), { xLabel: 'step' })}
${lineChart('discriminator hinge loss', perRun((r) => r.history.map((h) => [h.step, h.lossD])), { xLabel: 'step' })}
</div>
<h2>Discriminator layers</h2>
<div class="charts">${layerCharts.join('\n')}</div>
<h2>Configuration</h2>
${runs.map((r) => `<pre>${esc(JSON.stringify(r.config, null, 2))}</pre>`).join('\n')}
</body></html>
`
  writeFileSync(file, html)
}
