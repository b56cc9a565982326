#!/usr/bin/env node
// npm run bench:cost: what each normalization call would pay on a GPU, counted on the emulated CUDA device from the
// accesses its kernels really make (native/emulator/README.md, "Counting what a GPU would pay"). For every workload
// and call (training and eval forward, scale-only, backward; each after a warm-up call): distinct and total bytes
// as passes over W (the sum of the weights' fp32 bytes), sectors per warp-wide access, graph nodes, launches,
// synchronizations and allocations per call, then each launch. Counts, not timings.
//   npm run bench:cost [-- --json FILE] [-- --workload NAME-PREFIX]
// Builds the emulated addon (build-emulated/, as npm run test:emulated does) unless BSSN_ADDON names one.
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { values } = parseArgs({
  options: {
    json: { type: 'string' }, // writes {workload: {call: {figure: number}}}
    workload: { type: 'string' }, // only the workloads whose name starts with this
    kernels: { type: 'boolean', default: true }, // each launch's counts after the table
  },
})

const started = performance.now()
if (!process.env.BSSN_ADDON) {
  console.error('building the emulated addon (build-emulated/) ...')
  try {
    execFileSync(process.execPath, [path.join(root, 'node_modules/cmake-js/bin/cmake-js'), 'compile', '--out', 'build-emulated', '--CDBSSN_CUDA=EMULATED'], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'inherit'],
    })
  } catch {
    throw new Error('the emulated build failed: run npm run test:emulated -- test/emulated/cost.test.ts to see why')
  }
  process.env.BSSN_ADDON = path.join(root, 'build-emulated', 'Release', 'bssn.node')
}
execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })

const lib = await import('../dist/index.js')
const { native } = await import('../dist/native.js')
const { workloads } = await import('../dist/cli/workloads.js')
const { costCalls, countCall, smCount } = await import('./cost_calls.mjs')
const emulator = native().emulator
if (!emulator) throw new Error(`${process.env.BSSN_ADDON} is not the emulated build`)
if (!emulator.cost.available) throw new Error('this build cannot count (the AddressSanitizer build): use build-emulated/')

const fmt = (x, d = 2) => x.toFixed(d)
const results = {}
const rows = []
const details = []
for (const workload of workloads.filter((w) => !values.workload || w.name.startsWith(values.workload))) {
  results[workload.name] = {}
  for (const call of costCalls) {
    const t0 = performance.now()
    const { figures: f, kernels } = await countCall(lib, emulator, workload, call)
    results[workload.name][call] = f
    console.error(`${workload.name}, ${call}: counted in ${fmt((performance.now() - t0) / 1e3, 1)} s`)
    rows.push([workload.name, call, fmt(f.distinctPasses), fmt(f.totalPasses), fmt(f.distinctReadPasses), fmt(f.distinctWritePasses),
      fmt(f.sectorsPerWarpAccess), fmt(f.sectorsPerFp32WarpAccess), String(f.graphNodes), String(f.launches), String(f.synchronizations), String(f.allocations),
      `${f.fewestSmsUsed}/${smCount}`, String(f.maxThreadAccesses)])
    details.push(`${workload.name}, ${call}:\n` +
      kernels.map((k) => `  ${k.kernel}: ${k.blocks} blocks (${k.smsUsed}/${smCount} SMs), ${fmt(k.distinctPasses)} distinct / ` +
        `${fmt(k.totalPasses)} total passes, ${fmt(k.sectorsPerWarpAccess)} sectors/warp access (${fmt(k.sectorsPerFp32WarpAccess)} per 128 B), longest thread ${k.maxThreadAccesses}`).join('\n'))
  }
}

const commit = (() => {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
})()
const header = ['workload', 'call', 'distinct passes', 'total passes', 'read', 'written', 'sectors/warp access', 'per 128 B', 'graph nodes', 'launches', 'syncs',
  'allocations', 'fewest SMs', 'longest thread']
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
const line = (cells) => '| ' + cells.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |'
console.log(`\nGPU cost counted on the emulated CUDA device (counts, not timings), commit ${commit}, ${new Date().toISOString().slice(0, 10)}`)
console.log('passes over W = bytes / sum of the weights\' fp32 bytes; distinct = per launch, summed (DRAM if re-reads hit L2); total = sectors')
console.log('of every warp-wide access (L2); read / written = distinct passes by loads / stores; per 128 B = sectors per 128 bytes the lanes')
console.log('asked for (a warp-wide fp32 access: 4 when coalesced, float4 too); fewest SMs = min(blocks, 132) of the')
console.log('launch with the fewest blocks; longest thread = the most global accesses made by one thread of a launch.\n')
console.log(line(header))
console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|')
rows.forEach((r) => console.log(line(r)))
if (values.kernels) console.log('\nper launch:\n' + details.join('\n'))
if (values.json) {
  writeFileSync(values.json, JSON.stringify(results, null, 2) + '\n')
  console.log(`json: ${values.json}`)
}
console.log(`\ncounted in ${fmt((performance.now() - started) / 1e3, 1)} s`)
