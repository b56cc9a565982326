// Seeded float64 random numbers for tests (mulberry32 + Box-Muller), so failures reproduce.

export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function gaussian(random: () => number): number {
  const u1 = random() || 1e-12
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * random())
}

export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const random = rng(seed)
  return Float32Array.from({ length: n }, () => scale * gaussian(random))
}

/** k orthonormal vectors of length n (Gram-Schmidt on Gaussian vectors), k <= n. */
export function orthonormal(n: number, k: number, seed: number): Float64Array[] {
  const random = rng(seed)
  const out: Float64Array[] = []
  while (out.length < k) {
    const x = Float64Array.from({ length: n }, () => gaussian(random))
    for (const q of out) {
      let d = 0
      for (let i = 0; i < n; i++) d += x[i] * q[i]
      for (let i = 0; i < n; i++) x[i] -= d * q[i]
    }
    let s = 0
    for (let i = 0; i < n; i++) s += x[i] * x[i]
    if (s < 1e-12) continue
    const inv = 1 / Math.sqrt(s)
    out.push(x.map((e) => e * inv))
  }
  return out
}
