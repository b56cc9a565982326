// GAN checkpoints in safetensors, with PyTorch's key names where PyTorch has an equivalent:
//   generator.<name>, discriminator.<name>                  parameters (and BatchNorm running stats)
//   discriminator.<layer>.parametrizations.weight.original  a normalized layer's raw weight
//   discriminator.<layer>.parametrizations.weight.0._u/_v   its power-iteration vectors (W1)
//   discriminator.<layer>.parametrizations.weight.0._u2/_v2 the second direction (W2), bsn/bssn on >= 3-D weights
//   optimizer.<generator|discriminator>.<name>.exp_avg / .exp_avg_sq   Adam moments
// Metadata: format, step, both optimizers' step counts, and the run's config (JSON).
import type { Module } from '../nn/module.js'
import type { SpectralNorm } from '../nn/spectral_norm.js'
import type { Tensor } from '../tensor.js'
import type { Adam } from './adam.js'
import { badCheckpoint, readSafetensors, writeSafetensors, type StoredTensor } from './safetensors.js'

export interface GanCheckpointParts {
  generator: Module
  discriminator: Module
  optG: Adam
  optD: Adam
  normalization?: SpectralNorm
}

const FORMAT = 'bssn-gan-1'

function names(parts: GanCheckpointParts): Array<[string, Tensor, 'generator' | 'discriminator', string]> {
  const normalized = new Map<Tensor, string>()
  parts.normalization?.layers.forEach((l) => {
    const entry = parts.discriminator.namedModules().find(([, m]) => (m as unknown) === l)
    if (entry) normalized.set(l.weight, `${entry[0]}.parametrizations.weight.original`)
  })
  const out: Array<[string, Tensor, 'generator' | 'discriminator', string]> = []
  for (const [owner, module] of [['generator', parts.generator], ['discriminator', parts.discriminator]] as const)
    for (const [name, t] of module.namedParameters()) out.push([`${owner}.${normalized.get(t) ?? name}`, t, owner, name])
  return out
}

export async function saveGanCheckpoint(file: string, parts: GanCheckpointParts, step: number, config: unknown): Promise<void> {
  const tensors: Record<string, StoredTensor> = {}
  const pending: Array<Promise<void>> = []
  const put = (key: string, t: Tensor) => pending.push(t.toArray().then((data) => void (tensors[key] = { shape: [...t.shape], data })))
  for (const [key, t] of names(parts)) put(key, t)
  for (const [owner, opt, module] of [['generator', parts.optG, parts.generator], ['discriminator', parts.optD, parts.discriminator]] as const) {
    const { moments } = opt.state()
    module.namedParameters().forEach(([name], i) => {
      const s = moments[i]
      if (!s) return
      put(`optimizer.${owner}.${name}.exp_avg`, s.m)
      put(`optimizer.${owner}.${name}.exp_avg_sq`, s.v)
    })
  }
  const sn = parts.normalization
  if (sn) {
    for (const [i, layer] of sn.layers.entries()) {
      const entry = parts.discriminator.namedModules().find(([, m]) => (m as unknown) === layer)!
      const state = await sn.normalizer.getState(i)
      const base = `discriminator.${entry[0]}.parametrizations.weight.0`
      for (const [k, v] of [['_u', state.u], ['_v', state.v], ['_u2', state.u2], ['_v2', state.v2]] as const)
        if (v && v.length) tensors[`${base}.${k}`] = { shape: [v.length], data: v }
    }
  }
  await Promise.all(pending)
  writeSafetensors(file, tensors, {
    format: FORMAT,
    step: String(step),
    'optimizer.generator.step': String(parts.optG.state().step),
    'optimizer.discriminator.step': String(parts.optD.state().step),
    config: JSON.stringify(config),
  })
}

/** Every tensor a checkpoint of `parts` holds, with its shape; Adam's moments come in optional pairs. */
async function expectedTensors(parts: GanCheckpointParts): Promise<Map<string, { shape: number[]; pair?: string }>> {
  const expected = new Map<string, { shape: number[]; pair?: string }>()
  for (const [key, t] of names(parts)) expected.set(key, { shape: [...t.shape] })
  for (const [owner, module] of [['generator', parts.generator], ['discriminator', parts.discriminator]] as const)
    for (const [name, p] of module.namedParameters()) {
      const base = `optimizer.${owner}.${name}`
      expected.set(`${base}.exp_avg`, { shape: [...p.shape], pair: `${base}.exp_avg_sq` })
      expected.set(`${base}.exp_avg_sq`, { shape: [...p.shape], pair: `${base}.exp_avg` })
    }
  const sn = parts.normalization
  if (sn)
    for (const [i, layer] of sn.layers.entries()) {
      const entry = parts.discriminator.namedModules().find(([, m]) => (m as unknown) === layer)!
      const state = await sn.normalizer.getState(i) // the fresh state: only its sizes are used
      for (const [k, v] of [['_u', state.u], ['_v', state.v], ['_u2', state.u2], ['_v2', state.v2]] as const)
        if (v && v.length) expected.set(`discriminator.${entry[0]}.parametrizations.weight.0.${k}`, { shape: [v.length] })
    }
  return expected
}

const count = (text: string | undefined): number | undefined => (text !== undefined && /^\d{1,15}$/.test(text) ? Number(text) : undefined)

/**
 * Reads and checks a checkpoint for `parts` without changing them: the file's structure (readSafetensors), its
 * metadata (format, integer steps, a JSON object config), and exactly the tensors the model has, each of the
 * model's shape with finite values (second moments >= 0, power-iteration vectors non-zero). Anything else throws
 * ERR_BSSN_BAD_CHECKPOINT naming what is wrong.
 */
export async function checkGanCheckpoint(file: string, parts: GanCheckpointParts): Promise<GanCheckpoint> {
  const saved = readGanCheckpoint(file)
  const { tensors } = saved
  const fail = (why: string): never => {
    throw badCheckpoint(file, why)
  }
  const expected = await expectedTensors(parts)
  for (const [key, { shape, pair }] of expected) {
    const t = tensors[key]
    if (!t) {
      if (pair && !tensors[pair]) continue // a parameter Adam never updated
      fail(`it has no ${key} (another architecture or normalization?)`)
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) fail(`${key} has shape [${t.shape.join(', ')}], the model expects [${shape.join(', ')}]`)
    const bad = t.data.findIndex((x) => !Number.isFinite(x))
    if (bad >= 0) fail(`${key} holds ${t.data[bad]} at index ${bad}: values must be finite`)
    if (key.endsWith('.exp_avg_sq') && t.data.some((x) => x < 0)) fail(`${key} holds a negative second moment`)
    if (/\._[uv]2?$/.test(key) && t.data.every((x) => x === 0)) fail(`${key} is all zeros: a power-iteration vector cannot be`)
  }
  for (const key of Object.keys(tensors)) if (!expected.has(key)) fail(`it has ${key}, which this model does not have (another architecture or normalization?)`)
  return saved
}

export interface GanCheckpoint {
  step: number
  config: Record<string, unknown>
  optimizerSteps: [number, number]
  tensors: Record<string, StoredTensor>
}

/** Reads a GAN checkpoint's structure (readSafetensors) and metadata: format, whole-number steps, a JSON object config. */
export function readGanCheckpoint(file: string): GanCheckpoint {
  const { tensors, metadata } = readSafetensors(file)
  const fail = (why: string): never => {
    throw badCheckpoint(file, why)
  }
  if (metadata.format !== FORMAT) fail(`its format is ${JSON.stringify(metadata.format ?? null)}, expected "${FORMAT}" (a bssn GAN checkpoint)`)
  const step = count(metadata.step) ?? fail(`its step is ${JSON.stringify(metadata.step ?? null)}, not a whole number`)
  const optimizerSteps = (['generator', 'discriminator'] as const).map((owner) => {
    const key = `optimizer.${owner}.step`
    return count(metadata[key]) ?? fail(`its ${key} is ${JSON.stringify(metadata[key] ?? null)}, not a whole number`)
  }) as [number, number]
  let config: unknown
  try {
    config = JSON.parse(metadata.config ?? '')
  } catch {
    fail('its config is not JSON')
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) fail('its config is not a JSON object')
  return { step, config: config as Record<string, unknown>, optimizerSteps, tensors }
}

/** Loads a checkpoint written by saveGanCheckpoint into `parts` (same architecture), once checkGanCheckpoint accepts it; returns its step and config. */
export async function loadGanCheckpoint(file: string, parts: GanCheckpointParts): Promise<{ step: number; config: Record<string, unknown> }> {
  const { step, config, optimizerSteps, tensors } = await checkGanCheckpoint(file, parts)
  const take = (key: string, like: Tensor): Tensor => like.device.tensor(tensors[key].data, like.shape)
  const load = (target: Tensor, key: string) => {
    using source = take(key, target)
    target.copyFrom(source)
  }
  for (const [key, t] of names(parts)) load(t, key)
  for (const [k, [owner, opt, module]] of ([['generator', parts.optG, parts.generator], ['discriminator', parts.optD, parts.discriminator]] as const).entries()) {
    const moments = module.namedParameters().map(([name, p]) => {
      const base = `optimizer.${owner}.${name}`
      return tensors[`${base}.exp_avg`] ? { m: take(`${base}.exp_avg`, p), v: take(`${base}.exp_avg_sq`, p) } : undefined
    })
    opt.loadState(optimizerSteps[k], moments)
    moments.forEach((s) => {
      s?.m.dispose()
      s?.v.dispose()
    })
  }
  const sn = parts.normalization
  if (sn)
    sn.layers.forEach((layer, i) => {
      const entry = parts.discriminator.namedModules().find(([, m]) => (m as unknown) === layer)!
      const get = (k: string) => tensors[`discriminator.${entry[0]}.parametrizations.weight.0.${k}`]?.data
      const u = get('_u')
      const v = get('_v')
      if (u && v) sn.normalizer.setState(i, { u, v, u2: get('_u2'), v2: get('_v2') })
    })
  return { step, config }
}
