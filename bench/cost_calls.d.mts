// Types of bench/cost_calls.mjs, for the tests (test/helpers/cost.ts).
import type { NativeEmulator, NativeEmulatorCost } from '../src/native.js'

export type CostCall = 'training forward' | 'eval forward' | 'scale-only' | 'backward'
export declare const costCalls: readonly CostCall[]
export declare const smCount: number

/** The figures of one counted call: passes over W (sum of the weights' fp32 bytes) and counts per call. */
export interface CallFigures {
  weightBytes: number
  distinctPasses: number
  totalPasses: number
  distinctReadPasses: number
  distinctWritePasses: number
  sectorsPerWarpAccess: number
  /** Sectors per 128 bytes the lanes asked for (a warp-wide fp32 access's worth): 4 when coalesced, fp32 or float4. */
  sectorsPerFp32WarpAccess: number
  graphNodes: number
  graphLaunches: number
  launches: number
  synchronizations: number
  allocations: number
  bytesToDevice: number
  bytesToHost: number
  blocks: number
  /** The fewest multiprocessors (of smCount) any launch of the call could fill: min(blocks, smCount). */
  fewestSmsUsed: number
  maxThreadAccesses: number
}
export interface KernelFigures {
  kernel: string
  replay: number
  blocks: number
  smsUsed: number
  distinctPasses: number
  totalPasses: number
  sectorsPerWarpAccess: number
  sectorsPerFp32WarpAccess: number
  maxThreadAccesses: number
}
export interface CallCost {
  figures: CallFigures
  kernels: KernelFigures[]
  raw: NativeEmulatorCost
}

/** The library to count (bssn's index: its Device and BSSN). */
interface Library {
  Device: unknown
  BSSN: unknown
}
export declare function countCall(lib: Library, emulator: NativeEmulator, workload: { shapes: number[][] }, call: CostCall): Promise<CallCost>
