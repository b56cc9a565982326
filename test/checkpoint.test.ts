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
import { checkResume, trainGan as train2d, type TrainConfig } from '../src/train/trainer.js'

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
  expect(() => readSafetensors(path.join(dir, 'short.safetensors'))).toThrow(/is outside the \d+ bytes of data \(truncated\?\)/)
  const garbled = Buffer.from(bytes)
  garbled[10] = 0x7b
  garbled[11] = 0x7b
  writeFileSync(path.join(dir, 'bad.safetensors'), garbled)
  expect(() => readSafetensors(path.join(dir, 'bad.safetensors'))).toThrow(/bad.safetensors is not a usable checkpoint: /)
  writeFileSync(path.join(dir, 'tiny.safetensors'), Buffer.from([1, 2, 3]))
  expect(() => readSafetensors(path.join(dir, 'tiny.safetensors'))).toThrow(/fewer than the 8 of its header length/)
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

/** A file's header and data, and the file rebuilt from them (for damaging one thing at a time). */
function parse(bytes: Buffer): { header: Record<string, any>; data: Buffer } {
  const length = Number(bytes.readBigUInt64LE(0))
  return { header: JSON.parse(bytes.subarray(8, 8 + length).toString()), data: bytes.subarray(8 + length) }
}
function build(header: unknown, data: Buffer): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header))
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(json.length))
  return Buffer.concat([length, json, data])
}

it('damaged checkpoints of every kind are refused with ERR_BSSN_BAD_CHECKPOINT, saying what is wrong', async () => {
  const good = path.join(dir, 'good')
  const config: TrainConfig = {
    norm: 'bssn', scale: 1.5, task: mixtureTask(ring8, 8), steps: 2, batch: 8, lr: 1e-3, betas: [0.5, 0.999], nDis: 1, seed: 3, evalEvery: 2,
    evalSamples: 10, device: Device.cpu(), out: good, checkpointEvery: 2,
  }
  await train2d(config)
  const bytes = readFileSync(path.join(good, 'checkpoint.safetensors'))
  const check = (file: string) => checkResume(file, config, mixtureTask(ring8, 8))
  await expect(check(path.join(good, 'checkpoint.safetensors'))).resolves.toMatchObject({ step: 2 })

  const { header, data } = parse(bytes)
  const names = Object.keys(header).filter((k) => k !== '__metadata__')
  const first = names.find((k) => header[k].data_offsets[0] === 0)!
  const sized = (n: string) => header[n].data_offsets[1] - header[n].data_offsets[0]
  // Two tensors of the same size, the later one pointed at the earlier one's bytes: an overlap.
  const [early, late] = names.flatMap((a) => names.filter((b) => b !== a && sized(a) === sized(b) && header[a].data_offsets[0] < header[b].data_offsets[0]).map((b) => [a, b]))[0]
  const edit = (f: (h: Record<string, any>) => void) => {
    const h = structuredClone(header)
    f(h)
    return build(h, data)
  }
  const poke = (value: number) => {
    const d = Buffer.from(data)
    d.writeFloatLE(value, 0)
    return build(header, d)
  }
  const rebuilt = (f: (t: Record<string, { shape: number[]; data: Float32Array }>) => void) => {
    const { tensors, metadata } = readSafetensors(path.join(good, 'checkpoint.safetensors'))
    f(tensors)
    const file = path.join(dir, 'rebuilt.safetensors')
    writeSafetensors(file, tensors, metadata)
    return readFileSync(file)
  }
  const shapeOf = header['discriminator.0.parametrizations.weight.original'].shape
  const cases: Array<[string, Buffer, RegExp]> = [
    ['truncated', bytes.subarray(0, bytes.length - 5), /is outside the \d+ bytes of data \(truncated\?\)/],
    ['shorter than 8 bytes', bytes.subarray(0, 4), /fewer than the 8 of its header length/],
    ['header length beyond the file', Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), bytes.subarray(8)]), /the header claims \d+ bytes but the file has/],
    ['header not JSON', build('{{ not json', data), /its header is not JSON/],
    ['header an array', build('[1, 2]', data), /its header is not a JSON object/],
    ['wrong dtype', edit((h) => (h[first].dtype = 'F16')), /has dtype "F16"; bssn checkpoints hold F32/],
    ['non-integer shape', edit((h) => (h[first].shape = ['a'])), /has shape \["a"\], not a list of non-negative integers/],
    ['offsets a number', edit((h) => (h[first].data_offsets = 5)), /has data_offsets 5, not two non-negative integers/],
    ['offsets not numbers', edit((h) => (h[first].data_offsets = ['0', 'x'])), /has data_offsets \["0","x"\], not two non-negative integers/],
    ['offsets beyond the data', edit((h) => (h[first].data_offsets = [0, 1e9])), /is outside the \d+ bytes of data/],
    ['offsets against the shape', edit((h) => (h[first].shape = [1])), /is \d+ bytes, its shape \[1\] of F32 needs 4/],
    ['overlapping offsets', edit((h) => (h[late].data_offsets = [...h[early].data_offsets])), /overlaps another tensor's/],
    ['a gap in the data', edit((h) => delete h[first]), /bytes \[0, \d+\) of the data belong to no tensor/],
    ['NaN', poke(NaN), /holds NaN at index 0: values must be finite/],
    ['Infinity', poke(-Infinity), /holds -Infinity at index 0: values must be finite/],
    ['step not a number', edit((h) => (h.__metadata__.step = 'abc')), /its step is "abc", not a whole number/],
    ['step not a string', edit((h) => (h.__metadata__.step = 5)), /metadata "step" is 5, not a string/],
    ['optimizer step', edit((h) => (h.__metadata__['optimizer.generator.step'] = '-1')), /its optimizer.generator.step is "-1", not a whole number/],
    ['config not JSON', edit((h) => (h.__metadata__.config = '{')), /its config is not JSON/],
    ['another format', edit((h) => (h.__metadata__.format = 'other')), /its format is "other", expected "bssn-gan-1"/],
    ['missing tensor', rebuilt((t) => delete t['discriminator.0.parametrizations.weight.original']), /it has no discriminator.0.parametrizations.weight.original/],
    ['extra tensor', rebuilt((t) => (t['discriminator.9.weight'] = { shape: [1], data: Float32Array.of(1) })), /it has discriminator.9.weight, which this model does not have/],
    ['shape of another model', rebuilt((t) => (t['discriminator.0.parametrizations.weight.original'].shape = [...shapeOf].reverse())), new RegExp(`has shape \\[${[...shapeOf].reverse().join(', ')}\\], the model expects \\[${shapeOf.join(', ')}\\]`)],
    ['negative second moment', rebuilt((t) => (t['optimizer.generator.0.weight.exp_avg_sq'].data[0] = -1)), /holds a negative second moment/],
    ['zero power-iteration vector', rebuilt((t) => t['discriminator.0.parametrizations.weight.0._u'].data.fill(0)), /_u is all zeros/],
  ]
  for (const [what, damaged, message] of cases) {
    const file = path.join(dir, 'damaged.safetensors')
    writeFileSync(file, damaged)
    const error = await check(file).then(() => undefined, (e: unknown) => e as Error & { code?: string })
    expect(error, what).toBeDefined()
    expect(error!.code, `${what}: ${error!.message}`).toBe('ERR_BSSN_BAD_CHECKPOINT')
    expect(error!.message, what).toMatch(/damaged\.safetensors is not a usable checkpoint: /)
    expect(error!.message, what).toMatch(message)
  }
  // The metrics.jsonl beside a checkpoint is read when resuming: a damaged line is refused the same way.
  writeFileSync(path.join(good, 'metrics.jsonl'), readFileSync(path.join(good, 'metrics.jsonl'), 'utf8') + '{"step": 1, "lossD"\n')
  await expect(check(path.join(good, 'checkpoint.safetensors'))).rejects.toMatchObject({ code: 'ERR_BSSN_BAD_CHECKPOINT', message: expect.stringMatching(/metrics\.jsonl line 2 is not a metrics record/) })
  // The training itself refuses one too (what a worker does), before changing anything.
  writeFileSync(path.join(dir, 'nan.safetensors'), poke(NaN))
  await expect(train2d({ ...config, out: undefined, steps: 4, resume: path.join(dir, 'nan.safetensors') })).rejects.toMatchObject({ code: 'ERR_BSSN_BAD_CHECKPOINT' })
})
