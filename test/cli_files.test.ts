// The CLI and the user's files: where results go (and where they never go), what a run does with a folder it did
// not create, inputs it cannot read, and signals at any point of a run. Every child process is asynchronous.
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, expect, it } from 'vitest'

import { abandonRunFolder, claimRunFolder, finishRunFolder, runMarker } from '../src/cli/run_folder.js'
import { RateEstimate } from '../src/cli/progress.js'
import { runCli } from './helpers/cli.js'

const sandbox = mkdtempSync(path.join(tmpdir(), 'bssn-files-'))
afterAll(() => rmSync(sandbox, { recursive: true, force: true }))

const isRoot = process.getuid?.() === 0
const nobody = { uid: 65534, gid: 65534 }
const tiny = ['--dataset', 'ring8', '--batch', '16', '--width', '8', '--eval-every', '5', '--eval-samples', '50', '--ckpt-every', '5', '--device', 'cpu']

/** Every entry under `dir` as lstat sees it (inode, times, owner, mode), with file contents and link targets. */
function snapshot(dir: string): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const walk = (p: string) => {
    const s = lstatSync(p)
    out[path.relative(dir, p) || '.'] = {
      ino: s.ino, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, uid: s.uid, gid: s.gid, mode: s.mode, size: s.size,
      content: s.isFile() ? readFileSync(p).toString('base64') : s.isSymbolicLink() ? readlinkSync(p) : undefined,
    }
    if (s.isDirectory()) for (const e of readdirSync(p).sort()) walk(path.join(p, e))
  }
  walk(dir)
  return out
}

it('a resumed run without --out writes a new runs/ folder and leaves the folders around its checkpoint as they were', async () => {
  const home = path.join(sandbox, 'resume')
  mkdirSync(home)
  const first = await runCli(['train', ...tiny, '--steps', '10', '--out', 'first'], { cwd: home })
  expect(first.code, first.stderr).toBe(0)
  // A user's folder A holding the checkpoint three levels down, a file, a relative symlink, another user's file.
  const a = path.join(home, 'A')
  mkdirSync(path.join(a, 'L1', 'L2'), { recursive: true })
  writeFileSync(path.join(a, 'notes.txt'), 'mine')
  symlinkSync('notes.txt', path.join(a, 'link'))
  writeFileSync(path.join(a, 'L1', 'L2', 'ck.safetensors'), readFileSync(path.join(home, 'first', 'bssn', 'seed-1', 'checkpoint.safetensors')))
  writeFileSync(path.join(a, 'L1', 'L2', 'metrics.jsonl'), readFileSync(path.join(home, 'first', 'bssn', 'seed-1', 'metrics.jsonl')))
  writeFileSync(path.join(a, 'theirs.txt'), 'theirs')
  if (isRoot) chownSync(path.join(a, 'theirs.txt'), nobody.uid, nobody.gid)
  const before = snapshot(a)
  const aInode = lstatSync(a).ino

  const resumed = await runCli(['train', ...tiny, '--steps', '15', '--resume', path.join('A', 'L1', 'L2', 'ck.safetensors')], { cwd: home })
  expect(resumed.code, resumed.stderr).toBe(0)
  expect(snapshot(a)).toEqual(before)
  expect(lstatSync(a).ino).toBe(aInode)
  expect(readdirSync(home).sort()).toEqual(['A', 'first', 'runs'])
  const run = path.join(home, 'runs', 'train-ring8')
  expect(resumed.stdout).toContain(`-> ${run}`)
  expect(existsSync(path.join(run, 'report.html'))).toBe(true)
  // The new folder carries the earlier records from the metrics beside the checkpoint.
  const steps = readFileSync(path.join(run, 'bssn', 'seed-1', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)
  expect(steps).toEqual([5, 10, 15])
}, 120_000)

it('--out that cannot hold results is refused before any work, in our words, with exit code 2', async () => {
  const file = path.join(sandbox, 'a-file')
  writeFileSync(file, 'x')
  const cases: Array<[string, RegExp]> = [
    ['/proc/bssn-out', /--out '\/proc\/bssn-out' cannot be created \(no folder can be created there\): choose another --out/],
    ['', /--out is empty: name the folder the results go to/],
    [path.join(file, 'sub'), /cannot be created \(a part of the path is a file, not a folder\)/],
    [file, /is a file, not a folder/],
  ]
  for (const [out, message] of cases) {
    const r = await runCli(['train', ...tiny, '--steps', '5', '--out', out], { timeoutMs: 30_000 })
    expect(r.code, `${out}: ${r.stderr}`).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).not.toMatch(/E[A-Z]{3,}/) // no raw errno
    expect(r.stdout).not.toMatch(/training/)
  }
})

it('as another user: a read-only folder is refused up front; an empty writable --out under a read-only parent works', async () => {
  if (!isRoot) return // needs root to run the CLI as nobody; the paths above fail for any user
  chmodSync(sandbox, 0o755) // mkdtemp's 0700 would keep nobody out of everything
  const parent = path.join(sandbox, 'readonly')
  mkdirSync(path.join(parent, 'empty'), { recursive: true })
  chownSync(path.join(parent, 'empty'), nobody.uid, nobody.gid)
  chmodSync(parent, 0o755) // root's: nobody cannot write here
  const cwd = path.join(parent, 'empty')
  const refused = await runCli(['train', ...tiny, '--steps', '5', '--out', path.join(parent, 'new')], { ...nobody, cwd })
  expect(refused.code, refused.stderr).toBe(2)
  expect(refused.stderr).toMatch(/--out '.*readonly\/new' cannot be created \(permission denied\): choose another --out/)
  const nowhere = await runCli(['train', ...tiny, '--steps', '5'], { ...nobody, cwd: parent })
  expect(nowhere.code).toBe(2)
  expect(nowhere.stderr).toMatch(/cannot create the folder 'runs' for the results \(permission denied\): run bssn from a folder you can write to, or give --out DIR/)
  const ok = await runCli(['train', ...tiny, '--steps', '5', '--out', path.join(parent, 'empty')], { ...nobody, cwd })
  expect(ok.code, ok.stderr).toBe(0)
  expect(existsSync(path.join(parent, 'empty', 'report.html'))).toBe(true)
  expect(readdirSync(parent).sort()).toEqual(['empty'])
  // A png: folder it cannot read.
  const pngs = path.join(sandbox, 'secret-pngs')
  mkdirSync(pngs, { mode: 0o700 })
  const unreadable = await runCli(['train', '--dataset', `png:${pngs}`, '--steps', '1', '--device', 'cpu', '--out', path.join(cwd, 'x')], { ...nobody, cwd })
  expect(unreadable.code).toBe(2)
  expect(unreadable.stderr).toMatch(/secret-pngs' cannot be read \(permission denied\): give a folder you can read/)
}, 120_000)

it('damaged PNG files and a --device without a GPU are usage errors (exit 2) that create nothing', async () => {
  const pngs = path.join(sandbox, 'pngs')
  mkdirSync(pngs)
  writeFileSync(path.join(pngs, 'a.png'), 'not a png at all, just text')
  const out = path.join(sandbox, 'never')
  const notPng = await runCli(['train', '--dataset', `png:${pngs}`, '--steps', '1', '--device', 'cpu', '--out', out])
  expect(notPng.code).toBe(2)
  expect(notPng.stderr).toMatch(/a\.png' is not a PNG image/)
  // A PNG header over damaged data: found when the run decodes it, still exit 2, and the run folder is removed.
  const header = Buffer.from('89504e470d0a1a0a0000000d4948445200000010000000100806000000', 'hex')
  for (let i = 0; i < 50; i++) writeFileSync(path.join(pngs, `img${i}.png`), Buffer.concat([header, Buffer.from('garbage'.repeat(8))]))
  rmSync(path.join(pngs, 'a.png'))
  const damaged = await runCli(['train', '--dataset', `png:${pngs}`, '--steps', '1', '--device', 'cpu', '--out', out])
  expect(damaged.code, damaged.stderr).toBe(2)
  expect(damaged.stderr).toMatch(/img0\.png is a damaged PNG image \(.*\): remove it or convert it/)
  expect(existsSync(out)).toBe(false)
  const { native } = await import('../src/native.js')
  if (!native().cudaStatus().available) {
    const cuda = await runCli(['train', ...tiny, '--steps', '1', '--device', 'cuda', '--out', out])
    expect(cuda.code).toBe(2)
    expect(cuda.stderr).toMatch(/--device cuda: CUDA is not usable.*use --device cpu/)
  }
  expect(existsSync(out)).toBe(false)
}, 120_000)

it('--force replaces only an earlier bssn run folder; a folder of other files is refused', async () => {
  const theirs = path.join(sandbox, 'theirs')
  mkdirSync(theirs)
  writeFileSync(path.join(theirs, 'precious.txt'), 'keep me')
  const refused = await runCli(['train', ...tiny, '--steps', '5', '--out', theirs, '--force'])
  expect(refused.code).toBe(2)
  expect(refused.stderr).toMatch(/holds files no bssn run wrote \(it has no \.bssn-run\): --force replaces only an earlier run's folder/)
  expect(readdirSync(theirs)).toEqual(['precious.txt'])
})

it('the run folder: claimed fresh, given back on failure, and results kept where they are when the final move fails', () => {
  const base = path.join(sandbox, 'claims', 'runs', 'train-x')
  const a = claimRunFolder({ force: false, base })
  const b = claimRunFolder({ force: false, base })
  expect([a.out, b.out]).toEqual([base, `${base}-2`])
  expect(existsSync(path.join(a.out, runMarker))).toBe(true)
  abandonRunFolder(b)
  abandonRunFolder(a)
  expect(existsSync(path.join(sandbox, 'claims'))).toBe(false) // every folder it created, and only those

  const f = claimRunFolder({ force: false, out: path.join(sandbox, 'finish'), base: 'runs/unused' })
  writeFileSync(path.join(f.stage, 'report.html'), 'new')
  mkdirSync(path.join(f.out, 'report.html', 'in-the-way'), { recursive: true }) // a rename over it fails
  expect(() => finishRunFolder(f, () => {})).toThrow(new RegExp(`could not be moved into .*finish \\(.*\\); they are in ${f.stage.replace(/[.]/g, '\\.')}`))
  expect(readFileSync(path.join(f.stage, 'report.html'), 'utf8')).toBe('new')
})

it('the rate and time left are measured from the first report, not from the start', () => {
  let now = 0
  const estimate = new RateEstimate(() => now)
  now = 60_000 // a minute of start-up before the first step is reported
  estimate.update(1)
  expect(estimate.rate).toBeUndefined()
  now = 61_000
  estimate.update(89)
  expect(estimate.rate).toBeCloseTo(88, 6)
  expect(estimate.eta(6000)).toBeCloseTo((6000 - 89) / 88, 6)
})

const long = ['--dataset', 'ring8', '--steps', '100000', '--eval-every', '100000', '--ckpt-every', '100000', '--device', 'cpu']

it('Ctrl-C and SIGTERM stop within seconds whatever the intervals, with checkpoint, metrics and report; the progress rate is the real one', async () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const out = path.join(sandbox, `signal-${signal}`)
    const r = await runCli(['train', ...long, '--out', out], { signals: [signal], when: /progress: /, timeoutMs: 90_000 })
    console.log(`${signal}: exit ${r.secondsAfterSignal?.toFixed(2)} s after the signal`)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.secondsAfterSignal).toBeLessThan(20) // mostly the report's charts; the run itself stops within a step
    expect(r.stdout).toMatch(new RegExp(`interrupted \\(${signal}\\): finishing the current step`))
    const rate = Number(/progress: \d+\/100000 steps, ([\d.]+) steps\/s/.exec(r.stdout)![1])
    const final = Number(/after \d+ steps \(([\d.]+) steps\/s\)/.exec(r.stdout)![1])
    expect(rate / final).toBeGreaterThan(0.2)
    expect(rate / final).toBeLessThan(5)
    expect(readFileSync(path.join(out, 'report.html'), 'utf8')).toMatch(/\(interrupted\)/)
    expect(readFileSync(path.join(out, 'bssn', 'seed-1', 'checkpoint.safetensors')).length).toBeGreaterThan(100)
    const records = readFileSync(path.join(out, 'bssn', 'seed-1', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    expect(records).toHaveLength(1) // evaluated where it stopped
    expect(records[0].step).toBeGreaterThan(0)
    expect(readdirSync(out).filter((e) => e.startsWith('.bssn-partial'))).toEqual([])
  }
}, 200_000)

it('signals at other points: before the first step, during a compare of several runs, while the report is written', async () => {
  const early = await runCli(['train', ...long, '--out', path.join(sandbox, 'early')], { signals: ['SIGINT'], when: /training bssn/, timeoutMs: 60_000 })
  expect(early.code, early.stdout + early.stderr).toBe(0)
  expect(early.secondsAfterSignal).toBeLessThan(20)
  expect(existsSync(path.join(sandbox, 'early', 'report.html'))).toBe(true)

  const compare = path.join(sandbox, 'compare')
  const several = await runCli(['compare', ...long, '--norms', 'sn,ssn,bssn', '--seeds', '1,2', '--width', '8', '--out', compare], { signals: ['SIGTERM'], when: /progress: /, timeoutMs: 90_000 })
  console.log(`compare of 6 runs: exit ${several.secondsAfterSignal?.toFixed(2)} s after SIGTERM`)
  expect(several.code, several.stdout + several.stderr).toBe(0)
  expect(several.secondsAfterSignal).toBeLessThan(20)
  expect(several.stdout).toMatch(/not started \(interrupted\): /)
  expect(existsSync(path.join(compare, 'report.html'))).toBe(true)

  const late = path.join(sandbox, 'late')
  const report = await runCli(['train', ...tiny, '--steps', '10', '--out', late], { signals: ['SIGINT'], when: /seed 1 step 10:/, timeoutMs: 60_000 })
  expect(report.code, report.stdout + report.stderr).toBe(0)
  expect(existsSync(path.join(late, 'report.html'))).toBe(true)
  expect(readdirSync(late).filter((e) => e.startsWith('.bssn-partial'))).toEqual([])
}, 240_000)

it('--resume with a damaged checkpoint exits 2 with what is wrong, before anything is created', async () => {
  // Three levels down in the sandbox: the code before issue 21 took the folder three levels above a checkpoint as
  // the run folder and replaced it (run against that code, a checkpoint in the sandbox's top replaced all of /tmp).
  const home = path.join(sandbox, 'damaged')
  mkdirSync(path.join(home, 'in', 'a'), { recursive: true })
  expect((await runCli(['train', ...tiny, '--steps', '5', '--out', 'first'], { cwd: home })).code).toBe(0)
  const bytes = readFileSync(path.join(home, 'first', 'bssn', 'seed-1', 'checkpoint.safetensors'))
  const length = Number(bytes.readBigUInt64LE(0))
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString())
  const data = bytes.subarray(8 + length)
  const write = (h: unknown, d: Buffer) => {
    const json = Buffer.from(JSON.stringify(h))
    const n = Buffer.alloc(8)
    n.writeBigUInt64LE(BigInt(json.length))
    writeFileSync(path.join(home, 'in', 'a', 'ck.safetensors'), Buffer.concat([n, json, d]))
  }
  const nan = Buffer.from(data)
  for (let i = 0; i < nan.length; i += 4) nan.writeFloatLE(NaN, i)
  const name = Object.keys(header).find((k) => k !== '__metadata__')!
  const cases: Array<[() => void, RegExp]> = [
    [() => write({ ...header, __metadata__: { ...header.__metadata__, step: 'abc' } }, data), /its step is "abc", not a whole number/],
    [() => write(header, nan), /holds NaN at index 0: values must be finite/],
    [() => write({ ...header, [name]: { ...header[name], data_offsets: 5 } }, data), /has data_offsets 5, not two non-negative integers/],
  ]
  for (const [damage, message] of cases) {
    damage()
    const r = await runCli(['train', ...tiny, '--steps', '10', '--resume', path.join('in', 'a', 'ck.safetensors')], { cwd: home })
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toMatch(/--resume: in\/a\/ck\.safetensors is not a usable checkpoint: /)
    expect(r.stderr).toMatch(message)
    expect(r.stdout).toBe('')
    expect(readdirSync(home).sort()).toEqual(['first', 'in'])
  }
}, 120_000)
