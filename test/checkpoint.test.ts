// Checkpoints: safetensors round trip, clear errors on damaged files, and a resumed run that continues
// bit-for-bit the run it interrupted (CPU backend).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, expect, it } from 'vitest'

import { ring8 } from '../src/data/toy2d.js'
import { Device } from '../src/index.js'
import { readSafetensors, writeSafetensors } from '../src/train/safetensors.js'
import { mixtureTask } from '../src/train/tasks.js'
import { trainGan as train2d, type TrainConfig } from '../src/train/trainer.js'

const dir = mkdtempSync(path.join(tmpdir(), 'bssn-ckpt-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('safetensors round-trips tensors and metadata; damaged files give clear errors', () => {
  const file = path.join(dir, 'a.safetensors')
  const a = Float32Array.from([1, 2, 3, 4, 5, 6])
  writeSafetensors(file, { 'x.weight': { shape: [2, 3], data: a }, b: { shape: [1], data: Float32Array.of(7) } }, { step: '3' })
  const back = readSafetensors(file)
  expect(back.tensors['x.weight']).toEqual({ shape: [2, 3], data: a })
  expect(back.metadata.step).toBe('3')
  const bytes = readFileSync(file)
  writeFileSync(path.join(dir, 'short.safetensors'), bytes.subarray(0, bytes.length - 5))
  expect(() => readSafetensors(path.join(dir, 'short.safetensors'))).toThrow(/does not fit the file or its shape \(truncated\?\)/)
  const garbled = Buffer.from(bytes)
  garbled[10] = 0x7b
  garbled[11] = 0x7b
  writeFileSync(path.join(dir, 'bad.safetensors'), garbled)
  expect(() => readSafetensors(path.join(dir, 'bad.safetensors'))).toThrow(/not a valid safetensors checkpoint/)
  writeFileSync(path.join(dir, 'tiny.safetensors'), Buffer.from([1, 2, 3]))
  expect(() => readSafetensors(path.join(dir, 'tiny.safetensors'))).toThrow(/shorter than its 8-byte header/)
})

it('a resumed run equals the uninterrupted one, bit for bit', async () => {
  const base = (out: string, steps: number, resume?: string): TrainConfig => ({
    norm: 'bssn',
    scale: 1.5,
    task: mixtureTask(ring8, 16),
    steps,
    batch: 32,
    lr: 1e-3,
    betas: [0.5, 0.999],
    nDis: 1,
    seed: 7,
    evalEvery: 10,
    evalSamples: 200,
    device: Device.cpu(),
    out,
    checkpointEvery: 10,
    resume,
  })
  const whole = await train2d(base(path.join(dir, 'whole'), 30))
  await train2d(base(path.join(dir, 'part'), 20))
  const resumed = await train2d(base(path.join(dir, 'part'), 30, path.join(dir, 'part', 'checkpoint.safetensors')))
  expect(resumed.samples).toEqual(whole.samples)
  const strip = (h: typeof whole.history) => h.map(({ seconds: _s, ...r }) => r)
  expect(strip(resumed.history)).toEqual(strip(whole.history))
  const keys = Object.keys(readSafetensors(path.join(dir, 'whole', 'checkpoint.safetensors')).tensors)
  expect(keys).toContain('discriminator.0.parametrizations.weight.original')
  expect(keys).toContain('discriminator.0.parametrizations.weight.0._u')
  expect(keys).toContain('optimizer.generator.0.weight.exp_avg')
})

it('refuses a checkpoint of another architecture or normalization', async () => {
  const cfg = (norm: 'none' | 'bssn', width: number, resume?: string): TrainConfig => ({
    norm, scale: 1, task: mixtureTask(ring8, width), steps: 2, batch: 8, lr: 1e-3, betas: [0.5, 0.999], nDis: 1, seed: 1, evalEvery: 2,
    evalSamples: 10, device: Device.cpu(), out: path.join(dir, `arch-${norm}-${width}`), checkpointEvery: 2, resume,
  })
  await train2d(cfg('none', 8))
  const ckpt = path.join(dir, 'arch-none-8', 'checkpoint.safetensors')
  await expect(train2d(cfg('none', 12, ckpt))).rejects.toThrow(/has shape \[8, 2\], the model expects \[12, 2\]/)
  await expect(train2d(cfg('bssn', 8, ckpt))).rejects.toThrow(/has no discriminator.0.parametrizations.weight.original/)
})
