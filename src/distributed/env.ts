// The launch environment of a data-parallel run, as torchrun sets it: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT. Read strictly: a typo in a launch script must fail here, not hang a rendezvous on another machine.
import { rangeError, typeError } from '../errors.js'

export interface DistributedEnv {
  /** This process's rank, 0 ≤ rank < worldSize. */
  rank: number
  worldSize: number
  /** The GPU index on this machine (torchrun's LOCAL_RANK). */
  localRank: number
  /** Where rank 0 listens for the rendezvous. */
  masterAddr: string
  masterPort: number
}

const NAMES = ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'] as const

// Decimal digits only: Number() would take '', ' 1', '0x10' and '1e3', which no launcher means.
function integer(env: NodeJS.ProcessEnv, name: string): number {
  const text = env[name] as string
  if (!/^[0-9]{1,9}$/.test(text)) throw typeError(`${name} must be a non-negative decimal integer, got ${JSON.stringify(text)}`)
  return Number(text)
}

/**
 * The distributed launch environment, or null when none of its variables is set (a single-process run).
 * Throws a TypeError (ERR_BSSN_INVALID_ARGUMENT) when some are missing or malformed, a RangeError
 * (ERR_BSSN_OUT_OF_RANGE) when a value is out of range.
 */
export function readDistributedEnv(env: NodeJS.ProcessEnv = process.env): DistributedEnv | null {
  const missing = NAMES.filter((name) => env[name] === undefined)
  if (missing.length === NAMES.length) return null
  if (missing.length > 0) {
    throw typeError(`a distributed launch needs ${NAMES.join(', ')}; missing: ${missing.join(', ')}`)
  }
  const rank = integer(env, 'RANK')
  const worldSize = integer(env, 'WORLD_SIZE')
  const localRank = integer(env, 'LOCAL_RANK')
  const masterPort = integer(env, 'MASTER_PORT')
  const masterAddr = env.MASTER_ADDR as string
  if (worldSize < 1) throw rangeError(`WORLD_SIZE must be at least 1, got ${worldSize}`)
  if (rank >= worldSize) throw rangeError(`RANK must be below WORLD_SIZE (${worldSize}), got ${rank}`)
  if (localRank > rank) throw rangeError(`LOCAL_RANK (${localRank}) cannot exceed RANK (${rank})`)
  if (masterPort < 1 || masterPort > 65535) throw rangeError(`MASTER_PORT must be in 1..65535, got ${masterPort}`)
  // A host name or an IP address; no spaces, schemes or ports (MASTER_PORT carries the port).
  if (!/^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]+:[0-9A-Fa-f:.]*|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}))$/.test(masterAddr)) {
    throw typeError(`MASTER_ADDR must be a host name or an IP address, got ${JSON.stringify(masterAddr)}`)
  }
  const bare = masterAddr.startsWith('[') ? masterAddr.slice(1, -1) : masterAddr
  return { rank, worldSize, localRank, masterAddr: bare, masterPort }
}
