// The classic 2-D mode-collapse benchmarks: mixtures of Gaussians on a ring (8 modes) and a grid (25 modes).
import type { Device } from '../device.js'
import { HostRandom } from '../random.js'
import type { Tensor } from '../tensor.js'

export interface Mixture2d {
  name: 'ring8' | 'grid25'
  modes: ReadonlyArray<readonly [number, number]>
  std: number
}

export const ring8: Mixture2d = {
  name: 'ring8',
  modes: Array.from({ length: 8 }, (_, k) => [2 * Math.cos((2 * Math.PI * k) / 8), 2 * Math.sin((2 * Math.PI * k) / 8)] as const),
  std: 0.02,
}

export const grid25: Mixture2d = {
  name: 'grid25',
  modes: [-4, -2, 0, 2, 4].flatMap((x) => [-4, -2, 0, 2, 4].map((y) => [x, y] as const)),
  std: 0.05,
}

export const mixtures = { ring8, grid25 } as const

/** `n` samples [n, 2] of the mixture, from `seed` (a fresh tensor). */
export function sampleMixture(device: Device, mixture: Mixture2d, n: number, seed: number, rows: readonly [number, number] = [0, n]): Tensor {
  const random = new HostRandom(seed)
  const data = new Float32Array(2 * n)
  for (let i = 0; i < n; i++) {
    const [mx, my] = mixture.modes[random.int(mixture.modes.length)]
    data[2 * i] = mx + mixture.std * random.normal()
    data[2 * i + 1] = my + mixture.std * random.normal()
  }
  // A rank's share: the draw is the whole batch's, so N ranks train on the samples one process would.
  return device.tensor(data.subarray(2 * rows[0], 2 * rows[1]), [rows[1] - rows[0], 2])
}

export interface Mixture2dQuality {
  /** Modes with at least `minPerMode` high-quality samples. */
  modesCovered: number
  modes: number
  /** Share of samples within 3 standard deviations of some mode. */
  highQuality: number
}

/** The VEEGAN/PacGAN-style quality of 2-D samples: a mode is covered when it has >= 0.8% of the samples within 3 std. */
export function mixtureQuality(mixture: Mixture2d, points: Float32Array): Mixture2dQuality {
  const n = points.length / 2
  const perMode = new Array<number>(mixture.modes.length).fill(0)
  let good = 0
  const r2 = (3 * mixture.std) ** 2
  for (let i = 0; i < n; i++) {
    const x = points[2 * i]
    const y = points[2 * i + 1]
    let best = -1
    let bestD = Infinity
    mixture.modes.forEach(([mx, my], k) => {
      const d = (x - mx) ** 2 + (y - my) ** 2
      if (d < bestD) {
        bestD = d
        best = k
      }
    })
    if (bestD <= r2) {
      good++
      perMode[best]++
    }
  }
  const minPerMode = Math.max(1, Math.ceil(0.008 * n))
  return { modesCovered: perMode.filter((c) => c >= minPerMode).length, modes: mixture.modes.length, highQuality: n ? good / n : 0 }
}
