// k-NN precision and recall of generated samples against real ones (Kynkäänniemi et al. 2019), on features
// that need no pretrained network: images are averaged down to 8x8 RGB (192 values), 2-D points used as they are.
import { rangeError } from '../errors.js'

/** Squared Euclidean distances between rows of a [n, dim] and b [m, dim], as an n x m array. */
function distances(a: Float32Array, b: Float32Array, dim: number): Float64Array {
  const n = a.length / dim
  const m = b.length / dim
  const out = new Float64Array(n * m)
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = 0
      for (let d = 0; d < dim; d++) {
        const x = a[i * dim + d] - b[j * dim + d]
        s += x * x
      }
      out[i * m + j] = s
    }
  return out
}

// Squared distance from each sample to its k-th nearest other sample of the same set.
function kthRadii(x: Float32Array, dim: number, k: number): Float64Array {
  const n = x.length / dim
  const d = distances(x, x, dim)
  return Float64Array.from({ length: n }, (_, i) => {
    const row = Array.from(d.subarray(i * n, (i + 1) * n))
    row.splice(i, 1)
    row.sort((p, q) => p - q)
    return row[Math.min(k, row.length) - 1] ?? 0
  })
}

// Share of `queries` inside the k-NN ball of some sample of `support`.
function coverage(queries: Float32Array, support: Float32Array, dim: number, k: number): number {
  const radii = kthRadii(support, dim, k)
  const d = distances(queries, support, dim)
  const m = support.length / dim
  const n = queries.length / dim
  let inside = 0
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++)
      if (d[i * m + j] <= radii[j]) {
        inside++
        break
      }
  return n ? inside / n : 0
}

/** precision: generated samples inside the real manifold; recall: real samples inside the generated one. */
export function knnPrecisionRecall(real: Float32Array, fake: Float32Array, dim: number, k = 3): { precision: number; recall: number } {
  if (real.length % dim || fake.length % dim) throw rangeError(`feature arrays must hold whole rows of ${dim} values`)
  if (real.length / dim <= k || fake.length / dim <= k) throw rangeError(`k-NN precision/recall needs more than k = ${k} samples on each side`)
  return { precision: coverage(fake, real, dim, k), recall: coverage(real, fake, dim, k) }
}

/** Images [n, 3, size, size] averaged down to [n, 3 * 8 * 8] features (size a multiple of 8). */
export function imageFeatures(pixels: Float32Array, n: number, size: number): Float32Array {
  if (size % 8) throw rangeError(`image size ${size} is not a multiple of 8`)
  const f = size / 8
  const out = new Float32Array(n * 192)
  for (let i = 0; i < n; i++)
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 8; y++)
        for (let x = 0; x < 8; x++) {
          let s = 0
          for (let dy = 0; dy < f; dy++)
            for (let dx = 0; dx < f; dx++) s += pixels[((i * 3 + c) * size + y * f + dy) * size + x * f + dx]
          out[i * 192 + (c * 8 + y) * 8 + x] = s / (f * f)
        }
  return out
}
