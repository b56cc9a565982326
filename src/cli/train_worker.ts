// Runs one GAN training in a worker thread (its own device and stream), so `bssn compare` trains its runs in parallel.
import { parentPort, workerData } from 'node:worker_threads'

import { Device } from '../device.js'
import { taskFor } from '../train/tasks.js'
import { trainGan, type TrainConfig } from '../train/trainer.js'

export interface WorkerConfig extends Omit<TrainConfig, 'device' | 'task'> {
  device: string
  dataset: string
  width: number
}

const config = workerData as WorkerConfig
let stop = false
parentPort!.on('message', (m) => {
  if (m === 'stop') stop = true
})
const device = config.device === 'cpu' ? Device.cpu() : config.device.startsWith('cuda') ? Device.cuda(Number(config.device.split(':')[1] ?? 0)) : Device.auto()
const { dataset: _dataset, width: _width, ...rest } = config
const result = await trainGan(
  { ...rest, device, task: taskFor(config.dataset, config.width, config.seed) },
  {
    onEval: (record) => parentPort!.postMessage({ type: 'eval', norm: config.norm, record }),
    onStep: (step) => {
      if (step % 10 === 0) parentPort!.postMessage({ type: 'step', norm: config.norm, step })
    },
    shouldStop: () => stop,
  },
)
parentPort!.postMessage({ type: 'done', result })
