// Parity with PyTorch, step by step from the same state: our 'sn' against torch.nn.utils.spectral_norm on real
// Conv2d / ConvTranspose2d / Linear modules, our 'bssn' against the paper's BSSN written in PyTorch
// (test/fixtures/torch_parity.py). Each step: a training forward, the gradient for a given dL/dW_hat, then the same
// SGD update on both sides, so the comparison covers the power iteration state as it evolves with the weights.
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { describe, expect, it } from 'vitest'

import { BSSN, type NormalizationMode } from '../src/index.js'
import { forEachBackend } from './helpers/backends.js'
import { expectCloseArray, expectCloseNumber } from './helpers/expect.js'
import { randomArray } from './helpers/random.js'
import { runTorchScript, torchSkipReason } from './helpers/torch.js'

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'torch_parity.py')
const STEPS = 4
const LR = 0.05
const EPS = 1e-12
const TOL = 5e-6

interface Layer {
  module: 'conv' | 'convT' | 'linear'
  shape: number[]
  dim: number
}

const layers: Layer[] = [
  { module: 'conv', shape: [8, 4, 3, 3], dim: 0 },
  { module: 'convT', shape: [4, 6, 3, 3], dim: 1 },
  { module: 'conv', shape: [16, 8, 1, 1], dim: 0 },
  { module: 'linear', shape: [6, 10], dim: 0 },
]

interface TorchStep {
  out: number[]
  u: number[]
  v: number[]
  u2?: number[]
  v2?: number[]
  sigma1: number
  sigma2?: number
  grad: number[]
}

const suite = torchSkipReason === undefined ? describe : describe.skip
suite(`PyTorch parity${torchSkipReason ? ` (skipped: ${torchSkipReason})` : ''}`, () => {
  forEachBackend((getDevice) => {
    const modes: Array<{ mode: NormalizationMode; scale: number }> = [
      { mode: 'sn', scale: 1 },
      { mode: 'bssn', scale: 1.7 },
    ]
    it.each(modes)('$mode follows PyTorch over $mode training steps with SGD updates', async ({ mode, scale }) => {
      const device = getDevice()
      const job = { mode, scale, eps: EPS, lr: LR, layers: [] as object[] }
      const ours: TorchStep[][] = []
      for (const [index, layer] of layers.entries()) {
        const n = layer.shape.reduce((a, b) => a * b, 1)
        const weight = randomArray(n, 101 + index, 0.2)
        const grads = Array.from({ length: STEPS }, (_, s) => randomArray(n, 1000 * index + s + 7))
        using w = device.tensor(weight, layer.shape)
        using norm = new BSSN([w], { mode, scale, dims: [layer.dim], seed: 3 + index, warmupIterations: 15 })
        const init = await norm.getState(0)
        job.layers.push({
          ...layer,
          weight: Array.from(weight),
          u: Array.from(init.u),
          v: Array.from(init.v),
          u2: init.u2 && Array.from(init.u2),
          v2: init.v2 && Array.from(init.v2),
          grads: grads.map((g) => Array.from(g)),
        })
        const steps: TorchStep[] = []
        for (const grad of grads) {
          const [out] = norm.forward()
          const [sigmas] = await norm.sigmas()
          const state = await norm.getState(0)
          using g = device.tensor(grad, layer.shape)
          const [dw] = norm.backward([g])
          const dwValues = await dw.toArray()
          steps.push({
            out: Array.from(await out.toArray()),
            u: Array.from(state.u),
            v: Array.from(state.v),
            u2: state.u2 && Array.from(state.u2),
            v2: state.v2 && Array.from(state.v2),
            sigma1: sigmas.sigma1,
            sigma2: sigmas.sigma2,
            grad: Array.from(dwValues),
          })
          const current = await w.toArray()
          using next = device.tensor(current.map((x, i) => x - LR * dwValues[i]), layer.shape)
          w.copyFrom(next)
        }
        ours.push(steps)
      }

      const theirs = (await runTorchScript(fixture, [], job)) as { torch: string; layers: TorchStep[][] }
      expect(theirs.layers).toHaveLength(layers.length)
      for (const [index, layer] of layers.entries()) {
        for (let s = 0; s < STEPS; s++) {
          const a = ours[index][s]
          const b = theirs.layers[index][s]
          const what = (x: string) => `${layer.module} ${JSON.stringify(layer.shape)} step ${s}: ${x} (torch ${theirs.torch})`
          expectCloseArray(a.out, b.out, TOL, what('normalized weight'))
          expectCloseArray(a.u, b.u, TOL, what('u'))
          expectCloseArray(a.v, b.v, TOL, what('v'))
          expectCloseNumber(a.sigma1, b.sigma1, TOL, what('sigma1'))
          expectCloseArray(a.grad, b.grad, TOL, what('dL/dW'))
          if (mode === 'bssn' && layer.shape.length > 2) {
            expectCloseArray(a.u2!, b.u2!, TOL, what('u2'))
            expectCloseArray(a.v2!, b.v2!, TOL, what('v2'))
            expectCloseNumber(a.sigma2, b.sigma2!, TOL, what('sigma2'))
          }
        }
      }
    })
  })
})
