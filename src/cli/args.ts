// Shared CLI argument handling.
import { Device } from '../device.js'

/** 'auto' | 'cpu' | 'cuda' | 'cuda:N' to a Device; anything else is a usage error. */
export function parseDevice(spec: string): Device {
  if (spec === 'auto') return Device.auto()
  if (spec === 'cpu') return Device.cpu()
  const m = /^cuda(?::(\d+))?$/.exec(spec)
  if (m)
    try {
      return Device.cuda(m[1] === undefined ? 0 : Number(m[1]))
    } catch (error) {
      // No usable GPU is the user's choice of flag to change, as a usage error.
      if (!['ERR_BSSN_CUDA_UNAVAILABLE', 'ERR_BSSN_OUT_OF_RANGE'].includes((error as { code?: string }).code ?? '')) throw error
      throw new UsageError(`--device ${spec}: ${(error as Error).message}; use --device cpu, or auto to take a GPU when there is one`)
    }
  throw new UsageError(`--device must be auto, cpu, cuda or cuda:N, got '${spec}'`)
}

export function parsePositiveInt(value: string, flag: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer, got '${value}'`)
  return n
}

export class UsageError extends Error {
  override name = 'UsageError'
}
