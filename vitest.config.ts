import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // dist/ rebuilt when src/ changed, once, in the main process (the CLI tests and child processes run it).
    globalSetup: ['test/global_setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One fork: the native addon and its stream threads are per process; two cores are all CI has.
    pool: 'forks',
    // Every device allocation starts as NaN, so an op that leaves part of its output unwritten fails a test.
    env: { BSSN_POISON_ALLOCATIONS: '1' },
    // --expose-gc: tests check that forgotten tensors are freed by the garbage collector.
    poolOptions: { forks: { singleFork: true, execArgv: ['--expose-gc'] } },
  },
})
