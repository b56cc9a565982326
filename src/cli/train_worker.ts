// Runs one GAN training in a worker thread (its own device and stream), so `bssn compare` trains its runs in parallel.
import { parentPort, workerData } from 'node:worker_threads'

import { Device } from '../device.js'
import { taskFor, type ImageArch } from '../train/tasks.js'
import { trainGan, type TrainConfig } from '../train/trainer.js'

export interface WorkerConfig extends Omit<TrainConfig, 'device' | 'task'> {
  device: string
  dataset: string
  width: number
  /** The image networks (ignored for 2-D data). */
  arch: ImageArch
}

const config = workerData as WorkerConfig
let stop = false
parentPort!.on('message', (m) => {
  if (m === 'stop') stop = true
})
const device = config.device === 'cpu' ? Device.cpu() : config.device.startsWith('cuda') ? Device.cuda(Number(config.device.split(':')[1] ?? 0)) : Device.auto()
const { dataset: _dataset, width: _width, arch: _arch, ...rest } = config
const task = taskFor(config.dataset, config.width, config.seed, config.arch)
const result = await trainGan(
  { ...rest, device, task },
  {
    onEval: (record) => parentPort!.postMessage({ type: 'eval', record }),
    onStep: (step) => parentPort!.postMessage({ type: 'step', step }),
    shouldStop: () => stop,
  },
)
// A few held-out real images for the report's grid.
const held = task.heldOut
const real = held ? { pixels: held.pixels.slice(0, Math.min(64, held.count) * 3 * held.size * held.size), count: Math.min(64, held.count) } : undefined
parentPort!.postMessage({ type: 'done', result, real })
