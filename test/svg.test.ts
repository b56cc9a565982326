// The report's SVG charts: axes for any data, however narrow its range.
import { describe, expect, it } from 'vitest'

import { lineChart } from '../src/cli/svg.js'

describe('lineChart', () => {
  it('draws a quantity that changed by a few ulps (the tick loop once never ended there)', () => {
    for (const [a, b] of [
      [1.0000000000000002, 1.0000000000000004],
      [1e20, 1e20 + 16384],
      [-3.4e38, -3.4e38 * (1 - 2 ** -52)],
    ]) {
      const svg = lineChart('narrow', [{ name: 'q', points: [[1, a], [2, b], [3, a]] }])
      expect(svg).toMatch(/^<svg[\s\S]*<polyline[\s\S]*<\/svg>$/)
      expect((svg.match(/<text x="\d+(\.\d+)?" y="[\d.]+" text-anchor="end">/g) ?? []).length).toBeGreaterThanOrEqual(1)
    }
  })

  it('ticks a usual range at round values', () => {
    const svg = lineChart('usual', [{ name: 'q', points: [[0, 0], [100, 1]] }], { yRange: [0, 1] })
    for (const label of ['0', '0.2', '0.4', '0.6', '0.8', '1']) expect(svg).toContain(`>${label}</text>`)
  })
})
