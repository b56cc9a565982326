// Runs one train2d in a worker thread (its own device and stream), so `bssn compare` trains its runs in parallel.
import { parentPort, workerData } from 'node:worker_threads'

import { mixtures } from '../data/toy2d.js'
import { Device } from '../device.js'
import { train2d, type Train2dConfig } from '../train/trainer2d.js'

export interface WorkerConfig extends Omit<Train2dConfig, 'device' | 'mixture'> {
  device: string
  dataset: keyof typeof mixtures
}

const config = workerData as WorkerConfig
let stop = false
parentPort!.on('message', (m) => {
  if (m === 'stop') stop = true
})
const device = config.device === 'cpu' ? Device.cpu() : config.device.startsWith('cuda') ? Device.cuda(Number(config.device.split(':')[1] ?? 0)) : Device.auto()
const result = await train2d(
  { ...config, device, mixture: mixtures[config.dataset] },
  {
    onEval: (record) => parentPort!.postMessage({ type: 'eval', norm: config.norm, record }),
    onStep: (step) => {
      if (step % 50 === 0) parentPort!.postMessage({ type: 'step', norm: config.norm, step })
    },
    shouldStop: () => stop,
  },
)
parentPort!.postMessage({ type: 'done', result })
