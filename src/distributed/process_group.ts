// A data-parallel process group on NCCL, as torch.distributed's with the NCCL backend: one process per GPU, launched
// as torchrun launches (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); the rendezvous hands NCCL's unique
// id to every rank. Collectives are enqueued on the device's stream (or, for gradient buckets, on the
// communicator's own stream) and never block the event loop: a watchdog polls NCCL's asynchronous error and the
// completion of what was enqueued, and aborts the communicator when a collective fails (a rank died) or has not
// finished within the timeout, so the survivors end with ERR_BSSN_COLLECTIVE_FAILED instead of hanging.
import { Device } from '../device.js'
import { bssnError, typeError } from '../errors.js'
import { native, type NativeNccl, type NativeNcclComm } from '../native.js'
import { checkTensor, type Tensor } from '../tensor.js'
import { checkInteger, checkOptions, describe } from '../validate.js'
import { readDistributedEnv, type DistributedEnv } from './env.js'
import { rendezvous, type Rendezvous } from './rendezvous.js'

export type ReduceOp = 'sum' | 'avg'

export interface InitDistributedOptions {
  /** The launch environment (default: read from process.env as torchrun sets it). */
  env?: DistributedEnv
  /** This rank's device (default: CUDA device LOCAL_RANK). */
  device?: Device
  /**
   * How long a collective may take from its enqueue before the communicator is aborted (default: BSSN_NCCL_TIMEOUT_S
   * seconds, else 600 s, PyTorch's default).
   */
  timeoutMs?: number
  /** How long to wait for every rank at the rendezvous (default 300 s). */
  rendezvousTimeoutMs?: number
  /** The same string on every rank of one run (default: MASTER_ADDR:MASTER_PORT), so another run's ranks are refused. */
  token?: string
}

const WATCHDOG_MS = 20

function defaultTimeoutMs(): number {
  const text = process.env.BSSN_NCCL_TIMEOUT_S
  if (text === undefined) return 600_000
  if (!/^[0-9]{1,7}(\.[0-9]+)?$/.test(text) || Number(text) <= 0) throw typeError(`BSSN_NCCL_TIMEOUT_S must be a positive number of seconds, got ${JSON.stringify(text)}`)
  return Number(text) * 1000
}

/** This rank's device: CUDA device LOCAL_RANK (the emulated build gives every process its own device 0). */
function deviceOfLocalRank(localRank: number): Device {
  if (native().emulator) return Device.cuda(0)
  return Device.cuda(localRank)
}

/**
 * Joins the data-parallel run this process belongs to: the rendezvous at MASTER_ADDR:MASTER_PORT (rank 0 makes
 * NCCL's unique id and hands it out), then NCCL's communicator on this rank's device. Resolves once every rank is in.
 */
export async function initDistributed(options: InitDistributedOptions = {}): Promise<ProcessGroup> {
  options = checkOptions(options)
  const env = options.env ?? readDistributedEnv()
  if (!env) throw typeError('initDistributed needs RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (as torchrun sets them), or options.env')
  const timeoutMs = checkInteger(options.timeoutMs ?? defaultTimeoutMs(), 'options.timeoutMs', 1)
  const rendezvousTimeoutMs = checkInteger(options.rendezvousTimeoutMs ?? 300_000, 'options.rendezvousTimeoutMs', 1)
  const device = options.device ?? deviceOfLocalRank(env.localRank)
  if (!(device instanceof Device)) throw typeError(`expected options.device to be a Device, got ${describe(device)}`)
  if (device.kind !== 'cuda') throw typeError(`data-parallel training runs on NCCL, which needs a CUDA device; got ${device.name}`)
  const nccl = native().nccl
  if (!nccl) throw bssnError('this build of bssn has no CUDA, so no NCCL', 'ERR_BSSN_CUDA_UNAVAILABLE')
  // NCCL's id comes from rank 0 only (on real NCCL it starts the bootstrap's listener); the others load NCCL here
  // too, so a missing library fails before the rendezvous.
  nccl.version()
  const id = env.rank === 0 ? nccl.uniqueId() : undefined
  const meeting = await rendezvous({
    rank: env.rank,
    worldSize: env.worldSize,
    addr: env.masterAddr,
    port: env.masterPort,
    token: options.token ?? `${env.masterAddr}:${env.masterPort}`,
    payload: id,
    timeoutMs: rendezvousTimeoutMs,
  })
  let comm: NativeNcclComm
  try {
    // Blocks until every rank's init: they are all past the rendezvous, so this is short.
    comm = nccl.init(device.handle, meeting.payload, env.worldSize, env.rank)
  } catch (e) {
    meeting.close()
    throw e
  }
  return new ProcessGroup(env, device, nccl, comm, meeting, timeoutMs)
}

/** One rank's view of the run: collectives on tensors of its device, and the watchdog that bounds them. */
export class ProcessGroup {
  readonly rank: number
  readonly worldSize: number
  readonly localRank: number
  readonly device: Device
  /** How long a collective may take from its enqueue before the communicator is aborted. */
  readonly timeoutMs: number
  readonly #nccl: NativeNccl
  readonly #comm: NativeNcclComm
  readonly #meeting: Rendezvous
  #failure: Error | undefined
  #enqueuedAt: number[] = [] // when each collective not yet seen complete was enqueued, oldest first
  #watchdog: NodeJS.Timeout | undefined
  #waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = []
  #failureListeners: Array<(e: Error) => void> = []
  #destroyed = false

  /** @internal Made by initDistributed(). */
  constructor(env: DistributedEnv, device: Device, nccl: NativeNccl, comm: NativeNcclComm, meeting: Rendezvous, timeoutMs: number) {
    this.rank = env.rank
    this.worldSize = env.worldSize
    this.localRank = env.localRank
    this.device = device
    this.timeoutMs = timeoutMs
    this.#nccl = nccl
    this.#comm = comm
    this.#meeting = meeting
  }

  /** The error that ended the group (a failed or timed-out collective), if one did. */
  get failure(): Error | undefined {
    return this.#failure
  }

  /** Throws the error that ended the group, if any (a training loop calls it once per step). */
  check(): void {
    if (this.#failure) throw this.#failure
    if (this.#destroyed) throw bssnError('the process group was destroyed', 'ERR_BSSN_DISPOSED')
  }

  /** Calls `listener` once when a collective fails or times out (the group is then unusable). */
  onFailure(listener: (e: Error) => void): void {
    if (typeof listener !== 'function') throw typeError(`expected a function, got ${describe(listener)}`)
    if (this.#failure) listener(this.#failure)
    else this.#failureListeners.push(listener)
  }

  /** Reduces each tensor in place across the ranks (one NCCL group), in stream order on the device. */
  allReduce(tensors: Tensor | readonly Tensor[], op: ReduceOp = 'sum'): void {
    this.#enqueue(tensors, op, false)
  }

  /** @internal allReduce on the communicator's own stream, after the device stream's work so far; join() orders it back. */
  allReduceOverlapped(tensors: readonly Tensor[], op: ReduceOp): void {
    this.#enqueue(tensors, op, true)
  }

  /** @internal The device's stream waits (on the device) for the overlapped all-reduces so far. */
  join(): void {
    this.check()
    this.#call(() => this.#nccl.join(this.#comm))
  }

  /** Rank `root`'s tensor into every rank's, in place, in stream order. */
  broadcast(tensor: Tensor, root = 0): void {
    this.check()
    checkTensor(tensor, 'tensor')
    checkInteger(root, 'root', 0, this.worldSize - 1)
    this.#checkDevice(tensor, 'tensor')
    this.#call(() => this.#nccl.broadcast(this.#comm, tensor.handle, root))
    this.#started()
  }

  /** Resolves when every collective enqueued so far has completed on this rank; rejects with the group's failure. */
  synchronize(): Promise<void> {
    try {
      this.check()
    } catch (e) {
      return Promise.reject(e)
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject })
      this.#poll()
      // Someone waits: the watchdog keeps the process alive until the collectives complete, as pending I/O would.
      if (this.#waiters.length) this.#watchdog?.ref()
    })
  }

  /** Resolves once every rank called it (after this rank's collectives completed), as torch.distributed.barrier. */
  async barrier(timeoutMs = this.timeoutMs): Promise<void> {
    await this.synchronize()
    await this.#meeting.barrier(timeoutMs)
  }

  /**
   * @internal Ends the group with `reason` (this rank can no longer issue what its peers issue): the communicator is
   * aborted, so the peers' collectives fail instead of waiting for this rank.
   */
  abort(reason: Error): void {
    try {
      this.#nccl.abort(this.#comm)
    } catch {}
    this.#fail(reason)
  }

  /** Aborts the communicator (work in flight ends) and closes the connections to the other ranks. */
  destroy(): void {
    if (this.#destroyed) return
    this.#destroyed = true
    this.#stopWatchdog()
    try {
      this.#nccl.abort(this.#comm)
    } catch {}
    this.#meeting.close()
    const e = bssnError('the process group was destroyed', 'ERR_BSSN_DISPOSED')
    this.#waiters.splice(0).forEach((w) => w.reject(e))
  }

  #enqueue(tensors: Tensor | readonly Tensor[], op: ReduceOp, overlapped: boolean): void {
    this.check()
    if (op !== 'sum' && op !== 'avg') throw typeError(`expected the reduction 'sum' or 'avg', got ${describe(op)}`)
    const list = Array.isArray(tensors) ? (tensors as readonly Tensor[]) : [tensors as Tensor]
    if (list.length === 0) return
    list.forEach((t, i) => {
      checkTensor(t, `tensors[${i}]`)
      this.#checkDevice(t, `tensors[${i}]`)
    })
    this.#call(() => this.#nccl.allReduce(this.#comm, list.map((t) => t.handle), op, overlapped))
    this.#started()
  }

  #checkDevice(t: Tensor, name: string): void {
    if (!t.device.equals(this.device)) throw typeError(`${name} is on ${t.device.name}, not on this rank's ${this.device.name}`)
    if (t.dtype !== 'float32') throw typeError(`${name} is ${t.dtype}: collectives take float32 tensors`)
  }

  // A native call whose collective error (a failed peer) ends the group.
  #call(body: () => void): void {
    try {
      body()
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_BSSN_COLLECTIVE_FAILED') this.#fail(e as Error)
      throw e
    }
  }

  #started(): void {
    this.#enqueuedAt.push(performance.now())
    if (!this.#watchdog) {
      this.#watchdog = setInterval(() => this.#poll(), WATCHDOG_MS)
      this.#watchdog.unref() // the watchdog alone keeps no process alive (a waiter refs it)
    }
  }

  #stopWatchdog(): void {
    if (this.#watchdog) clearInterval(this.#watchdog)
    this.#watchdog = undefined
  }

  // What the watchdog does: NCCL's error or the timeout aborts; completion releases waiters and stops the timer.
  #poll(): void {
    if (this.#failure || this.#destroyed) return
    try {
      this.#enqueuedAt.splice(0, this.#nccl.poll(this.#comm))
    } catch (e) {
      return this.#fail(e as Error)
    }
    if (this.#enqueuedAt.length === 0) {
      this.#stopWatchdog()
      this.#waiters.splice(0).forEach((w) => w.resolve())
      return
    }
    // The oldest collective still running, not the first of a run that always has one in flight.
    if (performance.now() - this.#enqueuedAt[0] > this.timeoutMs) {
      try {
        this.#nccl.abort(this.#comm)
      } catch {}
      this.#fail(
        bssnError(
          `rank ${this.rank}: a collective did not finish within ${this.timeoutMs} ms (a rank died or hung; BSSN_NCCL_TIMEOUT_S sets the bound); the communicator was aborted`,
          'ERR_BSSN_COLLECTIVE_FAILED',
        ),
      )
    }
  }

  #fail(e: Error): void {
    if (this.#failure) return
    this.#failure = Object.assign(e, { message: e.message.startsWith('rank ') ? e.message : `rank ${this.rank}: ${e.message}` })
    this.#stopWatchdog()
    this.#waiters.splice(0).forEach((w) => w.reject(e))
    this.#failureListeners.splice(0).forEach((l) => l(e))
  }
}

