// safetensors files (the format PyTorch and Hugging Face use): an 8-byte little-endian header length, a JSON
// header of {name: {dtype, shape, data_offsets}} plus "__metadata__" (strings), then the raw data. Written
// atomically (temporary file, fsync, rename), so a crash never leaves a half-written checkpoint in place.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { bssnError, rangeError } from '../errors.js'

export interface StoredTensor {
  shape: number[]
  data: Float32Array
}

export function writeSafetensors(file: string, tensors: Record<string, StoredTensor>, metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  const names = Object.keys(tensors).sort()
  for (const name of names) {
    const t = tensors[name]
    const bytes = t.data.length * 4
    if (t.shape.reduce((a, b) => a * b, 1) !== t.data.length) throw rangeError(`safetensors: ${name} has ${t.data.length} values for shape [${t.shape.join(', ')}]`)
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (json.length % 8)) % 8) // data aligned to 8 bytes
  const head = Buffer.alloc(8)
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)))
  const tmp = `${file}.tmp-${process.pid}`
  const fd = openSync(tmp, 'w')
  try {
    writeSync(fd, head)
    writeSync(fd, json)
    for (const name of names) {
      const d = tensors[name].data
      writeSync(fd, new Uint8Array(d.buffer, d.byteOffset, d.byteLength))
    }
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
}

/** A checkpoint that cannot be used as it is: ERR_BSSN_BAD_CHECKPOINT, naming the file and what is wrong. */
export function badCheckpoint(file: string, why: string): Error {
  return bssnError(`${file} is not a usable checkpoint: ${why}`, 'ERR_BSSN_BAD_CHECKPOINT')
}

const isIndex = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0

/**
 * Reads a safetensors file, checking all of its structure before using any of it: the header length and JSON
 * within the file, every entry's dtype (F32), shape (non-negative integers) and data_offsets (two integers within
 * the data, end - start = 4 x the element count), entries neither overlapping nor leaving gaps (the format's
 * rule), and __metadata__ a map of strings. Anything else throws ERR_BSSN_BAD_CHECKPOINT saying what is wrong.
 */
export function readSafetensors(file: string): { tensors: Record<string, StoredTensor>; metadata: Record<string, string> } {
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch (error) {
    throw badCheckpoint(file, `it cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`)
  }
  const fail = (why: string): never => {
    throw badCheckpoint(file, why)
  }
  if (bytes.length < 8) fail(`it has ${bytes.length} bytes, fewer than the 8 of its header length (truncated?)`)
  const length = bytes.readBigUInt64LE(0)
  if (length > BigInt(bytes.length - 8)) fail(`the header claims ${length} bytes but the file has ${bytes.length - 8} after the length (truncated?)`)
  const headerEnd = 8 + Number(length)
  let header: unknown
  try {
    header = JSON.parse(bytes.subarray(8, headerEnd).toString('utf8'))
  } catch {
    return fail('its header is not JSON (corrupted?)')
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return fail('its header is not a JSON object')
  const data = bytes.subarray(headerEnd)
  const tensors: Record<string, StoredTensor> = {}
  let metadata: Record<string, string> = {}
  const spans: Array<[number, number, string]> = []
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(`the header entry ${JSON.stringify(name)} is not an object`)
    if (name === '__metadata__') {
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) if (typeof v !== 'string') fail(`metadata ${JSON.stringify(k)} is ${JSON.stringify(v)}, not a string`)
      metadata = entry as Record<string, string>
      continue
    }
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>
    if (dtype !== 'F32') fail(`${name} has dtype ${JSON.stringify(dtype)}; bssn checkpoints hold F32`)
    if (!Array.isArray(shape) || !shape.every(isIndex)) fail(`${name} has shape ${JSON.stringify(shape)}, not a list of non-negative integers`)
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) fail(`${name} has data_offsets ${JSON.stringify(offsets)}, not two non-negative integers`)
    const [start, end] = offsets as [number, number]
    const count = (shape as number[]).reduce((a, b) => a * b, 1)
    if (!(start <= end && end <= data.length)) fail(`${name}'s data [${start}, ${end}) is outside the ${data.length} bytes of data (truncated?)`)
    if (end - start !== count * 4) fail(`${name}'s data [${start}, ${end}) is ${end - start} bytes, its shape [${(shape as number[]).join(', ')}] of F32 needs ${count * 4}`)
    spans.push([start, end, name])
    const copy = new Float32Array(count)
    new Uint8Array(copy.buffer).set(data.subarray(start, end))
    tensors[name] = { shape: shape as number[], data: copy }
  }
  // The data must be covered exactly once: an overlap or a gap means the offsets were damaged.
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let at = 0
  for (const [start, end, name] of spans) {
    if (start < at) fail(`${name}'s data [${start}, ${end}) overlaps another tensor's`)
    if (start > at) fail(`bytes [${at}, ${start}) of the data belong to no tensor (damaged offsets?)`)
    at = end
  }
  if (at !== data.length) fail(`the last ${data.length - at} bytes of the data belong to no tensor (damaged offsets?)`)
  return { tensors, metadata }
}
