// safetensors files (the format PyTorch and Hugging Face use): an 8-byte little-endian header length, a JSON
// header of {name: {dtype, shape, data_offsets}} plus "__metadata__" (strings), then the raw data. Written
// atomically (temporary file, fsync, rename), so a crash never leaves a half-written checkpoint in place.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { rangeError } from '../errors.js'

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

export function readSafetensors(file: string): { tensors: Record<string, StoredTensor>; metadata: Record<string, string> } {
  const bytes = readFileSync(file)
  const fail = (why: string): never => {
    throw new Error(`${file} is not a valid safetensors checkpoint: ${why}`)
  }
  if (bytes.length < 8) fail('it is shorter than its 8-byte header length')
  const length = Number(bytes.readBigUInt64LE(0))
  if (length > bytes.length - 8) fail(`the header claims ${length} bytes but the file has ${bytes.length - 8} after the length (truncated?)`)
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>
  try {
    header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8'))
  } catch {
    return fail('its header is not JSON (corrupted?)')
  }
  const data = bytes.subarray(8 + length)
  const tensors: Record<string, StoredTensor> = {}
  let metadata: Record<string, string> = {}
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>
      continue
    }
    const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] }
    if (e.dtype !== 'F32') fail(`${name} has dtype ${e.dtype}; bssn reads F32`)
    const [start, end] = e.data_offsets ?? []
    const count = (e.shape ?? []).reduce((a, b) => a * b, 1)
    if (!(start >= 0 && end <= data.length && end - start === count * 4)) fail(`${name}'s data [${start}, ${end}) does not fit the file or its shape (truncated?)`)
    const copy = new Float32Array(count)
    new Uint8Array(copy.buffer).set(data.subarray(start, end))
    tensors[name] = { shape: e.shape, data: copy }
  }
  return { tensors, metadata }
}
