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
import { readSafetensors, writeSafetensors, type StoredTensor } from './safetensors.js'

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

/** Loads a checkpoint written by saveGanCheckpoint into `parts` (same architecture); returns its step and config. */
export function loadGanCheckpoint(file: string, parts: GanCheckpointParts): { step: number; config: unknown } {
  const { tensors, metadata } = readSafetensors(file)
  if (metadata.format !== FORMAT) throw new Error(`${file} is not a bssn GAN checkpoint (format '${metadata.format ?? 'none'}')`)
  const take = (key: string, like: Tensor): Tensor => {
    const t = tensors[key]
    if (!t) throw new Error(`${file} has no ${key}: was it written by another architecture or normalization?`)
    if (t.data.length !== like.size) throw new Error(`${file}: ${key} has shape [${t.shape.join(', ')}], the model expects [${like.shape.join(', ')}]`)
    return like.device.tensor(t.data, like.shape)
  }
  const load = (target: Tensor, key: string) => {
    using source = take(key, target)
    target.copyFrom(source)
  }
  for (const [key, t] of names(parts)) load(t, key)
  for (const [owner, opt, module] of [['generator', parts.optG, parts.generator], ['discriminator', parts.optD, parts.discriminator]] as const) {
    const moments = module.namedParameters().map(([name, p]) => {
      const m = tensors[`optimizer.${owner}.${name}.exp_avg`]
      return m ? { m: take(`optimizer.${owner}.${name}.exp_avg`, p), v: take(`optimizer.${owner}.${name}.exp_avg_sq`, p) } : undefined
    })
    opt.loadState(Number(metadata[`optimizer.${owner}.step`] ?? 0), moments)
    moments.forEach((s) => {
      s?.m.dispose()
      s?.v.dispose()
    })
  }
  const sn = parts.normalization
  if (sn) {
    sn.layers.forEach((layer, i) => {
      const entry = parts.discriminator.namedModules().find(([, m]) => (m as unknown) === layer)!
      const base = `discriminator.${entry[0]}.parametrizations.weight.0`
      const get = (k: string) => tensors[`${base}.${k}`]?.data
      const u = get('_u')
      const v = get('_v')
      if (!u || !v) {
        if (layer.weight.shape.length === 1) return
        throw new Error(`${file} has no power-iteration state for discriminator.${entry[0]}: it was not trained with spectral normalization`)
      }
      sn.normalizer.setState(i, { u, v, u2: get('_u2'), v2: get('_v2') })
    })
  }
  return { step: Number(metadata.step), config: JSON.parse(metadata.config ?? 'null') }
}
