// Matrices of known spectrum: after warm-up, sigma1 and sigma2 are the true largest singular values of the
// two reshapes W1 and W2.
import { expect, it } from 'vitest'

import { BSSN } from '../src/index.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseNumber } from './helpers/expect.js'
import { orthonormal } from './helpers/random.js'
import { largestSingularValue, reshapes } from './helpers/reference.js'

// W = sum_t s_t a_{alpha(t)} (x) b_{beta(t)} (x) c_t with orthonormal families a, b, c, for shape
// [cOut, cIn, kh, kw]: singular values of W1 are the norms of s over each alpha group, of W2 over each beta group.
function knownKernel(cOut: number, cIn: number, k: number, terms: Array<[number, number, number]>, seed: number) {
  const a = orthonormal(cOut, 2, seed)
  const b = orthonormal(cIn, 2, seed + 1)
  const c = orthonormal(k, terms.length, seed + 2)
  const w = new Float32Array(cOut * cIn * k)
  for (const [t, [alpha, beta, s]] of terms.entries())
    for (let o = 0; o < cOut; o++)
      for (let i = 0; i < cIn; i++) for (let r = 0; r < k; r++) w[(o * cIn + i) * k + r] += s * a[alpha][o] * b[beta][i] * c[t][r]
  const groupNorm = (pick: 0 | 1) =>
    Math.max(...[0, 1].map((g) => Math.hypot(...terms.filter((t) => t[pick] === g).map((t) => t[2]))))
  return { w, sigma1: groupNorm(0), sigma2: groupNorm(1) }
}

// sigma1 = max(hypot(3, 2), hypot(1.5, 0.5)) = 3.606; sigma2 = max(hypot(3, 1.5), hypot(2, 0.5)) = 3.354
const terms: Array<[number, number, number]> = [
  [0, 0, 3],
  [0, 1, 2],
  [1, 0, 1.5],
  [1, 1, 0.5],
]

forEachBackend((getDevice) => {
  it('conv kernel of known spectrum: sigma1, sigma2 are the largest singular values of W1, W2', async () => {
    const shape = [12, 10, 3, 3]
    const { w, sigma1, sigma2 } = knownKernel(12, 10, 9, terms, 42)
    // The construction is what the test claims: check it against an independent SVD-free estimate.
    const { W1, W2 } = reshapes(w, shape, 0)
    expectCloseNumber(largestSingularValue(W1), sigma1, 1e-6, 'construction sigma1')
    expectCloseNumber(largestSingularValue(W2), sigma2, 1e-6, 'construction sigma2')
    expect(Math.abs(sigma1 - sigma2)).toBeGreaterThan(0.2)

    using weight = getDevice().tensor(w, shape)
    using bssn = new BSSN([weight], { mode: 'bsn', warmupIterations: 60, seed: 1 })
    const [s] = await bssn.sigmas()
    expectCloseNumber(s.sigma1, sigma1, 1e-5, 'sigma1 after warm-up')
    expectCloseNumber(s.sigma2, sigma2, 1e-5, 'sigma2 after warm-up')
    expectCloseNumber(s.divisor, (sigma1 + sigma2) / 2, 1e-5, 'divisor')
  })

  it('transposed-conv kernel (dim 1): the roles of W1 and W2 swap', async () => {
    const { w, sigma1, sigma2 } = knownKernel(12, 10, 9, terms, 7)
    using weight = getDevice().tensor(w, [12, 10, 3, 3])
    using bssn = new BSSN([weight], { mode: 'bsn', dims: [1], warmupIterations: 60 })
    const [s] = await bssn.sigmas()
    expectCloseNumber(s.sigma1, sigma2, 1e-5, 'sigma1 (rows: axis 1)')
    expectCloseNumber(s.sigma2, sigma1, 1e-5, 'sigma2 (rows: axis 0)')
  })

  it('matrix U diag(s) V^T: sigma is the largest s, and BSSN divides by it', async () => {
    const rows = 20
    const cols = 35
    const s = [5, 2.5, 1, 0.5, 0.25]
    const U = orthonormal(rows, s.length, 3)
    const V = orthonormal(cols, s.length, 4)
    const w = new Float32Array(rows * cols)
    for (let k = 0; k < s.length; k++) for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] += s[k] * U[k][r] * V[k][c]
    using weight = getDevice().tensor(w, [rows, cols])
    using bssn = new BSSN([weight], { mode: 'bssn', scale: 2, warmupIterations: 30 })
    const out = await bssn.forward()[0].toArray()
    const [sig] = await bssn.sigmas()
    expectCloseNumber(sig.sigma1, 5, 1e-6, 'sigma1')
    expectCloseNumber(sig.sigma2, 5, 1e-6, 'sigma2 (= sigma1 for a matrix)')
    // c W / sigma has largest singular value c
    const { W1 } = reshapes(out, [rows, cols], 0)
    expectCloseNumber(largestSingularValue(W1), 2, 1e-5, 'normalized spectral norm')
  })
})
