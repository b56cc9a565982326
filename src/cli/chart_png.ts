// PNG copies of the report's charts, rendered from their SVG by resvg (a maintained renderer).
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'

import { Resvg } from '@resvg/resvg-js'

import type { NamedChart } from './report.js'

/** Writes <folder>/<name>.png for every chart; returns the files. */
export function writeChartPngs(folder: string, charts: readonly NamedChart[]): string[] {
  mkdirSync(folder, { recursive: true })
  return charts.map(({ name, svg }) => {
    const file = path.join(folder, `${name}.png`)
    writeFileSync(file, new Resvg(svg, { background: 'white', fitTo: { mode: 'zoom', value: 2 } }).render().asPng())
    return file
  })
}
