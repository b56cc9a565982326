// Where a training command's results go. A run writes only inside its own run folder: one it creates (the default
// runs/<command>-<dataset>[-N], or a new --out), an empty --out the user named, or, with --force, the folder of an
// earlier bssn run (marked by a .bssn-run file). It never copies, renames or replaces a folder it did not make.
// Results are written to a hidden staging folder inside the run folder and moved up when the run is done, so a
// failed run leaves nothing and an interrupted one never mixes with what --force replaces.
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'

import { UsageError } from './args.js'

/** The mark of a bssn run folder: --force replaces only folders that have one. */
export const runMarker = '.bssn-run'

export interface RunFolder {
  /** The run folder (absolute). */
  out: string
  /** Where results are written until the run is done: <out>/.bssn-partial-<pid>. */
  stage: string
  /** The topmost folder this run created, removed again when it fails; undefined when it made none. */
  created?: string
  /** Whether this run wrote the marker (an existing empty --out gets it back empty when the run fails). */
  marked: boolean
  /** The entries of an earlier run that --force replaces once this one is done. */
  replaces: string[]
}

/** A file-system error in words, for a message that names the path and the fix. */
export function fsReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  const words: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EROFS: 'the file system is read-only',
    ENOSPC: 'the disk is full',
    EDQUOT: 'the disk quota is used up',
    ENOTDIR: 'a part of the path is a file, not a folder',
    ENOENT: 'no folder can be created there',
    ENAMETOOLONG: 'the name is too long',
    ELOOP: 'too many symbolic links',
    EEXIST: 'it already exists',
  }
  return (code && words[code]) ?? (error instanceof Error ? error.message : String(error))
}

/** Creates `dir` and its missing parents one at a time (Node's recursive mkdir loops forever under /proc); returns the topmost one created. */
function makeFolders(dir: string): string | undefined {
  const missing: string[] = []
  for (let at = dir; !existsSync(at) && path.dirname(at) !== at; at = path.dirname(at)) missing.unshift(at)
  const made: string[] = []
  try {
    for (const d of missing) {
      mkdirSync(d)
      made.push(d)
    }
  } catch (error) {
    made.reverse().forEach((d) => rmdirSync(d))
    throw error
  }
  return made[0]
}

/** Removes the empty folders from `dir` up to `top` (which this run created). */
function removeCreated(dir: string, top: string | undefined): void {
  if (!top) return
  for (let at = dir; ; at = path.dirname(at)) {
    try {
      rmdirSync(at)
    } catch {
      return // not empty: something else is there now
    }
    if (at === top || path.dirname(at) === at) return
  }
}

/**
 * Claims the run folder before any work: `out` (the user's --out) or the first of base, base-2, base-3, ... that
 * does not exist. Whatever cannot be used is a UsageError naming the path, why, and what to do.
 */
export function claimRunFolder(request: { out?: string; force: boolean; base: string }): RunFolder {
  let out: string
  let created: string | undefined
  let replaces: string[] = []
  const named = request.out
  if (named === undefined) {
    const base = path.resolve(request.base)
    try {
      created = makeFolders(path.dirname(base))
    } catch (error) {
      throw new UsageError(`cannot create the folder '${path.dirname(request.base)}' for the results (${fsReason(error)}): run bssn from a folder you can write to, or give --out DIR`)
    }
    for (let k = 1; ; k++) {
      out = k === 1 ? base : `${base}-${k}`
      try {
        mkdirSync(out) // fails if it exists: a concurrent run cannot take the same folder
        break
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue
        removeCreated(path.dirname(base), created)
        throw new UsageError(`cannot create the results folder '${out}' (${fsReason(error)}): run bssn from a folder you can write to, or give --out DIR`)
      }
    }
    created ??= out
  } else {
    if (named.trim() === '') throw new UsageError('--out is empty: name the folder the results go to')
    out = path.resolve(named)
    const fix = 'choose another --out'
    if (existsSync(out)) {
      if (!statSync(out).isDirectory()) throw new UsageError(`--out '${named}' is a file, not a folder: ${fix}`)
      let entries: string[]
      try {
        entries = readdirSync(out)
      } catch (error) {
        throw new UsageError(`--out '${named}' cannot be read (${fsReason(error)}): ${fix}`)
      }
      if (entries.length > 0) {
        if (!request.force) throw new UsageError(`--out '${named}' exists and is not empty: choose another folder, or pass --force to replace an earlier bssn run's folder once this run has finished`)
        if (!entries.includes(runMarker))
          throw new UsageError(`--out '${named}' holds files no bssn run wrote (it has no ${runMarker}): --force replaces only an earlier run's folder; ${fix}, or empty it yourself`)
        replaces = entries.filter((e) => e !== runMarker)
      }
    } else {
      try {
        created = makeFolders(out)
      } catch (error) {
        throw new UsageError(`--out '${named}' cannot be created (${fsReason(error)}): ${fix}`)
      }
    }
  }
  const folder: RunFolder = { out, stage: path.join(out, `.bssn-partial-${process.pid}`), created, marked: false, replaces }
  try {
    if (!existsSync(path.join(out, runMarker))) {
      writeFileSync(path.join(out, runMarker), 'a bssn run folder: `bssn train|compare --out <this folder> --force` may replace it\n')
      folder.marked = true
    }
    mkdirSync(folder.stage)
  } catch (error) {
    abandonRunFolder(folder)
    throw new UsageError(`results cannot be written to '${named ?? out}' (${fsReason(error)}): ${named === undefined ? 'run bssn from a folder you can write to, or give --out DIR' : 'choose another --out'}`)
  }
  return folder
}

/** Undoes claimRunFolder after a failure: removes the staging folder, the marker this run wrote, and the folders it created (if empty). */
export function abandonRunFolder(f: RunFolder): void {
  rmSync(f.stage, { recursive: true, force: true })
  if (f.marked) rmSync(path.join(f.out, runMarker), { force: true })
  removeCreated(f.out, f.created)
}

/**
 * Moves the staged results up into the run folder, after moving aside what --force replaces (deleted last). When a
 * move fails, the results stay where they are and the error says where.
 */
export function finishRunFolder(f: RunFolder, warn: (line: string) => void): void {
  const old = path.join(f.out, `.bssn-replaced-${process.pid}`)
  try {
    if (f.replaces.length) {
      mkdirSync(old)
      for (const e of f.replaces) renameSync(path.join(f.out, e), path.join(old, e))
    }
    for (const e of readdirSync(f.stage)) renameSync(path.join(f.stage, e), path.join(f.out, e))
    rmdirSync(f.stage)
  } catch (error) {
    throw new Error(`the results could not be moved into ${f.out} (${fsReason(error)}); they are in ${f.stage}${f.replaces.length ? ` (the replaced run's files in ${old})` : ''}`)
  }
  if (!f.replaces.length) return
  try {
    rmSync(old, { recursive: true, force: true })
  } catch (error) {
    warn(`warning: the replaced run's files could not all be deleted (${fsReason(error)}): they are in ${old}`)
  }
}
