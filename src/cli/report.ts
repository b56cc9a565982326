// report.html: one self-contained page comparing normalizations over seeds: what differs between the runs and
// what the data shows (in words), quality over training as mean and band over seeds, samples beside real data,
// per discriminator layer the paper's diagnostics, and the configuration the runs were made with.
import { renameSync, writeFileSync } from 'node:fs'

import { imageGridPng } from '../data/images.js'
import type { Mixture2d } from '../data/toy2d.js'
import type { EvalRecord, TrainResult } from '../train/trainer.js'
import { lineChart, scatterPlot, type Series } from './svg.js'

/** How a run is named in output: the normalization, with c where the mode uses it. */
export function normLabel(norm: string, scale: number): string {
  return norm === 'ssn' || norm === 'bssn' ? `${norm} (c = ${Number(scale.toFixed(4))})` : norm
}

/** What the runs trained on, as the report shows it. */
export interface ReportSubject {
  kind: '2d' | 'image'
  dataset: string
  architecture: string
  mixture?: Mixture2d
  imageSize?: number
  /** Real images [count, 3, size, size] shown beside the samples. */
  real?: { pixels: Float32Array; count: number }
}

/** Where and when the runs were made. */
export interface ReportEnvironment {
  version: string
  commit: string
  device: string
  date: string
  node: string
  command: string
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)
const f3 = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : Math.abs(v) >= 1e3 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(3))

export interface NamedChart {
  name: string
  svg: string
}

/** One normalization's runs (one per seed). */
interface Group {
  norm: string
  label: string
  runs: TrainResult[]
}

/** Mean, min and max over seeds of `value` at each evaluation step all runs reached. */
function overSeeds(group: Group, value: (h: EvalRecord) => number | undefined): Array<{ step: number; mean: number; lo: number; hi: number }> {
  const steps = group.runs[0]?.history.map((h) => h.step) ?? []
  const out: Array<{ step: number; mean: number; lo: number; hi: number }> = []
  for (const step of steps) {
    const values = group.runs.map((r) => r.history.find((h) => h.step === step)).map((h) => (h ? value(h) : undefined))
    if (values.some((v) => v === undefined || !Number.isFinite(v))) continue
    const v = values as number[]
    out.push({ step, mean: v.reduce((a, b) => a + b, 0) / v.length, lo: Math.min(...v), hi: Math.max(...v) })
  }
  return out
}

function finalOverSeeds(group: Group, value: (h: EvalRecord) => number | undefined): { mean: number; lo: number; hi: number; values: number[] } | undefined {
  const values = group.runs.map((r) => r.history[r.history.length - 1]).map((h) => (h ? value(h) : undefined))
  if (values.length === 0 || values.some((v) => v === undefined || !Number.isFinite(v))) return undefined
  const v = values as number[]
  return { mean: v.reduce((a, b) => a + b, 0) / v.length, lo: Math.min(...v), hi: Math.max(...v), values: v }
}

/** W1 [m, n] and W2 of a weight [out, in, ...k]: W1 = out x (in k), W2 = in x (out k); a Linear's W2 is W1^T. */
function reshapes(shape: readonly number[]): { w1: [number, number]; w2: [number, number] } {
  const k = shape.slice(2).reduce((a, b) => a * b, 1)
  const [o, i] = [shape[0], shape[1] ?? 1]
  return { w1: [o, i * k], w2: [i, o * k] }
}

/** Writes report.html (to a temporary name, then renamed); returns its line charts (for PNG copies). */
export function writeReport(file: string, runs: readonly TrainResult[], subject: ReportSubject, title: string, env: ReportEnvironment): NamedChart[] {
  const charts: NamedChart[] = []
  const named = (name: string, svg: string) => {
    charts.push({ name, svg })
    return svg
  }
  const groups: Group[] = []
  for (const r of runs) {
    let g = groups.find((x) => x.norm === r.config.norm)
    if (!g) groups.push((g = { norm: r.config.norm, label: normLabel(r.config.norm, r.config.scale), runs: [] }))
    g.runs.push(r)
  }
  groups.forEach((g) => g.runs.sort((a, b) => a.config.seed - b.config.seed))
  const seeds = [...new Set(runs.map((r) => r.config.seed))].sort((a, b) => a - b)
  const steps = Math.max(0, ...runs.map((r) => r.history[r.history.length - 1]?.step ?? 0))
  const is2d = subject.kind === '2d'
  const metrics: Array<{ key: keyof EvalRecord; name: string; rate: boolean }> = is2d
    ? [
        { key: 'modesCovered', name: 'modes covered', rate: false },
        { key: 'highQuality', name: 'high-quality share', rate: true },
      ]
    : [
        { key: 'precision', name: 'k-NN precision', rate: true },
        { key: 'recall', name: 'k-NN recall', rate: true },
      ]
  const metric = (key: keyof EvalRecord) => (h: EvalRecord) => h[key] as number | undefined
  const band = (g: Group, value: (h: EvalRecord) => number | undefined): Series => {
    const s = overSeeds(g, value)
    return { name: g.label, points: s.map((p) => [p.step, p.mean]), band: g.runs.length > 1 ? s.map((p) => [p.step, p.lo, p.hi]) : undefined }
  }

  // What differs, in words.
  const scale = runs.find((r) => r.config.norm === 'ssn' || r.config.norm === 'bssn')?.config.scale ?? Math.SQRT2
  const c = Number(scale.toFixed(4))
  const meaning: Record<string, string> = {
    none: '<b>none</b>: the raw weights, no normalization.',
    sn: '<b>sn</b>: W / sigma1, where sigma1 is the spectral norm of W1 (the weight reshaped to [out, in &middot; k &middot; k]); every layer&#39;s W1 then has spectral norm 1.',
    ssn: `<b>ssn</b> (the control): c &middot; W / sigma1 with c = ${c}: the same constant as bssn, one direction only. Against sn it isolates the effect of c.`,
    bsn: '<b>bsn</b>: W / ((sigma1 + sigma2) / 2), where sigma2 is the spectral norm of W2 (the in and out axes swapped: [in, out &middot; k &middot; k]).',
    bssn: `<b>bssn</b>: c &middot; W / ((sigma1 + sigma2) / 2) with c = ${c}. Against ssn it isolates the second direction: W1&#39;s spectral norm becomes c &middot; sigma1 / divisor instead of c.`,
  }
  const differs = groups.map((g) => `<li>${meaning[g.norm] ?? esc(g.norm)}</li>`).join('')
  const fcNote = is2d
    ? `<p class="note">On fully connected layers W2 = W1<sup>T</sup>, so sigma2 = sigma1 and BSSN equals SSN exactly (same c): on this MLP the ssn and bssn runs are the same computation, and any difference from sn comes from c alone. The second direction matters on convolutional discriminators (the default <code>--dataset shapes</code>).</p>`
    : ''

  // What the data shows, in words.
  const findings: string[] = []
  const byNorm = (n: string) => groups.find((g) => g.norm === n)
  const identical = (a: Group, b: Group) =>
    a.runs.length === b.runs.length &&
    a.runs.every((ra, i) => {
      const rb = b.runs[i]
      return ra.history.length === rb.history.length && ra.history.every((h, j) => metrics.every((m) => h[m.key] === rb.history[j][m.key]) && h.lossD === rb.history[j].lossD)
    })
  const comparePair = (a: Group, b: Group, what: string) => {
    if (identical(a, b)) {
      findings.push(`<li><b>${esc(b.label)} vs ${esc(a.label)}</b> (${what}): identical at every evaluation of every seed: the two normalizations compute the same thing here.</li>`)
      return
    }
    const parts = metrics.map((m) => {
      const fa = finalOverSeeds(a, metric(m.key))
      const fb = finalOverSeeds(b, metric(m.key))
      if (!fa || !fb) return `${m.name}: -`
      const d = fb.mean - fa.mean
      const overlap = fa.lo <= fb.hi && fb.lo <= fa.hi
      const verdict =
        seeds.length < 2 ? 'one seed: no spread to judge it by' : overlap ? 'within the spread over seeds (the ranges overlap)' : `the ranges over seeds do not overlap, though ${seeds.length} seeds are too few to call it an effect`
      return `${m.name} ${f3(fb.mean)} vs ${f3(fa.mean)} (difference ${d >= 0 ? '+' : ''}${f3(d)}; ${verdict})`
    })
    findings.push(`<li><b>${esc(b.label)} vs ${esc(a.label)}</b> (${what}), at step ${steps}, mean over ${seeds.length} seed${seeds.length > 1 ? 's' : ''}: ${parts.join('; ')}.</li>`)
  }
  const [sn, ssn, bssn] = [byNorm('sn'), byNorm('ssn'), byNorm('bssn')]
  if (sn && ssn) comparePair(sn, ssn, 'the effect of c')
  if (ssn && bssn) comparePair(ssn, bssn, 'the effect of the second direction')
  if (sn && bssn && !ssn) comparePair(sn, bssn, 'c and the second direction together: without the ssn control the two cannot be told apart')
  const layerCount = runs[0]?.layerShapes.length ?? 0
  if (bssn) {
    const eff = Array.from({ length: layerCount }, (_, i) => finalOverSeeds(bssn, (h) => h.layers[i]?.effective)?.mean).filter((v): v is number => v !== undefined)
    const ratio = Array.from({ length: layerCount }, (_, i) => finalOverSeeds(bssn, (h) => (h.layers[i]?.sigma2 ?? NaN) / (h.layers[i]?.sigma1 ?? NaN))?.mean).filter((v): v is number => v !== undefined)
    if (eff.length)
      findings.push(
        `<li>Mechanism: at the end, bssn&#39;s layers have sigma2 / sigma1 from ${f3(Math.min(...ratio))} to ${f3(Math.max(...ratio))}, so their effective spectral norm c &middot; sigma1 / divisor runs from ${f3(Math.min(...eff))} to ${f3(Math.max(...eff))}` +
          `${ssn ? `, against exactly ${c} under ssn` : ''}${Math.max(...eff) - Math.min(...eff) < 1e-6 && Math.abs(eff[0] - scale) < 1e-4 ? ' (the same: sigma2 = sigma1 on every layer)' : ''}.</li>`,
      )
  }
  if (steps > 0 && !is2d) findings.push(`<li>${seeds.length} seed${seeds.length > 1 ? 's' : ''} of ${steps} steps each: a short run on a small model, meant to show the mechanism and the spread; differences in precision/recall smaller than the seed spread are not evidence either way.</li>`)
  if (runs.some((r) => r.interrupted)) findings.push('<li>Some runs were interrupted: their rows show the steps they finished.</li>')

  // Tables.
  const quality = (h: EvalRecord | undefined) =>
    !h ? '<td>-</td><td>-</td>' : is2d ? `<td>${h.modesCovered} / ${h.modes}</td><td>${f3(h.highQuality)}</td>` : `<td>${f3(h.precision)}</td><td>${f3(h.recall)}</td>`
  const rows = groups
    .flatMap((g) => {
      const perSeed = g.runs.map((r) => {
        const h = r.history[r.history.length - 1]
        return `<tr><td>${esc(g.label)}</td><td>${r.config.seed}</td>${quality(h)}<td>${f3(h?.lossD)}</td><td>${f3(h?.lossG)}</td><td>${r.stepsPerSecond.toFixed(1)}</td><td>${h?.step ?? 0}${r.interrupted ? ' (interrupted)' : ''}</td></tr>`
      })
      const mean = metrics.map((m) => {
        const f = finalOverSeeds(g, metric(m.key))
        return `<td>${f ? `${f3(f.mean)} [${f3(f.lo)}, ${f3(f.hi)}]` : '-'}</td>`
      })
      const loss = finalOverSeeds(g, (h) => h.lossD)
      return [...perSeed, `<tr class="mean"><td>${esc(g.label)}</td><td>mean [min, max]</td>${mean.join('')}<td>${loss ? f3(loss.mean) : '-'}</td><td></td><td></td><td></td></tr>`]
    })
    .join('\n')
  const layerRows: string[] = []
  for (let i = 0; i < layerCount; i++) {
    const shape = runs[0].layerShapes[i]
    const { w1, w2 } = reshapes(shape)
    groups.forEach((g, k) => {
      const v = (f: (h: EvalRecord) => number | undefined) => f3(finalOverSeeds(g, f)?.mean)
      const head = k === 0 ? `<td rowspan="${groups.length}">${i}</td><td rowspan="${groups.length}">[${shape.join(', ')}]</td><td rowspan="${groups.length}">${w1.join(' x ')}</td><td rowspan="${groups.length}">${w2.join(' x ')}</td><td rowspan="${groups.length}">${f3(1 / Math.max(...w1))}</td>` : ''
      const spectrum = g.runs[0]?.layerSpectra?.[i]
      const top = (s: number[] | undefined) => (s && s.length ? s.map((x) => f3(x)).join(', ') : '-')
      layerRows.push(
        `<tr>${head}<td>${esc(g.label)}</td><td>${v((h) => h.layers[i]?.gradNorm)}</td><td>${v((h) => h.layers[i]?.variance)}</td><td>${v((h) => h.layers[i]?.sigma1)}</td><td>${v((h) => h.layers[i]?.sigma2)}</td><td>${v((h) => h.layers[i]?.effective)}</td><td class="spectrum">${top(spectrum?.w1)}</td><td class="spectrum">${top(spectrum?.w2)}</td></tr>`,
      )
    })
  }

  // Charts.
  const layerCharts: string[] = []
  for (let i = 0; i < layerCount; i++) {
    const L = (f: (h: EvalRecord) => number | undefined) => groups.map((g) => band(g, f))
    layerCharts.push(
      named(`d-layer-${i}-gradient-norm`, lineChart(`D layer ${i}: gradient Frobenius norm`, L((h) => h.layers[i]?.gradNorm), { xLabel: 'step', yLabel: '||dL/dW||_F', logY: true })),
      named(
        `d-layer-${i}-weight-variance`,
        lineChart(
          `D layer ${i}: variance of the normalized weight`,
          [...L((h) => h.layers[i]?.variance), { name: 'bound 1/max(m, n)', points: runs[0].history.map((h) => [h.step, h.layers[i].bound]), dashed: true }],
          { xLabel: 'step', yLabel: 'variance', logY: true },
        ),
      ),
      named(
        `d-layer-${i}-sigmas`,
        lineChart(
          `D layer ${i}: sigma1 (W1) and sigma2 (W2, dashed)`,
          groups.flatMap((g): Series[] => [
            { ...band(g, (h) => h.layers[i]?.sigma1), name: `${g.label} sigma1` },
            { ...band(g, (h) => h.layers[i]?.sigma2), name: `${g.label} sigma2`, dashed: true },
          ]),
          { xLabel: 'step', yLabel: 'spectral norm of the raw weight' },
        ),
      ),
      named(`d-layer-${i}-effective`, lineChart(`D layer ${i}: effective spectral norm c·sigma1/divisor`, L((h) => h.layers[i]?.effective), { xLabel: 'step', yLabel: 'spectral norm of normalized W1' })),
    )
  }
  const qualityCharts = metrics.map((m) =>
    named(m.key === 'modesCovered' ? 'modes-covered' : m.key === 'highQuality' ? 'high-quality' : m.key, lineChart(`${m.name}${seeds.length > 1 ? ' (line: mean, band: min to max over seeds)' : ''}`, groups.map((g) => band(g, metric(m.key))), {
      xLabel: 'step',
      yLabel: m.rate ? 'share (0 to 1)' : 'modes',
      yRange: m.rate ? [0, 1] : subject.mixture ? [0, subject.mixture.modes.length] : undefined,
    })),
  )
  const lossChart = named('loss-d', lineChart('discriminator hinge loss', groups.map((g) => band(g, (h) => h.lossD)), { xLabel: 'step', yLabel: 'loss' }))

  // Samples.
  const size = subject.imageSize ?? 32
  const grid = (pixels: Float32Array, caption: string) => {
    const count = Math.min(64, Math.floor(pixels.length / (3 * size * size)))
    const png = imageGridPng(pixels, count, size, 8).toString('base64')
    const scale = size <= 16 ? 4 : 2
    return `<figure><img src="data:image/png;base64,${png}" width="${scale * (8 * (size + 1) + 1)}" style="image-rendering:pixelated" alt="${esc(caption)}"><figcaption>${esc(caption)}</figcaption></figure>`
  }
  const mixture = subject.mixture
  const samples =
    is2d && mixture
      ? groups.map((g) => scatterPlot(`${g.label}, seed ${g.runs[0].config.seed}`, g.runs[0].samples, mixture.modes, Math.max(...mixture.modes.flat().map(Math.abs)) * 1.6)).join('\n')
      : [
          ...(subject.real ? [grid(subject.real.pixels.subarray(0, Math.min(64, subject.real.count) * 3 * size * size), 'real images (held out)')] : []),
          ...groups.map((g) => grid(g.runs[0].samples, `${g.label}, seed ${g.runs[0].config.seed}`)),
        ].join('\n')

  const about = is2d && mixture
    ? `Dataset <b>${mixture.name}</b> (${mixture.modes.length} Gaussian modes, std ${mixture.std}), discriminator ${esc(subject.architecture)} (fully connected). A sample is high quality within 3 std of a mode; a mode is covered with at least 0.8% of the samples there.`
    : `Dataset <b>${esc(subject.dataset)}</b> (${size}x${size} RGB), networks ${esc(subject.architecture)} (convolutional discriminator). Precision: share of generated images inside the k-NN (k = 3) balls of held-out real ones; recall: the reverse. Features: the images averaged to 8x8 RGB (no pretrained network).`
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1500px}table{border-collapse:collapse;margin-bottom:12px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}tr.mean td{font-weight:bold;background:#fafafa}.charts{display:flex;flex-wrap:wrap;gap:12px}pre{background:#f7f7f7;padding:8px}.note{background:#fff8e0;padding:6px 10px}figure{margin:0}</style>
</head><body>
<h1>${esc(title)}</h1>
<p>${about} ${groups.length} normalization${groups.length > 1 ? 's' : ''} x ${seeds.length} seed${seeds.length > 1 ? 's' : ''} (${seeds.join(', ')}), ${steps} steps. bssn ${esc(env.version)}, commit ${esc(env.commit)}, ${esc(env.device)}, ${esc(env.date)}.</p>
<h2 id="differs">What differs between the runs</h2>
<p>Same data, networks, initialization and batches for a given seed; only the discriminator&#39;s normalization differs:</p>
<ul>${differs}</ul>
${fcNote}
<h2 id="shows">What the data shows</h2>
<ul id="findings">${findings.join('\n')}</ul>
<h2>Final metrics</h2>
<table id="final"><tr><th>D normalization</th><th>seed</th>${is2d ? '<th>modes covered</th><th>high quality</th>' : '<th>precision</th><th>recall</th>'}<th>loss D</th><th>loss G</th><th>steps/s</th><th>steps</th></tr>
${rows}
</table>
<h2>Samples at the end${is2d ? ' (red circles: the modes)' : ''}</h2>
<div class="charts">${samples}</div>
<h2>Quality over training</h2>
<div class="charts">
${qualityCharts.join('\n')}
${lossChart}
</div>
<h2>Discriminator layers at the end (mean over seeds)</h2>
<p>W1 = the weight as [out, in &middot; k &middot; k], W2 = as [in, out &middot; k &middot; k]. sigma1 and sigma2 are the power-iteration estimates of their spectral norms (raw weights); the effective spectral norm is the normalized W1&#39;s: c &middot; sigma1 / divisor. The variance of the normalized weight is compared with 1/max(m, n) of W1 (the BSSN paper&#39;s bound).</p>
<table id="layers"><tr><th>layer</th><th>weight</th><th>W1</th><th>W2</th><th>1/max(m, n)</th><th>normalization</th><th>grad norm</th><th>variance</th><th>sigma1</th><th>sigma2</th><th>c·sigma1/divisor</th><th>top singular values of W1 at the end (seed ${esc(String(groups[0]?.runs[0]?.config.seed ?? ''))})</th><th>of W2</th></tr>
${layerRows.join('\n')}
</table>
<div class="charts">${layerCharts.join('\n')}</div>
<h2>Configuration</h2>
<pre>${esc(JSON.stringify(env, null, 2))}</pre>
${groups.map((g) => `<pre>${esc(JSON.stringify({ ...g.runs[0].config, seeds: g.runs.map((r) => r.config.seed) }, null, 2))}</pre>`).join('\n')}
</body></html>
`
  writeFileSync(`${file}.partial`, html)
  renameSync(`${file}.partial`, file)
  return charts
}
