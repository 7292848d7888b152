import { closeSync, openSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { ConfigError } from '../config/config.ts'
import { ensureDataDir } from './data-dir.ts'

/**
 * One Herald per data directory: a second server on the same store would start silently and split
 * the live streams (each process only tells its own subscribers about what it stored).
 *
 * The lock is a small SQLite database held in EXCLUSIVE locking mode: after one write, SQLite keeps
 * its lock on the file until the connection closes, and the OS drops it with the process (kill -9
 * included), so it never goes stale. Who holds it is written beside it, for the message the next
 * one gets (the lock database itself cannot be read while it is held).
 */
export interface DataDirLock {
  /** Adds where the holder listens to its description, once it does. */
  describe(url: string): void
  /** Lets go of the directory (also done by the OS when the process ends). */
  release(): void
}

interface Holder {
  pid: number
  host: string
  started_at: string
  url?: string
}

export const LOCK_FILE = 'herald.lock'
export const HOLDER_FILE = 'herald.lock.json'
/** More than a holder's description ever takes: the file is read, not trusted. */
const HOLDER_MAX_BYTES = 4096
const SQLITE_BUSY = 5

export function lockDataDir(dataDir: string): DataDirLock {
  ensureDataDir(dataDir)
  const lockPath = join(dataDir, LOCK_FILE)
  const holderPath = join(dataDir, HOLDER_FILE)
  let db: DatabaseSync | undefined
  try {
    db = new DatabaseSync(lockPath)
    // busy_timeout 0: a held lock is an answer, not something to wait for.
    db.exec(`
      PRAGMA busy_timeout = 0;
      PRAGMA locking_mode = EXCLUSIVE;
      PRAGMA journal_mode = MEMORY;
      BEGIN EXCLUSIVE;
      CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL);
      DELETE FROM holder;
      INSERT INTO holder (pid) VALUES (${process.pid});
      COMMIT;
    `)
  } catch (error) {
    db?.close()
    const errcode = (error as { errcode?: number }).errcode
    if (errcode !== undefined && (errcode & 0xff) === SQLITE_BUSY) {
      throw new ConfigError(
        `The data directory ${resolve(dataDir)} is in use by another Herald (${describeHolder(holderPath)}). ` +
          'Stop that one first, or give this one another --data directory: two servers on one store would split its live streams.',
      )
    }
    throw new ConfigError(
      `Cannot lock the data directory ${resolve(dataDir)} (${lockPath}: ${(error as Error).message}). ` +
        'Herald must be able to create and write files there: check its owner, mode and attributes ' +
        '(lsattr), and that the filesystem is mounted read-write.',
    )
  }
  const lock = db
  const holder: Holder = { pid: process.pid, host: hostname(), started_at: new Date().toISOString() }
  const write = () => {
    // Whole or not at all: the next server may read it at any moment.
    const temporary = `${holderPath}.${process.pid}`
    writeFileSync(temporary, `${JSON.stringify(holder)}\n`)
    renameSync(temporary, holderPath)
  }
  try {
    write()
  } catch (error) {
    lock.close()
    throw new ConfigError(`Cannot write ${holderPath}: ${(error as Error).message}`)
  }
  let released = false
  return {
    describe(url) {
      holder.url = url
      // Only the wording of another server's error depends on it: a failure here (a full disk, say)
      // must not fail a server that is already listening, with its lock held.
      try {
        write()
      } catch {
        // the description written at start, without the URL, stays
      }
    },
    release() {
      if (released) return
      released = true
      // Before the lock goes: once it has, the file may already be the next holder's.
      rmSync(holderPath, { force: true })
      lock.close()
    },
  }
}

/** `pid 123 on host, started …, listening on …`, from what the holder wrote beside the lock. */
function describeHolder(holderPath: string): string {
  try {
    const holder = JSON.parse(readStart(holderPath, HOLDER_MAX_BYTES)) as Partial<Holder>
    const parts = [`pid ${Number(holder.pid)} on ${String(holder.host)}`]
    if (typeof holder.started_at === 'string') parts.push(`started ${holder.started_at}`)
    parts.push(typeof holder.url === 'string' ? `listening on ${holder.url}` : 'not listening yet')
    return parts.join(', ')
  } catch {
    return `its details are not in ${holderPath}`
  }
}

function readStart(path: string, maxBytes: number): string {
  const fd = openSync(path, 'r')
  try {
    const buffer = Buffer.alloc(maxBytes)
    const length = readSync(fd, buffer, 0, maxBytes, 0)
    return buffer.subarray(0, length).toString('utf8')
  } finally {
    closeSync(fd)
  }
}
