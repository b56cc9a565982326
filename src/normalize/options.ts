// Options of the normalizers, validated once into a complete, frozen form.
import { checkInteger, checkNumber, describe } from '../validate.js'
import { typeError, rangeError } from '../errors.js'

export type NormalizationMode = 'sn' | 'ssn' | 'bsn' | 'bssn'
export const normalizationModes: readonly NormalizationMode[] = ['sn', 'ssn', 'bsn', 'bssn']

export interface BSSNOptions {
  /** 'sn': W / sigma1; 'ssn': c W / sigma1; 'bsn': W / mean(sigma1, sigma2); 'bssn' (default): c W / mean(sigma1, sigma2). */
  mode?: NormalizationMode
  /** The constant c of 'ssn' and 'bssn' (default 1). */
  scale?: number
  /** Power iterations per forward in training mode (default 1). */
  powerIterations?: number
  /** Power iterations run once at construction (default 15, as PyTorch's parametrization). */
  warmupIterations?: number
  /** normalize(x) = x / max(||x||, eps * max|W|) (default 1e-12): relative to the weight's scale, so any scale of W gives the same result. */
  eps?: number
  /** Output axis per weight (default 0; 1 for transposed convolutions). Negative values count from the end. */
  dims?: readonly number[]
  /** Seed of the initial u and v vectors (default 0). */
  seed?: number
}

export interface ResolvedOptions {
  mode: NormalizationMode
  scale: number
  powerIterations: number
  warmupIterations: number
  eps: number
  dims: readonly number[]
  seed: number
}

const known = new Set(['mode', 'scale', 'powerIterations', 'warmupIterations', 'eps', 'dims', 'seed', 'training'])

export function resolveOptions(options: unknown, layerCount: number): ResolvedOptions {
  if (options === undefined) options = {}
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw typeError(`expected options to be an object, got ${describe(options)}`)
  const o = options as Record<string, unknown>
  for (const key of Object.keys(o)) if (!known.has(key)) throw typeError(`unknown option '${key}'`)

  const mode = o.mode ?? 'bssn'
  if (typeof mode !== 'string' || !normalizationModes.includes(mode as NormalizationMode))
    throw typeError(`expected mode to be one of ${normalizationModes.map((m) => `'${m}'`).join(', ')}, got ${describe(mode)}`)
  const scale = checkNumber(o.scale ?? 1, 'scale')
  if (!(scale > 0)) throw rangeError(`expected scale > 0 (the constant c multiplies the normalized weight), got ${scale}`)
  if (scale !== 1 && (mode === 'sn' || mode === 'bsn'))
    throw rangeError(`scale applies to modes 'ssn' and 'bssn' only; mode '${mode}' takes none (got scale ${scale})`)
  const powerIterations = checkInteger(o.powerIterations ?? 1, 'powerIterations', 1, 1_000_000)
  const warmupIterations = checkInteger(o.warmupIterations ?? 15, 'warmupIterations', 0, 1_000_000)
  const eps = checkNumber(o.eps ?? 1e-12, 'eps')
  if (!(eps > 0)) throw rangeError(`expected eps > 0, got ${eps}`)
  const seed = checkInteger(o.seed ?? 0, 'seed', 0)

  let dims: number[]
  if (o.dims === undefined) {
    dims = new Array<number>(layerCount).fill(0)
  } else {
    if (!Array.isArray(o.dims)) throw typeError(`expected dims to be an array of integers, got ${describe(o.dims)}`)
    if (o.dims.length !== layerCount)
      throw rangeError(`expected one dim per weight (${layerCount}), got ${o.dims.length}`)
    dims = o.dims.map((d, i) => checkInteger(d, `dims[${i}]`, -8, 7))
  }
  return Object.freeze({ mode: mode as NormalizationMode, scale, powerIterations, warmupIterations, eps, dims: Object.freeze(dims), seed })
}
