// The PyTorch baseline scripts of bench/ run on the CPU (Debian's python3-torch) before any GPU time is spent on
// them: on the GPU host a script error would fail `npm run test:gpu` after minutes of device time.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, describe, expect, it } from 'vitest'

import { runTorchScript, torchSkipReason } from './helpers/torch.js'

const bench = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bench')
const dir = mkdtempSync(path.join(tmpdir(), 'bssn-torch-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const suite = torchSkipReason === undefined ? describe : describe.skip
suite(`PyTorch baseline scripts on the CPU${torchSkipReason ? ` (skipped: ${torchSkipReason})` : ''}`, () => {
  it('torch_baseline.py times SN and BSSN eager on each workload', async () => {
    const workloads = path.join(dir, 'workloads.json')
    writeFileSync(workloads, JSON.stringify([{ name: 'tiny', shapes: [[8, 3, 3, 3], [16, 8, 4, 4], [1, 64]] }]))
    const out = await runTorchScript(path.join(bench, 'torch_baseline.py'), [workloads, '--device', 'cpu', '--iters', '3', '--warmup', '1'])
    expect(out.device).toBe('cpu')
    expect(out.results).toHaveLength(1)
    const [r] = out.results
    expect(r.name).toBe('tiny')
    for (const key of ['sn_eager_us', 'bssn_eager_us']) expect(r[key], key).toBeGreaterThan(0)
    expect(r.bssn_graph_us).toBeNull()
  })

  // The BSSN parametrization once failed here: the second D forward of a step updated u and v in place while the
  // first forward's graph still needed them ("modified by an inplace operation").
  it('torch_train_baseline.py trains the SNGAN CNN GAN with none, SN and BSSN', async () => {
    const out = await runTorchScript(path.join(bench, 'torch_train_baseline.py'), ['--device', 'cpu', '--batch', '2', '--steps', '2', '--warmup', '1'])
    expect(out.device).toBe('cpu')
    expect(out.results.map((r: { norm: string }) => r.norm)).toEqual(['none', 'sn', 'bssn'])
    for (const r of out.results) expect(r.stepsPerSecond, r.norm).toBeGreaterThan(0)
  })
})
