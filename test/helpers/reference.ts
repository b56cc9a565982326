// The float64 reference of the normalization semantics, written from the specification and independent of
// the native code: W1 and W2 are built as dense matrices by explicitly permuting the weight's axes.
import type { NormalizationMode } from '../../src/index.js'
import { expectCloseArray } from './expect.js'

export interface Matrix {
  rows: number
  cols: number
  data: Float64Array // row-major
}

// The tensor `w` of `shape` with its axes permuted by `perm`, flattened row-major, viewed as rows x (rest).
function permutedMatrix(w: ArrayLike<number>, shape: readonly number[], perm: readonly number[]): Matrix {
  const strides = shape.map((_, a) => shape.slice(a + 1).reduce((x, y) => x * y, 1))
  const pshape = perm.map((a) => shape[a])
  const pstrides = perm.map((a) => strides[a])
  const n = shape.reduce((x, y) => x * y, 1)
  const data = new Float64Array(n)
  const idx = new Array<number>(pshape.length).fill(0)
  for (let flat = 0; flat < n; flat++) {
    let src = 0
    for (let a = 0; a < idx.length; a++) src += idx[a] * pstrides[a]
    data[flat] = w[src]
    for (let a = idx.length - 1; a >= 0; a--) {
      if (++idx[a] < pshape[a]) break
      idx[a] = 0
    }
  }
  return { rows: pshape[0], cols: n / pshape[0], data }
}

/** W1: `dim` moved to the front, reshaped to (shape[dim], rest); W2: the first two axes of that swapped. */
export function reshapes(w: ArrayLike<number>, shape: readonly number[], dim: number): { W1: Matrix; W2: Matrix } {
  const nd = shape.length
  const d = (dim + nd) % nd
  const perm1 = [d, ...shape.map((_, a) => a).filter((a) => a !== d)]
  const perm2 = [perm1[1], perm1[0], ...perm1.slice(2)]
  return { W1: permutedMatrix(w, shape, perm1), W2: permutedMatrix(w, shape, perm2) }
}

function mulVec(M: Matrix, x: Float64Array): Float64Array {
  const y = new Float64Array(M.rows)
  for (let r = 0; r < M.rows; r++) {
    let s = 0
    for (let c = 0; c < M.cols; c++) s += M.data[r * M.cols + c] * x[c]
    y[r] = s
  }
  return y
}

function mulVecT(M: Matrix, x: Float64Array): Float64Array {
  const y = new Float64Array(M.cols)
  for (let r = 0; r < M.rows; r++) for (let c = 0; c < M.cols; c++) y[c] += M.data[r * M.cols + c] * x[r]
  return y
}

export function norm(x: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < x.length; i++) s += x[i] * x[i]
  return Math.sqrt(s)
}

function normalize(x: Float64Array, eps: number): Float64Array {
  const n = Math.max(norm(x), eps)
  return x.map((e) => e / n)
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i] * b[i]
  return s
}

export interface RefState {
  u1: Float64Array
  v1: Float64Array
  u2?: Float64Array
  v2?: Float64Array
}

type LayerState = { u: Float32Array; v: Float32Array; u2?: Float32Array; v2?: Float32Array }

/** Expects every layer's state of `norm` (getState) within `tolerance` of the reference's `states`. */
export async function expectStatesClose(norm: { getState(i: number): Promise<LayerState> }, states: RefState[], tolerance: number): Promise<void> {
  for (const [i, want] of states.entries()) {
    const got = await norm.getState(i)
    expectCloseArray(got.u, want.u1, tolerance, `layer ${i} u`)
    expectCloseArray(got.v, want.v1, tolerance, `layer ${i} v`)
    if (got.u2) expectCloseArray(got.u2, want.u2!, tolerance, `layer ${i} u2`)
    if (got.v2) expectCloseArray(got.v2, want.v2!, tolerance, `layer ${i} v2`)
  }
}

/** A BSSN layer state (float32, as getState returns it) as the reference's float64 state. */
export function toRefState(s: LayerState): RefState {
  return { u1: Float64Array.from(s.u), v1: Float64Array.from(s.v), u2: s.u2 && Float64Array.from(s.u2), v2: s.v2 && Float64Array.from(s.v2) }
}

export interface RefOptions {
  mode: NormalizationMode
  scale: number
  eps: number
}

export interface RefResult {
  out: Float64Array
  sigma1: number
  sigma2: number
  divisor: number
}

// `iterations` power iterations (0: eval) on M with state (u, v), then sigma = u^T M v.
function sigmaOf(M: Matrix, state: { u: Float64Array; v: Float64Array }, iterations: number, eps: number): number {
  for (let it = 0; it < iterations; it++) {
    state.v = normalize(mulVecT(M, state.u), eps)
    state.u = normalize(mulVec(M, state.v), eps)
  }
  return dot(state.u, mulVec(M, state.v))
}

/** One forward of the reference: advances `state` (mutated) and returns the normalized weight and sigmas. */
export function referenceForward(
  w: ArrayLike<number>,
  shape: readonly number[],
  dim: number,
  options: RefOptions,
  state: RefState,
  iterations: number,
): RefResult {
  const bidirectional = options.mode === 'bsn' || options.mode === 'bssn'
  let sigma1: number
  let sigma2: number
  if (shape.length === 1) {
    sigma1 = sigma2 = norm(w)
  } else {
    const { W1, W2 } = reshapes(w, shape, dim)
    const s1 = { u: state.u1, v: state.v1 }
    sigma1 = sigmaOf(W1, s1, iterations, options.eps)
    state.u1 = s1.u
    state.v1 = s1.v
    sigma2 = sigma1
    if (shape.length > 2 && bidirectional) {
      const s2 = { u: state.u2!, v: state.v2! }
      sigma2 = sigmaOf(W2, s2, iterations, options.eps)
      state.u2 = s2.u
      state.v2 = s2.v
    }
  }
  const divisor = bidirectional ? (sigma1 + sigma2) / 2 : sigma1
  const c = options.mode === 'ssn' || options.mode === 'bssn' ? options.scale : 1
  const out = Float64Array.from(w, (x) => (divisor === 0 ? 0 : (c * x) / divisor))
  return { out, sigma1, sigma2, divisor }
}

/** The largest singular value of M, by power iteration on M^T M run to convergence in float64. */
export function largestSingularValue(M: Matrix): number {
  let v = normalize(Float64Array.from({ length: M.cols }, (_, i) => Math.sin(i + 1) + 1.5), 1e-300)
  let sigma = 0
  for (let it = 0; it < 5000; it++) {
    const u = mulVec(M, v)
    const next = norm(u)
    v = normalize(mulVecT(M, u), 1e-300)
    if (Math.abs(next - sigma) <= 1e-15 * next) break
    sigma = next
  }
  return sigma
}
