#!/usr/bin/env node
// The `bssn` command line.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'

import { readDistributedEnv } from '../distributed/env.js'
import { native, packageRoot } from '../native.js'
import type { NormChoice } from '../train/trainer.js'
import { parseDevice, parsePositiveInt, UsageError } from './args.js'
import { runDemo } from './demo.js'
import { runDoctor } from './doctor.js'
import { launchRanks } from './launch.js'
import { runTraining } from './train_command.js'

const usage = `usage: bssn <command> [options]

commands:
  compare  train GANs with SN and with BSSN on the same data and seeds; write report.html
  train    train one GAN (--norm) and write its report
  demo     normalize a GAN discriminator's weights (SN and BSSN): per-layer sigmas and timings
  bench    run the throughput benchmarks (normalization; --train for the training step)
  doctor   which addon loaded and how it was built, the CUDA driver, GPUs, cuBLAS/cuDNN, and what
           Device.auto() picks; exit code 0 when a GPU is usable, 1 otherwise (--json for scripts)

options (train, compare):
  --norm none|sn|ssn|bsn|bssn     discriminator normalization (train; default bssn)
  --norms LIST                    comma-separated, for compare (default sn,ssn,bssn: ssn is the control, same c,
                                  one direction)
  --scale C                       the constant c of ssn/bssn, > 0 (default 1.4142, the Kaiming gain of ReLU layers)
  --dataset NAME                  shapes (built-in images; default), cifar10:DIR (data_batch_*.bin), png:DIR (PNG
                                  files), or ring8 | grid25 (2-D mixtures, MLP GANs: there bssn equals ssn)
  --arch auto|dcgan16|sngan|mlp   dcgan16: small CNN on 16x16 images (default for shapes); sngan: the SNGAN CNN on
                                  32x32 (default for cifar10/png); mlp: for 2-D data
  --steps N --batch N             (default 500, 32 for dcgan16; 2000, 64 for sngan; 2000, 256 for mlp)
  --lr X --betas B1,B2 --n-dis N  Adam and D steps per G step (default 2e-4, 0.5,0.999, 1: the BSSN authors' setup)
  --seed N | --seeds LIST         train: one seed (default 1); compare: comma-separated (default 1,2)
  --eval-every N                  evaluation interval in steps (default 50 for dcgan16, 100 otherwise)
  --eval-samples N                generated samples per evaluation (default 2500 for 2-D data, 256 for images)
  --width N                       hidden width of the MLPs (default 128)
  --ckpt-every N                  write <out>/<norm>/seed-<s>/checkpoint.safetensors every N steps (default 500)
  --resume CKPT                   (train) continue from a checkpoint, bit-for-bit the interrupted run, in a new
                                  output folder; the flags must match the checkpoint's configuration and --steps be
                                  above its step; a damaged checkpoint is refused before anything is created
  --out DIR                       output folder (default runs/<command>-<dataset>, or -2, -3, ... when taken); an
                                  existing non-empty DIR is refused; --force replaces an earlier bssn run's folder
                                  (one with a .bssn-run file) once this run is done
  --device auto|cpu|cuda|cuda:N   where to run (default auto)
  --gpus N                        data-parallel training on N GPUs of this machine, one process per GPU (as
                                  torchrun): --batch is the global batch, split evenly; rank 0 writes the run. On
                                  several machines, start \`bssn train\` once per GPU with RANK, WORLD_SIZE,
                                  LOCAL_RANK, MASTER_ADDR and MASTER_PORT set instead (README, "Several GPUs")
  --steps N                       (demo) forwards per timing sample (default 20)
  Ctrl-C or SIGTERM stops each run after its current step, then writes checkpoints, metrics and the report; a
  second aborts at once.

  -h, --help                      this help (also: bssn help [command], bssn <command> --help)
  --version                       the package version`

const commands = ['compare', 'train', 'demo', 'bench', 'doctor']

function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version
}

/** One command's help: its line from the command list, then the options it takes. */
function commandHelp(command: string): string {
  const lines = usage.split('\n')
  const at = lines.findIndex((l) => l.startsWith(`  ${command} `))
  const about = [lines[at], ...lines.slice(at + 1).filter((_, i, rest) => rest.slice(0, i + 1).every((l) => /^ {4,}/.test(l)))].map((l) => l.trim()).join(' ')
  const options = usage.slice(usage.indexOf('options (train, compare):'))
  const usageLine = `usage: bssn ${command} [options]`
  if (command === 'train' || command === 'compare') return `${usageLine}\n\n${about}\n\n${options}`
  if (command === 'demo') return `${usageLine}\n\n${about}\n\n  --device auto|cpu|cuda|cuda:N\n  --steps N   forwards per timing sample (default 20)`
  if (command === 'bench') return `${usageLine}\n\n${about}\n\n  --train     the training-step benchmark\n  --device auto|cpu|cuda|cuda:N\n  --out DIR   where the JSON results go (default ./bssn-bench)`
  return `${usageLine}\n\n${about}\n\n  --json      machine-readable output`
}

/** node:util parseArgs errors, in our words. */
function parseArgsMessage(error: Error): string {
  const unknown = /Unknown option '([^']+)'/.exec(error.message)
  if (unknown) return `unknown option '${unknown[1]}'`
  const missing = /Option '([^' ]+)[^']*' argument missing/.exec(error.message)
  if (missing) return `${missing[1]} needs a value`
  const noValue = /Option '([^' ]+)[^']*' does not take an argument/.exec(error.message)
  if (noValue) return `${noValue[1]} takes no value`
  const ambiguous = /Option '([^' ]+)[^']*' argument is ambiguous/.exec(error.message)
  if (ambiguous) return `${ambiguous[1]} needs a value; for one that starts with '-', write ${ambiguous[1]}=VALUE`
  return error.message
}

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
      dataset: { type: 'string', default: 'shapes' },
      arch: { type: 'string', default: 'auto' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      betas: { type: 'string' },
      'n-dis': { type: 'string' },
      seed: { type: 'string' },
      seeds: { type: 'string' },
      force: { type: 'boolean' },
      version: { type: 'boolean' },
      'eval-every': { type: 'string' },
      width: { type: 'string' },
      out: { type: 'string' },
      resume: { type: 'string' },
      'ckpt-every': { type: 'string' },
      'eval-samples': { type: 'string' },
      train: { type: 'boolean' },
      json: { type: 'boolean' },
      gpus: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.version) {
    console.log(packageVersion())
    return 0
  }
  if (positionals[0] === 'help' || values.help) {
    const topic = positionals[0] === 'help' ? positionals[1] : positionals[0]
    if (topic !== undefined && !commands.includes(topic)) throw new UsageError(`no help for '${topic}': the commands are ${commands.join(', ')}`)
    console.log(topic ? commandHelp(topic) : usage)
    return 0
  }
  // No command is no training: `npx bssn` alone shows what there is, instead of starting minutes of work here.
  if (positionals.length === 0) {
    if (argv.length === 0) {
      console.log(usage)
      return 0
    }
    throw new UsageError(`name a command before the options (the commands are ${commands.join(', ')}), e.g. bssn compare ${argv.join(' ')}`)
  }
  const command = positionals[0]
  if (!commands.includes(command)) throw new UsageError(`unknown command '${command}' (the commands are ${commands.join(', ')})`)
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}' after '${command}' (options start with --)`)
  if (command === 'demo') {
    await runDemo({ device: parseDevice(values.device!), steps: parsePositiveInt(values.steps ?? '20', '--steps'), print: console.log })
    return 0
  }
  if (command === 'doctor') return runDoctor({ json: Boolean(values.json), print: console.log })
  if (command === 'bench') {
    const script = path.join(packageRoot, 'bench', values.train ? 'train.mjs' : 'normalize.mjs')
    if (!existsSync(script)) throw new Error(`the benchmarks are not in this installation (${script})`)
    // Results go where the user is (./bssn-bench), never into the installed package (node_modules).
    const out = path.resolve(values.out ?? 'bssn-bench')
    return spawnSync(process.execPath, [script, '--out', out, ...(values.device !== 'auto' ? ['--device', values.device!] : [])], { stdio: 'inherit' }).status ?? 1
  }
  // A data-parallel launch: this process starts the ranks (--gpus), or is one of them (torchrun's variables set).
  const rankEnv = readDistributedEnv()
  if (values.gpus !== undefined) {
    if (command !== 'train' && command !== 'compare') throw new UsageError('--gpus is for train and compare')
    if (rankEnv) throw new UsageError('--gpus starts the ranks itself, but RANK, WORLD_SIZE, ... are set: this process is already a rank; drop --gpus')
    const gpus = parsePositiveInt(values.gpus, '--gpus')
    if (values.device !== 'auto' && !values.device!.startsWith('cuda')) throw new UsageError(`--gpus trains on GPUs; --device ${values.device} cannot go with it`)
    if (values.device !== 'auto' && values.device !== 'cuda') throw new UsageError('--gpus N takes GPUs 0..N-1 (LOCAL_RANK); give no --device (or --device cuda), and CUDA_VISIBLE_DEVICES to pick others')
    const status = native().cudaStatus()
    if (!status.available) throw new UsageError(`--gpus ${gpus}: no usable GPU (${status.reason})`)
    // The emulated build gives every process its own device 0.
    if (native().buildInfo().cuda !== 'emulated' && status.deviceCount < gpus) throw new UsageError(`--gpus ${gpus}: this machine has ${status.deviceCount} GPU${status.deviceCount === 1 ? '' : 's'}`)
    return launchRanks(gpus, withoutGpus(argv), console.error)
  }
  if (command === 'train' && values.norms !== undefined) throw new UsageError('--norms is for compare; train takes one --norm')
  if (command === 'compare' && values.norm !== undefined) throw new UsageError('--norm is for train; compare takes --norms LIST')
  if (command === 'compare' && values.seed !== undefined) throw new UsageError('--seed is for train; compare takes --seeds LIST')
  if (command === 'train' && values.seeds !== undefined) throw new UsageError('--seeds is for compare; train takes one --seed')
  const list = command === 'train' ? [values.norm ?? 'bssn'] : (values.norms ?? 'sn,ssn,bssn').split(',').map((s) => s.trim()).filter((s) => s !== '')
  const seeds = command === 'train' ? [values.seed ?? '1'] : (values.seeds ?? '1,2').split(',').map((s) => s.trim()).filter((s) => s !== '')
  const betas = (values.betas ?? '0.5,0.999').split(',').map((s) => number(s, '--betas')!)
  if (betas.length !== 2 || betas.some((b) => b < 0 || b >= 1)) throw new UsageError(`--betas must be two numbers in [0, 1), got '${values.betas}'`)
  const scale = number(values.scale, '--scale') ?? Math.SQRT2
  if (!(scale > 0)) throw new UsageError(`--scale must be > 0 (the constant c multiplies the normalized weight), got '${values.scale}'`)
  const lr = number(values.lr, '--lr') ?? 2e-4
  if (!(lr > 0)) throw new UsageError(`--lr must be > 0, got '${values.lr}'`)
  if (rankEnv && values.device !== 'auto' && values.device !== 'cuda') throw new UsageError(`a data-parallel rank trains on CUDA device LOCAL_RANK; --device ${values.device} cannot go with it`)
  // A rank's device is LOCAL_RANK's (each process of the emulated build has its own device 0).
  const deviceSpec = rankEnv ? `cuda:${native().buildInfo().cuda === 'emulated' ? 0 : rankEnv.localRank}` : values.device!
  const device = parseDevice(deviceSpec) // fails early on a bad --device
  await runTraining({
    command: command as 'train' | 'compare',
    norms: list as NormChoice[],
    scale,
    dataset: values.dataset!,
    arch: values.arch!,
    steps: values.steps === undefined ? undefined : parsePositiveInt(values.steps, '--steps'),
    batch: values.batch === undefined ? undefined : parsePositiveInt(values.batch, '--batch'),
    lr,
    betas: betas as [number, number],
    nDis: parsePositiveInt(values['n-dis'] ?? '1', '--n-dis'),
    seeds: seeds.map((s) => parsePositiveInt(s, command === 'train' ? '--seed' : '--seeds')),
    device: deviceSpec,
    distributed: rankEnv ?? undefined,
    deviceKind: device.kind === 'cpu' ? 'cpu' : 'cuda',
    deviceName: device.name,
    out: values.out,
    force: Boolean(values.force),
    evalEvery: values['eval-every'] === undefined ? undefined : parsePositiveInt(values['eval-every'], '--eval-every'),
    width: parsePositiveInt(values.width ?? '128', '--width'),
    checkpointEvery: values['ckpt-every'] === undefined ? 500 : parsePositiveInt(values['ckpt-every'], '--ckpt-every'),
    resume: values.resume,
    evalSamples: values['eval-samples'] === undefined ? undefined : parsePositiveInt(values['eval-samples'], '--eval-samples'),
    print: console.log,
    progress: Boolean(process.stdout.isTTY),
    handleSignals: true,
  })
  return 0
}

/** The arguments without --gpus N / --gpus=N (what each rank runs). */
function withoutGpus(argv: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--gpus') i++
    else if (!argv[i].startsWith('--gpus=')) out.push(argv[i])
  }
  return out
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const code = (error as { code?: string } | undefined)?.code ?? ''
    const usageError = error instanceof UsageError || (error instanceof TypeError && code.startsWith('ERR_PARSE_ARGS'))
    const text = code.startsWith('ERR_PARSE_ARGS') ? parseArgsMessage(error as Error) : error instanceof Error ? error.message : String(error)
    // bssn's stable code goes with the message, for scripts and supervisors (e.g. a rank whose peer died).
    console.error(`bssn: ${text}${code.startsWith('ERR_BSSN_') ? ` [${code}]` : ''}`)
    if (usageError) console.error('run `bssn --help` for the commands and options, `bssn help <command>` for one command')
    process.exit(usageError ? 2 : 1)
  },
)
