// Small self-contained SVG charts for report.html: line charts and a 2-D scatter plot.

export interface Series {
  name: string
  points: ReadonlyArray<readonly [number, number]>
  dashed?: boolean
  /** A shaded band [x, low, high] (the spread over seeds), drawn under the line in its colour. */
  band?: ReadonlyArray<readonly [number, number, number]>
}

const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf', '#7f7f7f']
const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)

function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo) || !Number.isFinite(hi - lo)) return [lo]
  const raw = (hi - lo) / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!
  const out: number[] = []
  // By index, a bounded number: over a range of a few ulps, adding the step to a tick would not move it (a run whose
  // quantity barely changed hung the report here).
  const first = Math.ceil(lo / step)
  for (let i = 0; i <= 2 * count + 1; i++) {
    const t = (first + i) * step
    if (t > hi + step * 1e-9) break
    const label = Number(t.toPrecision(12))
    if (out[out.length - 1] !== label) out.push(label)
  }
  return out.length ? out : [lo]
}

const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1) : String(Number(v.toPrecision(4))))

export interface LineChartOptions {
  xLabel?: string
  yLabel?: string
  logY?: boolean
  /** A fixed y range (rates: [0, 1]). */
  yRange?: readonly [number, number]
  width?: number
  height?: number
}

/** A line chart; the legend sits below the plot, never on the data; a series of one point is drawn as a marker. */
export function lineChart(title: string, allSeries: readonly Series[], options: LineChartOptions = {}): string {
  const series = allSeries.filter((s) => s.points.length > 0) // no legend entry for a quantity a run has not got
  const W = options.width ?? 460
  const legendColumns = 2
  const legendRows = Math.ceil(series.length / legendColumns)
  const plotH = options.height ?? 240
  const H = plotH + 14 * legendRows + 6
  const m = { l: 60, r: 18, t: 28, b: 40 }
  const fullTitle = options.logY ? `${title} (log scale)` : title
  const ty = (v: number) => (options.logY ? Math.log10(Math.max(v, 1e-12)) : v)
  const all = series.flatMap((s) => [...s.points, ...(s.band ?? []).flatMap(([x, lo, hi]) => [[x, lo] as const, [x, hi] as const])]).filter(([, y]) => Number.isFinite(ty(y)))
  if (all.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="10" y="20">${esc(title)}: no data</text></svg>`
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))]
  let [y0, y1] = options.yRange ? [ty(options.yRange[0]), ty(options.yRange[1])] : [Math.min(...all.map((p) => ty(p[1]))), Math.max(...all.map((p) => ty(p[1])))]
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1]
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1]
  if (!options.yRange) {
    const pad = (y1 - y0) * 0.05
    y0 -= pad
    y1 += pad
  }
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r)
  const sy = (y: number) => plotH - m.b - ((Math.min(y1, Math.max(y0, y)) - y0) / (y1 - y0)) * (plotH - m.t - m.b)
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`]
  parts.push(`<text x="${W / 2}" y="16" text-anchor="middle" font-size="13">${esc(fullTitle)}</text>`)
  for (const t of ticks(x0, x1)) parts.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${plotH - m.b}" y2="${plotH - m.b + 4}" stroke="#333"/><text x="${sx(t)}" y="${plotH - m.b + 15}" text-anchor="middle">${fmt(t)}</text>`)
  // Log axes tick at powers of ten (and 2x, 5x when the range is under two decades).
  const yTicks = options.logY ? logTicks(y0, y1) : ticks(y0, y1)
  for (const t of yTicks)
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/><text x="${m.l - 4}" y="${sy(t) + 4}" text-anchor="end">${options.logY ? fmt(10 ** t) : fmt(t)}</text>`)
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${plotH - m.t - m.b}" fill="none" stroke="#333"/>`)
  if (options.xLabel) parts.push(`<text x="${(W + m.l) / 2}" y="${plotH - 8}" text-anchor="middle">${esc(options.xLabel)}</text>`)
  if (options.yLabel) parts.push(`<text transform="translate(12 ${(plotH - m.b + m.t) / 2}) rotate(-90)" text-anchor="middle">${esc(options.yLabel)}</text>`)
  series.forEach((s, i) => {
    const color = palette[i % palette.length]
    const band = (s.band ?? []).filter(([, lo, hi]) => Number.isFinite(ty(lo)) && Number.isFinite(ty(hi)))
    if (band.length > 1) {
      const upper = band.map(([x, , hi]) => `${sx(x).toFixed(1)},${sy(ty(hi)).toFixed(1)}`)
      const lower = band.map(([x, lo]) => `${sx(x).toFixed(1)},${sy(ty(lo)).toFixed(1)}`).reverse()
      parts.push(`<polygon fill="${color}" fill-opacity="0.15" stroke="none" points="${[...upper, ...lower].join(' ')}"/>`)
    }
    const pts = s.points.filter(([, y]) => Number.isFinite(ty(y))).map(([x, y]) => [sx(x), sy(ty(y))] as const)
    if (pts.length > 1) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5 3"' : ''} points="${pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')}"/>`)
    if (pts.length <= 2) for (const [x, y] of pts) parts.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3" fill="${color}"/>`)
    const lx = m.l + (i % legendColumns) * ((W - m.l) / legendColumns)
    const ly = plotH + 4 + Math.floor(i / legendColumns) * 14
    parts.push(`<line x1="${lx}" x2="${lx + 16}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/><text x="${lx + 20}" y="${ly}" fill="${color}">${esc(s.name)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('')
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = []
  const fine = hi - lo < 2
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++)
    for (const m of fine ? [1, 2, 5] : [1]) {
      const t = e + Math.log10(m)
      if (t >= lo && t <= hi) out.push(t)
    }
  return out.length >= 2 ? out : ticks(lo, hi)
}

/** A 2-D scatter plot in [-extent, extent]^2; the title counts the samples outside the frame. */
export function scatterPlot(title: string, points: Float32Array, marks: ReadonlyArray<readonly [number, number]>, extent: number, size = 300): string {
  const s = (v: number) => ((v + extent) / (2 * extent)) * size
  let outside = 0
  const dots: string[] = []
  for (let i = 0; i + 1 < points.length; i += 2) {
    const x = points[i]
    const y = points[i + 1]
    if (Math.abs(x) <= extent && Math.abs(y) <= extent) dots.push(`<circle cx="${s(x).toFixed(1)}" cy="${(size - s(y)).toFixed(1)}" r="1.2" fill="#1f77b4" fill-opacity="0.5"/>`)
    else outside++
  }
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size + 36}" font-family="sans-serif" font-size="12">`]
  parts.push(`<text x="${size / 2}" y="14" text-anchor="middle">${esc(title)}</text><g transform="translate(0 20)">`)
  parts.push(`<rect width="${size}" height="${size}" fill="#fafafa" stroke="#333"/>`, ...dots)
  for (const [x, y] of marks) parts.push(`<circle cx="${s(x)}" cy="${size - s(y)}" r="4" fill="none" stroke="#d62728" stroke-width="1.5"/>`)
  parts.push(`</g><text x="${size / 2}" y="${size + 33}" text-anchor="middle" font-size="11">${outside} of ${Math.floor(points.length / 2)} samples outside the frame</text></svg>`)
  return parts.join('')
}
