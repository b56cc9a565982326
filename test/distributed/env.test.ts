// torchrun's launch environment, read strictly: every malformed value is a coded TypeError or RangeError.
import { describe, expect, it } from 'vitest'

import { readDistributedEnv } from '../../src/distributed/env.js'

const good = { RANK: '3', WORLD_SIZE: '8', LOCAL_RANK: '1', MASTER_ADDR: '10.0.0.7', MASTER_PORT: '29500' }

describe('readDistributedEnv', () => {
  it('reads what torchrun sets', () => {
    expect(readDistributedEnv(good)).toEqual({ rank: 3, worldSize: 8, localRank: 1, masterAddr: '10.0.0.7', masterPort: 29500 })
    expect(readDistributedEnv({ ...good, MASTER_ADDR: 'node-01.cluster' })?.masterAddr).toBe('node-01.cluster')
    expect(readDistributedEnv({ ...good, MASTER_ADDR: '[fe80::1]' })?.masterAddr).toBe('fe80::1')
    expect(readDistributedEnv({ ...good, MASTER_ADDR: '::1' })?.masterAddr).toBe('::1')
  })

  it('is null for a single-process run', () => {
    expect(readDistributedEnv({ PATH: '/usr/bin' })).toBeNull()
  })

  it('names the missing variables', () => {
    const { MASTER_PORT: _, LOCAL_RANK: __, ...partial } = good
    expect(() => readDistributedEnv(partial)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_BSSN_INVALID_ARGUMENT', message: expect.stringMatching(/missing: LOCAL_RANK, MASTER_PORT$/) }),
    )
  })

  it.each([
    ['RANK', ''],
    ['RANK', '-1'],
    ['RANK', '1.0'],
    ['WORLD_SIZE', ' 8'],
    ['WORLD_SIZE', '0x8'],
    ['WORLD_SIZE', '8e0'],
    ['LOCAL_RANK', 'one'],
    ['MASTER_PORT', '29500/tcp'],
    ['MASTER_ADDR', ''],
    ['MASTER_ADDR', 'http://10.0.0.7'],
    ['MASTER_ADDR', '10.0.0.7:29500'],
    ['MASTER_ADDR', 'a host'],
  ])('%s=%j is a TypeError', (name, value) => {
    expect(() => readDistributedEnv({ ...good, [name]: value })).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_BSSN_INVALID_ARGUMENT', message: expect.stringContaining(name) }),
    )
  })

  it.each([
    [{ RANK: '8' }, 'RANK'],
    [{ WORLD_SIZE: '0', RANK: '0', LOCAL_RANK: '0' }, 'WORLD_SIZE'],
    [{ LOCAL_RANK: '4' }, 'LOCAL_RANK'],
    [{ MASTER_PORT: '0' }, 'MASTER_PORT'],
    [{ MASTER_PORT: '65536' }, 'MASTER_PORT'],
  ])('%j is a RangeError', (change, name) => {
    expect(() => readDistributedEnv({ ...good, ...change })).toThrow(
      expect.objectContaining({ name: 'RangeError', code: 'ERR_BSSN_OUT_OF_RANGE', message: expect.stringContaining(name) }),
    )
  })
})
