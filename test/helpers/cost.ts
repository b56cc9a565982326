// What one normalization call of a workload costs on the emulated CUDA device (native/emulator/README.md, "Counting
// what a GPU would pay"): for tests that hold the kernels to a budget of passes over W, sectors per warp-wide
// access, graph nodes, syncs and allocations. The counting itself is bench/cost_calls.mjs, shared with
// npm run bench:cost.
import { countCall, costCalls, smCount, type CallCost, type CostCall } from '../../bench/cost_calls.mjs'
import { BSSN, Device } from '../../src/index.js'
import { native } from '../../src/native.js'
import type { Workload } from '../../src/cli/workloads.js'

export { costCalls, smCount, type CallCost, type CostCall }

/** Whether counting can run here: the emulated build, not under AddressSanitizer (whose kernels cannot carry it). */
export function costSkipReason(): string | undefined {
  const emulator = native().emulator
  if (!emulator) return 'needs the emulated build, npm run test:emulated'
  if (!emulator.cost.available) return 'counting is off in the AddressSanitizer build, whose runtime owns the instrumentation entry points'
  return undefined
}

/** One counted `call` of `workload` (after a warm-up call): its figures and each launch's. */
export async function callCost(workload: Workload, call: CostCall): Promise<CallCost> {
  const reason = costSkipReason()
  if (reason) throw new Error(`cannot count: ${reason}`)
  return countCall({ BSSN, Device }, native().emulator!, workload, call)
}

/** One line per launch (name, blocks, passes, sectors per warp access, longest thread), for a test's log. */
export function describeKernels(cost: CallCost): string {
  return cost.kernels
    .map(
      (k) =>
        `  ${k.kernel}${k.replay ? ` (replay ${k.replay})` : ''}: ${k.blocks} blocks (${k.smsUsed}/${smCount} SMs), ` +
        `${k.distinctPasses.toFixed(2)} distinct / ${k.totalPasses.toFixed(2)} total passes, ` +
        `${k.sectorsPerWarpAccess.toFixed(2)} sectors per warp access (${k.sectorsPerFp32WarpAccess.toFixed(2)} per 128 B), longest thread ${k.maxThreadAccesses} accesses`,
    )
    .join('\n')
}
