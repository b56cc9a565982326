#!/usr/bin/env node
// The `bssn` command line.
import { parseArgs } from 'node:util'

import { parseDevice, parsePositiveInt, UsageError } from './args.js'
import { runDemo } from './demo.js'

const usage = `usage: bssn <command> [options]

commands:
  demo     normalize a GAN discriminator's weights (SN and BSSN): per-layer sigmas and timings

options:
  --device auto|cpu|cuda|cuda:N   where to run (default auto: CUDA when usable, else CPU)
  --steps N                       forwards per timing sample (default 20)
  -h, --help                      this help`

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      device: { type: 'string', default: 'auto' },
      steps: { type: 'string', default: '20' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    console.log(usage)
    return 0
  }
  const command = positionals[0] ?? 'demo'
  if (command !== 'demo') throw new UsageError(`unknown command '${command}'`)
  await runDemo({ device: parseDevice(values.device!), steps: parsePositiveInt(values.steps!, '--steps'), print: console.log })
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
