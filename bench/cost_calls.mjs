// One normalization call of a workload, counted on the emulated CUDA device (native/emulator/README.md, "Counting
// what a GPU would pay"): what npm run bench:cost tabulates and what the tests assert budgets on
// (test/helpers/cost.ts). The library is passed in, so the tests count their src/ build and the bench its dist/.

/** The calls of bench/normalize.mjs: BSSN forward in training and eval mode, the scale-only forward, backward. */
export const costCalls = ['training forward', 'eval forward', 'scale-only', 'backward']
/** Multiprocessors of the card the counts are read against (H100 and H200 SXM: 132). */
export const smCount = 132
const sectorBytes = 32

/**
 * Runs `call` once as a warm-up (plans, graphs and pools are made once per object), then once counted, on
 * weights of `workload` (randn, std 0.02, seeded) on `lib.Device.cuda(0)` of the emulated build; `emulator` is
 * its native().emulator. Returns the counts as numbers (passes over W = bytes / sum of the weights' fp32 bytes)
 * and each counted launch. Asynchronous until the counted call: the warm-up is awaited, so only the counted call's
 * work is waited for synchronously (by `emulator.cost.stop()`), and a test's worker stays responsive.
 */
export async function countCall(lib, emulator, workload, call) {
  if (!costCalls.includes(call)) throw new Error(`unknown call ${call}: one of ${costCalls.join(', ')}`)
  const device = lib.Device.cuda(0)
  if (!device.emulated) throw new Error(`${device.name} is not the emulated CUDA device: counting needs it`)
  const weights = workload.shapes.map((shape, i) => device.randn(shape, { seed: i, std: 0.02 }))
  const grads = call === 'backward' ? workload.shapes.map((shape, i) => device.randn(shape, { seed: 100 + i })) : []
  const bssn = new lib.BSSN(weights, { mode: 'bssn' })
  try {
    if (call === 'eval forward') bssn.eval()
    const run = {
      'training forward': () => bssn.forward(),
      'eval forward': () => bssn.forward(),
      'scale-only': () => bssn.updateSigmas(),
      // The backward of the forward before it (not counted).
      backward: () => bssn.backward(grads),
    }[call]
    if (call === 'backward') bssn.forward()
    run()
    if (call === 'backward') bssn.forward()
    await device.synchronize() // outside the counted window: the warm-up's wait is not the call's
    emulator.cost.start()
    try {
      run()
    } catch (error) {
      emulator.cost.stop() // counting off again for whoever comes next
      throw error
    }
    return summarize(emulator.cost.stop(), workload.shapes.reduce((sum, s) => sum + 4 * s.reduce((a, b) => a * b, 1), 0))
  } finally {
    bssn.dispose()
    for (const t of [...weights, ...grads]) t.dispose()
  }
}

// The figures of one counted call. Distinct sectors are per launch, summed (DRAM traffic if every re-read within a
// launch hits L2); total sectors are what the warp-wide accesses touch (L2 traffic).
function summarize(cost, weightBytes) {
  const { loads, stores } = cost
  const passes = (sectors) => (sectors * sectorBytes) / weightBytes
  const accesses = loads.warpAccesses + stores.warpAccesses
  // Sectors per 128 bytes asked for: a warp-wide fp32 access's worth, so float4 accesses compare with the fp32 budget.
  const per128Bytes = (sectors, bytes) => (bytes ? (sectors * 128) / bytes : 0)
  const kernels = cost.kernels.map((k) => ({
    kernel: k.kernel,
    replay: k.replay,
    blocks: k.blocks,
    smsUsed: Math.min(k.blocks, smCount),
    distinctPasses: passes(k.loads.distinctSectors + k.stores.distinctSectors),
    totalPasses: passes(k.loads.sectors + k.stores.sectors),
    sectorsPerWarpAccess: (k.loads.sectors + k.stores.sectors) / Math.max(1, k.loads.warpAccesses + k.stores.warpAccesses),
    sectorsPerFp32WarpAccess: per128Bytes(k.loads.sectors + k.stores.sectors, k.loads.bytes + k.stores.bytes),
    maxThreadAccesses: k.maxThreadAccesses,
  }))
  return {
    figures: {
      weightBytes,
      distinctPasses: passes(loads.distinctSectors + stores.distinctSectors),
      totalPasses: passes(loads.sectors + stores.sectors),
      distinctReadPasses: passes(loads.distinctSectors),
      distinctWritePasses: passes(stores.distinctSectors),
      sectorsPerWarpAccess: accesses ? (loads.sectors + stores.sectors) / accesses : 0,
      sectorsPerFp32WarpAccess: per128Bytes(loads.sectors + stores.sectors, loads.bytes + stores.bytes),
      graphNodes: cost.graphNodes,
      graphLaunches: cost.graphLaunches,
      launches: cost.launches,
      synchronizations: cost.synchronizations,
      allocations: cost.deviceAllocations + cost.pinnedAllocations,
      bytesToDevice: cost.bytesToDevice,
      bytesToHost: cost.bytesToHost,
      blocks: cost.blocks,
      fewestSmsUsed: kernels.length ? Math.min(...kernels.map((k) => k.smsUsed)) : 0,
      maxThreadAccesses: cost.maxThreadAccesses,
    },
    kernels,
    raw: cost,
  }
}
