// Trains GANs in a worker thread (its own device and stream), so `bssn compare` trains its runs in parallel. One
// worker serves a lane of runs, one after another, on one device: a worker per run left each finished run's native
// memory behind (a default compare grew to 685 MB; with lanes it stays near what two runs need).
import { parentPort } from 'node:worker_threads'

import { Device } from '../device.js'
import { initDistributed, type ProcessGroup } from '../distributed/process_group.js'
import { taskFor, type ImageArch } from '../train/tasks.js'
import { trainGan, type EvalRecord, type TrainConfig, type TrainResult } from '../train/trainer.js'

export interface WorkerConfig extends Omit<TrainConfig, 'device' | 'task' | 'distributed'> {
  device: string
  dataset: string
  width: number
  /** The image networks (ignored for 2-D data). */
  arch: ImageArch
  /** Set to non-zero by the main thread to stop the run after its current step. */
  stop: Int32Array
  /** This process is a rank of a data-parallel run (its variables in the environment): the run's rendezvous token. */
  distributed?: { token: string }
}

/** What the main thread asks: a run, or to close once the lane is done. */
export type WorkerRequest = { type: 'run'; config: WorkerConfig } | { type: 'close' }

/** What a run tells the main thread. */
export type WorkerMessage =
  | { type: 'step'; step: number }
  | { type: 'eval'; record: EvalRecord }
  | { type: 'done'; result: TrainResult; real?: { pixels: Float32Array; count: number } }
  | { type: 'failed'; message: string; code?: string }

const post = (m: WorkerMessage) => parentPort!.postMessage(m)
let device: Device | undefined

async function train(config: WorkerConfig): Promise<void> {
  let group: ProcessGroup | undefined
  try {
    device ??= config.device === 'cpu' ? Device.cpu() : config.device.startsWith('cuda') ? Device.cuda(Number(config.device.split(':')[1] ?? 0)) : Device.auto()
    const { dataset: _dataset, width: _width, arch: _arch, stop, distributed, ...rest } = config
    const task = taskFor(config.dataset, config.width, config.seed, config.arch)
    if (distributed) group = await initDistributed({ device, token: distributed.token })
    const result = await trainGan(
      { ...rest, device, task, distributed: group },
      {
        onEval: (record) => post({ type: 'eval', record }),
        onStep: (step) => post({ type: 'step', step }),
        // Shared memory, not a message: seen between steps even while the loop keeps the event loop busy.
        shouldStop: () => Atomics.load(stop, 0) !== 0,
      },
    )
    // A few held-out real images for the report's grid.
    const held = task.heldOut
    const real = held ? { pixels: held.pixels.slice(0, Math.min(64, held.count) * 3 * held.size * held.size), count: Math.min(64, held.count) } : undefined
    // The next run of this lane starts from an empty cache. (Measured alone it did not lower the compare's peak:
    // 374 MB without, 379 MB with, at 60 steps; the lanes and the young-generation cap did. The figures in
    // bench/RESULTS.md were taken with it.)
    await device.synchronize()
    device.emptyCache()
    post({ type: 'done', result, real })
  } catch (error) {
    // The error's code crosses to the main thread (a worker's 'error' event keeps only the message).
    post({ type: 'failed', message: error instanceof Error ? error.message : String(error), code: (error as { code?: string } | undefined)?.code })
  } finally {
    group?.destroy()
  }
}

parentPort!.on('message', (request: WorkerRequest) => {
  if (request.type === 'run') void train(request.config)
  else parentPort!.close()
})
