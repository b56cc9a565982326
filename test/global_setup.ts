// Once per `npm test`, before any test file: dist/ (the CLI tests and the child processes run it) is rebuilt when
// it is missing or older than src/, asynchronously in vitest's main process, so no test worker waits on tsc.
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** The newest modification time of the files under `dir` ending in `ext` (0 when there are none). */
function newest(dir: string, ext: string): number {
  if (!existsSync(dir)) return 0
  let t = 0
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith(ext)) t = Math.max(t, statSync(path.join(entry.parentPath, entry.name)).mtimeMs)
  }
  return t
}

export default async function setup(): Promise<void> {
  const why = !existsSync(path.join(root, 'dist', 'index.js'))
    ? 'dist/ is missing'
    : newest(path.join(root, 'src'), '.ts') > newest(path.join(root, 'dist'), '.js')
      ? 'src/ changed since dist/ was built'
      : undefined
  if (!why) return
  const started = Date.now()
  console.log(`bssn tests: ${why}: building it (tsc -p tsconfig.build.json) ...`)
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
    child.on('error', reject)
    child.on('close', resolve)
  })
  if (code !== 0) throw new Error(`tsc -p tsconfig.build.json failed (exit ${code}): the tests run dist/`)
  console.log(`bssn tests: dist/ built in ${((Date.now() - started) / 1000).toFixed(0)} s`)
}
