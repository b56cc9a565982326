// Rank 0's training state to every rank, at the start of a run and at a resume (only then: afterwards the ranks stay
// equal by applying the same averaged gradients): the step, the networks' weights and BatchNorm statistics, the
// optimizers' step counts and moments, and each normalized layer's power-iteration vectors u and v.
import { keep, tidy } from '../autograd/scope.js'
import { BatchNorm2d } from '../nn/batch_norm.js'
import type { Module } from '../nn/module.js'
import type { SpectralNorm } from '../nn/spectral_norm.js'
import type { Tensor } from '../tensor.js'
import type { Adam } from '../train/adam.js'
import type { ProcessGroup } from './process_group.js'

export interface BroadcastParts {
  generator: Module
  discriminator: Module
  optG: Adam
  optD: Adam
  normalization?: SpectralNorm
}

const stateTensors = (m: Module): Tensor[] => [
  ...m.parameters(),
  ...m.modules().flatMap((x) => (x instanceof BatchNorm2d ? [x.runningMean, x.runningVar] : [])),
]

// Integers up to 2^40 as two float32 values, exactly.
const split = (n: number): [number, number] => [Math.floor(n / 2 ** 20), n % 2 ** 20]
const join = (hi: number, lo: number): number => hi * 2 ** 20 + lo

/** Makes every rank hold rank 0's state; resolves with rank 0's step (every rank's, after). */
export async function broadcastTrainingState(group: ProcessGroup, parts: BroadcastParts, step: number): Promise<number> {
  const device = group.device
  const opts = [parts.optG, parts.optD] as const
  // What rank 0 has: the step, both optimizers' step counts, and which parameters have Adam moments yet.
  const hasMoments = opts.flatMap((o) => o.state().moments.map((s) => (s ? 1 : 0)))
  const headerValues = new Float32Array([...split(step), ...opts.flatMap((o) => split(o.state().step)), ...hasMoments])
  const header = keep(device.tensor(headerValues, [headerValues.length]))
  let rootHeader: Float32Array
  try {
    group.broadcast(header, 0)
    rootHeader = await header.toArray()
  } finally {
    header.dispose()
  }
  const rootStep = join(rootHeader[0], rootHeader[1])
  // The moments rank 0 has: made here (zeros, then overwritten) where this rank has none, so the broadcasts pair up.
  let at = 6
  opts.forEach((opt, k) => {
    const { moments } = opt.state()
    const wanted = moments.map((_, i) => rootHeader[at + i] === 1)
    at += moments.length
    const made = tidy(() =>
      moments.map((s, i) => (wanted[i] && !s ? { m: opt.params[i].device.zeros(opt.params[i].shape), v: opt.params[i].device.zeros(opt.params[i].shape) } : undefined)),
    )
    try {
      opt.loadState(join(rootHeader[2 + 2 * k], rootHeader[3 + 2 * k]), made)
    } finally {
      made.forEach((s) => [s?.m, s?.v].forEach((t) => t?.dispose()))
    }
    opt.state().moments.forEach((s, i) => {
      if (!wanted[i] || !s) return
      group.broadcast(s.m, 0)
      group.broadcast(s.v, 0)
    })
  })
  for (const t of [...stateTensors(parts.generator), ...stateTensors(parts.discriminator)]) group.broadcast(t, 0)
  const sn = parts.normalization
  if (sn) {
    for (let i = 0; i < sn.layers.length; i++) {
      const state = await sn.normalizer.getState(i)
      const keys = (['u', 'v', 'u2', 'v2'] as const).filter((k) => state[k] && state[k]!.length > 0)
      const tensors = keys.map((k) => keep(device.tensor(state[k]!, [state[k]!.length])))
      try {
        tensors.forEach((t) => group.broadcast(t, 0))
        const values = await Promise.all(tensors.map((t) => t.toArray()))
        if (group.rank !== 0) sn.normalizer.setState(i, Object.fromEntries(keys.map((k, j) => [k, values[j]])))
      } finally {
        tensors.forEach((t) => t.dispose())
      }
    }
  }
  await group.synchronize()
  return rootStep
}
