// Bytes all-reduced per data-parallel training step, against the parameter bytes and the number of gradient buckets,
// counted by the emulated NCCL (bench/RESULTS.md). Needs the emulated build:
//   node node_modules/cmake-js/bin/cmake-js compile --out build-emulated --CDBSSN_CUDA=EMULATED && npx tsc -p tsconfig.build.json
//   BSSN_ADDON=$PWD/build-emulated/Release/bssn.node node bench/distributed_bytes.mjs [--ranks 2] [--steps 3]
// It starts the ranks itself (as `bssn train --gpus N` does) and prints one JSON line per network from rank 0.
import { spawn } from 'node:child_process'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { ranks: { type: 'string', default: '2' }, steps: { type: 'string', default: '3' } } })
const ranks = Number(values.ranks)
const steps = Number(values.steps)

if (process.env.RANK === undefined) {
  const { freePort } = await import('../dist/cli/launch.js')
  const port = await freePort()
  const children = Array.from({ length: ranks }, (_, r) =>
    spawn(process.execPath, [new URL(import.meta.url).pathname, ...process.argv.slice(2)], {
      env: { ...process.env, RANK: String(r), WORLD_SIZE: String(ranks), LOCAL_RANK: String(r), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) },
      stdio: ['ignore', r === 0 ? 'inherit' : 'ignore', 'inherit'],
    }),
  )
  const codes = await Promise.all(children.map((c) => new Promise((resolve) => c.once('exit', resolve))))
  process.exit(codes.some((c) => c !== 0) ? 1 : 0)
}

const { initDistributed, DistributedDataParallel, ganStep, Adam, SpectralNorm } = await import('../dist/index.js')
const { native } = await import('../dist/native.js')
const { smallCnnDiscriminator, smallCnnGenerator } = await import('../dist/models/dcgan.js')
const { mlpDiscriminator, mlpGenerator } = await import('../dist/models/mlp.js')
const { snganCnnDiscriminator, snganCnnGenerator } = await import('../dist/models/sngan.js')

if (!native().nccl?.emulatedBytes) throw new Error('this counts with the emulated NCCL: run it on the emulated build (BSSN_ADDON=.../build-emulated/Release/bssn.node)')
const pg = await initDistributed()
const device = pg.device
const networks = {
  'MLP GAN (ring8, width 128)': { G: () => mlpGenerator({ device, seed: 1, width: 128, zDim: 2 }), D: () => mlpDiscriminator({ device, seed: 2, width: 128 }), z: 2, x: [2], batch: 4 },
  'DCGAN16 (16 channels)': { G: () => smallCnnGenerator({ device, seed: 1 }), D: () => smallCnnDiscriminator({ device, seed: 2 }), z: 32, x: [3, 16, 16], batch: 2 },
  'SNGAN CNN (32x32)': { G: () => snganCnnGenerator({ device, seed: 1 }), D: () => snganCnnDiscriminator({ device, seed: 2 }), z: 128, x: [3, 32, 32], batch: 2 },
}
for (const [name, n] of Object.entries(networks)) {
  const G = n.G()
  const D = n.D()
  const sn = new SpectralNorm(D, { mode: 'bssn', scale: Math.SQRT2, seed: 3 })
  const optG = new Adam(G.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
  const optD = new Adam(D.parameters(), { lr: 2e-4, betas: [0.5, 0.999] })
  const ddp = [new DistributedDataParallel(D, pg), new DistributedDataParallel(G, pg)]
  let draw = 0
  const parts = {
    generator: G, discriminator: D, optG, optD, normalization: sn,
    sampleZ: () => device.randn([n.batch, n.z], { seed: 100 * pg.rank + draw++ }),
    sampleReal: () => device.randn([n.batch, ...n.x], { seed: 100 * pg.rank + draw++ }),
  }
  const step = () => {
    const r = ganStep(parts)
    r.lossD.dispose()
    r.lossG.dispose()
  }
  step() // warm-up: the optimizers' state, the plans
  await pg.synchronize()
  const before = native().nccl.emulatedBytes().allReduced
  for (let i = 0; i < steps; i++) step()
  await pg.synchronize()
  await device.synchronize()
  const perStep = (native().nccl.emulatedBytes().allReduced - before) / steps
  const bytesOf = (m) => m.parameters().reduce((s, t) => s + t.size * 4, 0)
  if (pg.rank === 0)
    console.log(JSON.stringify({
      network: name, ranks, steps, allReducedPerStep: perStep, parameterBytes: { G: bytesOf(G), D: bytesOf(D) },
      buckets: { D: ddp[0].buckets.length, G: ddp[1].buckets.length }, bucketBytes: 4 << 20,
    }))
  ddp.forEach((d) => d.dispose())
  ;[sn, optG, optD, G, D].forEach((x) => x.dispose())
}
await pg.barrier()
pg.destroy()
