#!/usr/bin/env node
// The `bssn` command line.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'

import { packageRoot } from '../native.js'
import type { NormChoice } from '../train/trainer.js'
import { parseDevice, parsePositiveInt, UsageError } from './args.js'
import { runDemo } from './demo.js'
import { runTraining } from './train_command.js'

const usage = `usage: bssn <command> [options]

commands:
  compare  train GANs with SN and with BSSN on the same data and seeds; write report.html (default command)
  train    train one GAN (--norm) and write its report
  demo     normalize a GAN discriminator's weights (SN and BSSN): per-layer sigmas and timings
  bench    run the throughput benchmarks (normalization; --train for the training step)

options (train, compare):
  --norm none|sn|ssn|bsn|bssn     discriminator normalization (train; default bssn)
  --norms LIST                    comma-separated, for compare (default sn,bssn)
  --scale C                       the constant c of ssn/bssn (default 1.4142, the Kaiming gain of ReLU layers)
  --dataset NAME                  ring8 | grid25 (2-D mixtures, MLP GANs; default ring8), shapes (built-in 32x32
                                  images), cifar10:DIR (data_batch_*.bin), png:DIR (PNG files): the SNGAN CNN
  --arch mlp|sngan                (default: mlp for 2-D data, sngan for images)
  --steps N --batch N             (default 2000, 256)
  --lr X --betas B1,B2 --n-dis N  Adam and D steps per G step (default 2e-4, 0.5,0.999, 1: the BSSN authors' setup)
  --seed N                        (default 1)
  --eval-every N                  evaluation interval in steps (default 100)
  --eval-samples N                generated samples per evaluation (default 2500 for 2-D data, 256 for images)
  --width N                       hidden width of the MLPs (default 128)
  --ckpt-every N                  write <out>/<norm>/checkpoint.safetensors every N steps (default 500)
  --resume CKPT                   (train) continue from a checkpoint, bit-for-bit the interrupted run
  --out DIR                       output folder (default runs/<command>-<dataset>)
  --device auto|cpu|cuda|cuda:N   where to run (default auto)
  --steps N                       (demo) forwards per timing sample (default 20)
  -h, --help                      this help`

function number(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got '${value}'`)
  return n
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      device: { type: 'string', default: 'auto' },
      steps: { type: 'string' },
      norm: { type: 'string' },
      norms: { type: 'string' },
      scale: { type: 'string' },
      dataset: { type: 'string', default: 'ring8' },
      arch: { type: 'string', default: 'auto' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      betas: { type: 'string' },
      'n-dis': { type: 'string' },
      seed: { type: 'string' },
      'eval-every': { type: 'string' },
      width: { type: 'string' },
      out: { type: 'string' },
      resume: { type: 'string' },
      'ckpt-every': { type: 'string' },
      'eval-samples': { type: 'string' },
      train: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    console.log(usage)
    return 0
  }
  const command = positionals[0] ?? 'compare'
  if (command === 'demo') {
    await runDemo({ device: parseDevice(values.device!), steps: parsePositiveInt(values.steps ?? '20', '--steps'), print: console.log })
    return 0
  }
  if (command === 'bench') {
    const script = path.join(packageRoot, 'bench', values.train ? 'train.mjs' : 'normalize.mjs')
    if (!existsSync(script)) throw new Error(`the benchmarks are not in this installation (${script})`)
    return spawnSync(process.execPath, [script, ...(values.device !== 'auto' ? ['--device', values.device!] : [])], { stdio: 'inherit' }).status ?? 1
  }
  if (command !== 'train' && command !== 'compare') throw new UsageError(`unknown command '${command}'`)
  const list = command === 'train' ? [values.norm ?? 'bssn'] : (values.norms ?? 'sn,bssn').split(',').map((s) => s.trim())
  const betas = (values.betas ?? '0.5,0.999').split(',').map((s) => number(s, '--betas')!)
  if (betas.length !== 2 || betas.some((b) => b < 0 || b >= 1)) throw new UsageError(`--betas must be two numbers in [0, 1), got '${values.betas}'`)
  parseDevice(values.device!) // fails early on a bad --device
  await runTraining({
    norms: list as NormChoice[],
    scale: number(values.scale, '--scale') ?? Math.SQRT2,
    dataset: values.dataset!,
    arch: values.arch!,
    steps: parsePositiveInt(values.steps ?? '2000', '--steps'),
    batch: parsePositiveInt(values.batch ?? '256', '--batch'),
    lr: number(values.lr, '--lr') ?? 2e-4,
    betas: betas as [number, number],
    nDis: parsePositiveInt(values['n-dis'] ?? '1', '--n-dis'),
    seed: parsePositiveInt(values.seed ?? '1', '--seed'),
    device: values.device!,
    out: values.out ?? path.join('runs', `${command}-${values.dataset}`),
    evalEvery: parsePositiveInt(values['eval-every'] ?? '100', '--eval-every'),
    width: parsePositiveInt(values.width ?? '128', '--width'),
    checkpointEvery: values['ckpt-every'] === undefined ? 500 : parsePositiveInt(values['ckpt-every'], '--ckpt-every'),
    resume: values.resume,
    evalSamples: values['eval-samples'] === undefined ? undefined : parsePositiveInt(values['eval-samples'], '--eval-samples'),
    print: console.log,
    progress: Boolean(process.stdout.isTTY),
  })
  return 0
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const usageError = error instanceof UsageError || (error instanceof TypeError && (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))
    console.error(`bssn: ${error instanceof Error ? error.message : String(error)}`)
    if (usageError) console.error(`\n${usage}`)
    process.exit(usageError ? 2 : 1)
  },
)
