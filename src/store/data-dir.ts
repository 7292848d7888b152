import { mkdirSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { ConfigError } from '../config/config.ts'

/**
 * Creates the data directory and whichever of its parents are missing, one `mkdir` each.
 *
 * Not `mkdirSync(dir, { recursive: true })`: when `mkdir` answers ENOENT under a parent that exists
 * (as /proc and /sys do), Node's recursive mode retries the parent and the child forever, at full
 * CPU. Here each missing directory is tried once, and a failure names the directory.
 */
export function ensureDataDir(dataDir: string): void {
  const missing: string[] = []
  // Up from the directory to the first one that exists: as many steps as the path has parts.
  for (let path = resolve(dataDir); ; path = dirname(path)) {
    const found = statIfAny(dataDir, path)
    if (found === 'directory') break
    if (found === 'other') throw cannotUse(dataDir, `${path} exists and is not a directory`)
    missing.push(path)
    if (dirname(path) === path) break
  }
  for (const path of missing.reverse()) {
    try {
      mkdirSync(path)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST' && statIfAny(dataDir, path) === 'directory') {
        continue // created by someone else meanwhile
      }
      throw cannotUse(dataDir, `cannot create ${path}: ${(error as Error).message}`)
    }
  }
}

function statIfAny(dataDir: string, path: string): 'directory' | 'other' | undefined {
  try {
    return statSync(path).isDirectory() ? 'directory' : 'other'
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw cannotUse(dataDir, (error as Error).message)
  }
}

function cannotUse(dataDir: string, why: string): ConfigError {
  return new ConfigError(
    `Cannot use the data directory ${resolve(dataDir)} (${why}). Choose a directory on a writable filesystem with --data or HERALD_DATA.`,
  )
}
