import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { ensureDataDir } from '../data-dir.ts'
import { type TopicRow, topicInfo } from '../rows.ts'
import type { TopicInfo } from '../store.ts'

/** What both SQLite connections (the writer's and the readers') share: the file, its schema, its SQL. */

export type Synchronous = 'full' | 'normal'

export type { TopicRow }

const MIGRATIONS_DIR = join(import.meta.dirname, 'migrations')

export function databasePath(dataDir: string): string {
  return join(dataDir, 'herald.db')
}

export function openDatabase(dataDir: string, synchronous: Synchronous): DatabaseSync {
  ensureDataDir(dataDir)
  const db = new DatabaseSync(databasePath(dataDir))
  // busy_timeout first: switching a new file to WAL takes a lock another process may hold.
  db.exec(`
    PRAGMA busy_timeout = 5000;
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = ${synchronous === 'normal' ? 'NORMAL' : 'FULL'};
    PRAGMA foreign_keys = ON;
    PRAGMA cache_size = -65536;
  `)
  return db
}

/** Applies `migrations/NNN_*.sql` above the database's `user_version`, each in its own transaction. */
export function migrate(db: DatabaseSync): void {
  const userVersion = db.prepare('PRAGMA user_version')
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((name) => /^\d{3}_.*\.sql$/.test(name))
    .sort()
  for (const file of files) {
    const version = Number(file.slice(0, 3))
    db.exec('BEGIN IMMEDIATE')
    // Read inside the write lock: another process starting at the same time may have just migrated.
    if ((userVersion.get() as { user_version: number }).user_version >= version) {
      db.exec('COMMIT')
      continue
    }
    try {
      db.exec(readFileSync(join(MIGRATIONS_DIR, file), 'utf8'))
      db.exec(`PRAGMA user_version = ${version}`)
      db.exec('COMMIT')
    } catch (error) {
      db.exec('ROLLBACK')
      throw new Error(`Migration ${file} failed: ${(error as Error).message}`, { cause: error })
    }
  }
}

/**
 * A real write: rewrites `user_version` to itself, which dirties the header page, so the commit that
 * follows writes and syncs like any other. Inside a transaction the caller opens and commits.
 */
export function touch(db: DatabaseSync): void {
  const { user_version: version } = db.prepare('PRAGMA user_version').get() as { user_version: number }
  db.exec(`PRAGMA user_version = ${Number(version)}`)
}

/** SQLite's primary result codes that mean the file cannot be written at all (not one bad request). */
const CANNOT_WRITE = new Set([
  3, // SQLITE_PERM
  8, // SQLITE_READONLY
  10, // SQLITE_IOERR
  13, // SQLITE_FULL
  14, // SQLITE_CANTOPEN
])

/** SQLite's message when `error` says that the store cannot write, else undefined. */
export function cannotWriteReason(error: unknown): string | undefined {
  const errcode = (error as { errcode?: unknown } | undefined)?.errcode
  if (typeof errcode !== 'number' || !CANNOT_WRITE.has(errcode & 0xff)) return undefined
  return (error as Error).message
}

export type Statements = ReturnType<typeof prepareStatements>

function arrays(statement: StatementSync): StatementSync {
  statement.setReturnArrays(true)
  return statement
}

export function prepareStatements(db: DatabaseSync) {
  const prepare = (sql: string): StatementSync => db.prepare(sql)
  return {
    // Transaction control, prepared once: they run for every group commit and every append in it.
    begin: prepare('BEGIN IMMEDIATE'),
    commit: prepare('COMMIT'),
    savepoint: prepare('SAVEPOINT append'),
    release: prepare('RELEASE append'),
    rollbackToSavepoint: prepare('ROLLBACK TO append'),
    createTopic: prepare('INSERT INTO topics (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING'),
    topicByName: prepare('SELECT * FROM topics WHERE name = ?'),
    allTopics: prepare('SELECT * FROM topics'),
    listTopics: prepare('SELECT * FROM topics WHERE name > ? ORDER BY name LIMIT ?'),
    configureTopic: prepare(
      'UPDATE topics SET retention_max_age_ms = ?, retention_max_events = ?, types = ? WHERE name = ?',
    ),
    advanceHead: prepare('UPDATE topics SET head_seq = ? WHERE id = ?'),
    insertEvent: prepare(
      'INSERT INTO events (topic_id, seq, id, source, stored_at, body) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    eventBySourceAndId: prepare('SELECT seq, body FROM events WHERE topic_id = ? AND source = ? AND id = ?'),
    // Rows as arrays [seq, body]: no object with named properties to build per row (a third of the
    // cost of a catch-up read), and no id (it is in the body): a string fewer per row.
    readEvents: arrays(
      prepare(
        'SELECT seq, body FROM events WHERE topic_id = (SELECT id FROM topics WHERE name = ?) AND seq > ? ORDER BY seq LIMIT ?',
      ),
    ),
    firstSeq: prepare('SELECT MIN(seq) AS seq FROM events WHERE topic_id = ?'),
    // The last event of a contiguous run from `first` that is older than the cutoff time.
    lastSeqStoredBefore: prepare(`
      SELECT MAX(seq) AS seq FROM events
      WHERE topic_id = ?1 AND seq BETWEEN ?2 AND ?3 AND stored_at < ?4
        AND seq < COALESCE((SELECT MIN(seq) FROM events
                            WHERE topic_id = ?1 AND seq BETWEEN ?2 AND ?3 AND stored_at >= ?4), ?3 + 1)`),
    deleteEventsUpTo: prepare('DELETE FROM events WHERE topic_id = ? AND seq <= ?'),
    idempotencyKey: prepare(
      'SELECT request_hash, response FROM idempotency_keys WHERE topic_id = ? AND key = ?',
    ),
    insertIdempotencyKey: prepare(
      'INSERT INTO idempotency_keys (topic_id, key, request_hash, response, created_at) VALUES (?, ?, ?, ?, ?)',
    ),
    deleteIdempotencyKeys: prepare('DELETE FROM idempotency_keys WHERE created_at < ?'),
  }
}

export function describeTopic(statements: Statements, row: TopicRow): TopicInfo {
  return topicInfo(row, (statements.firstSeq.get(row.id) as { seq: number | null }).seq)
}
