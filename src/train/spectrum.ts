// The top singular values of a weight's two reshapes, W1 = [out, in * k] and W2 = [in, out * k] (the views BSSN
// normalizes), computed on the host from the weight's values: for the report's end-of-run spectra.
export interface LayerSpectrum {
  w1: number[]
  w2: number[]
}

/** Top `count` singular values of W1 and W2 of a weight of `shape` (row-major values), largest first. */
export function topSingularValues(values: ArrayLike<number>, shape: readonly number[], count = 5): LayerSpectrum {
  const k = shape.slice(2).reduce((a, b) => a * b, 1)
  const [out, inn] = [shape[0], shape[1] ?? 1]
  // W1[o][(i*k + r)] = W[o, i, r]; W2[i][(o*k + r)] = W[o, i, r].
  const w1 = (o: number, col: number) => values[o * inn * k + col]
  const w2 = (i: number, col: number) => values[Math.floor(col / k) * inn * k + i * k + (col % k)]
  return { w1: topOf(w1, out, inn * k, count), w2: shape.length < 2 ? topOf(w1, out, inn * k, count) : topOf(w2, inn, out * k, count) }
}

// Singular values of a rows x cols matrix = square roots of the eigenvalues of the smaller Gram matrix, found by
// power iteration with deflation (enough accuracy for a report; float64 throughout).
function topOf(at: (row: number, col: number) => number, rows: number, cols: number, count: number): number[] {
  const byRows = rows <= cols
  const n = byRows ? rows : cols
  const gram = new Float64Array(n * n)
  for (let a = 0; a < n; a++)
    for (let b = a; b < n; b++) {
      let s = 0
      if (byRows) for (let j = 0; j < cols; j++) s += at(a, j) * at(b, j)
      else for (let i = 0; i < rows; i++) s += at(i, a) * at(i, b)
      gram[a * n + b] = gram[b * n + a] = s
    }
  const found: { value: number; vector: Float64Array }[] = []
  for (let c = 0; c < Math.min(count, n); c++) {
    let v = Float64Array.from({ length: n }, (_, i) => Math.sin(12.9898 * (i + 1) * (c + 1)) + 0.5)
    let value = 0
    for (let iter = 0; iter < 300; iter++) {
      for (const f of found) {
        const dot = f.vector.reduce((s, x, i) => s + x * v[i], 0)
        for (let i = 0; i < n; i++) v[i] -= dot * f.vector[i]
      }
      const next = new Float64Array(n)
      for (let a = 0; a < n; a++) {
        let s = 0
        for (let b = 0; b < n; b++) s += gram[a * n + b] * v[b]
        next[a] = s
      }
      const norm = Math.hypot(...next)
      if (norm === 0) break
      const previous = value
      value = norm / Math.max(Math.hypot(...v), 1e-300)
      v = next.map((x) => x / norm)
      if (iter > 10 && Math.abs(value - previous) <= 1e-12 * value) break
    }
    found.push({ value, vector: v })
  }
  return found.map((f) => Math.sqrt(Math.max(f.value, 0)))
}
