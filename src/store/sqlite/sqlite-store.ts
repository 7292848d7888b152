import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { errors } from '../../core/errors.ts'
import { type NewEvent, type StoredEvent, withPosition } from '../../core/event.ts'
import type { AppendOptions, AppendResult, PruneResult, Retention, Store, TopicInfo } from '../store.ts'

export interface SqliteStoreOptions {
  /** The directory that holds `herald.db` (created if missing). */
  dataDir: string
  /**
   * `full` (the default) fsyncs the WAL at every commit, so an acknowledged event survives a power
   * loss; `normal` survives a crash of the process but not of the machine.
   */
  synchronous?: 'full' | 'normal'
}

interface PendingAppend {
  topic: string
  events: NewEvent[]
  options: AppendOptions
  resolve: (result: AppendResult) => void
  reject: (error: unknown) => void
}

interface TopicRow {
  id: number
  name: string
  head_seq: number
  created_at: number
  retention_max_age_ms: number | null
  retention_max_events: number | null
}

/** Rows deleted per statement while pruning, so that no single transaction holds the writer for long. */
const PRUNE_CHUNK = 5000

const MIGRATIONS_DIR = join(import.meta.dirname, 'migrations')

/**
 * The embedded Store: one SQLite file in WAL mode. node:sqlite is synchronous, so appends that arrive
 * in the same turn of the event loop are group-committed: one transaction (one fsync) for all of
 * them, each inside its own savepoint so that one bad request fails alone.
 */
export class SqliteStore implements Store {
  readonly path: string
  private readonly db: DatabaseSync
  private readonly statements: ReturnType<typeof prepareStatements>
  private queue: PendingAppend[] = []
  private flushScheduled = false
  private closed = false

  constructor(options: SqliteStoreOptions) {
    mkdirSync(options.dataDir, { recursive: true })
    this.path = join(options.dataDir, 'herald.db')
    this.db = new DatabaseSync(this.path)
    this.db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'};
      PRAGMA busy_timeout = 5000;
      PRAGMA foreign_keys = ON;
    `)
    migrate(this.db)
    this.statements = prepareStatements(this.db)
  }

  append(topic: string, events: NewEvent[], options: AppendOptions): Promise<AppendResult> {
    if (this.closed) return Promise.reject(errors.unavailable('The store is closed.'))
    return new Promise((resolve, reject) => {
      this.queue.push({ topic, events, options, resolve, reject })
      if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(() => this.flush())
      }
    })
  }

  /** Commits every queued append in one transaction. */
  private flush(): void {
    this.flushScheduled = false
    const batch = this.queue
    this.queue = []
    if (batch.length === 0) return
    const outcomes: Array<{ ok: true; result: AppendResult } | { ok: false; error: unknown }> = []
    const tx = this.statements
    try {
      tx.begin.run()
      for (const pending of batch) {
        tx.savepoint.run()
        try {
          outcomes.push({ ok: true, result: this.appendOne(pending) })
          tx.release.run()
        } catch (error) {
          tx.rollbackToSavepoint.run()
          tx.release.run()
          outcomes.push({ ok: false, error })
        }
      }
      tx.commit.run()
    } catch (error) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK')
      for (const pending of batch) pending.reject(error)
      return
    }
    batch.forEach((pending, index) => {
      const outcome = outcomes[index]!
      if (outcome.ok) pending.resolve(outcome.result)
      else pending.reject(outcome.error)
    })
  }

  private appendOne({ topic, events, options }: PendingAppend): AppendResult {
    const s = this.statements
    let row = s.topicByName.get(topic) as TopicRow | undefined
    if (!row) {
      s.createTopic.run(topic, options.now)
      row = s.topicByName.get(topic) as unknown as TopicRow
    }
    if (options.idempotencyKey !== undefined) {
      const previous = s.idempotencyKey.get(row.id, options.idempotencyKey) as
        | { request_hash: string; response: string }
        | undefined
      if (previous) {
        if (previous.request_hash !== options.requestHash) {
          throw errors.idempotencyKeyReused(
            'This Idempotency-Key was used with a different request in this topic.',
            'Idempotency-Key',
          )
        }
        return { events: JSON.parse(previous.response) as StoredEvent[], stored: 0, head: row.head_seq }
      }
    }
    let head = row.head_seq
    const stored: StoredEvent[] = []
    const storedInThisRequest = new Map<string, StoredEvent>()
    for (const event of events) {
      if (event.clientId) {
        const repeat =
          storedInThisRequest.get(event.id) ??
          (s.eventById.get(row.id, event.id) as { seq: number; body: string } | undefined)
        if (repeat) {
          stored.push('json' in repeat ? repeat : { topic, seq: repeat.seq, id: event.id, json: repeat.body })
          continue
        }
      }
      head += 1
      const json = withPosition(event.body, topic, head)
      s.insertEvent.run(row.id, head, event.id, options.now, json)
      const storedEvent = { topic, seq: head, id: event.id, json }
      storedInThisRequest.set(event.id, storedEvent)
      stored.push(storedEvent)
    }
    if (head !== row.head_seq) s.advanceHead.run(head, row.id)
    if (options.idempotencyKey !== undefined) {
      s.insertIdempotencyKey.run(
        row.id,
        options.idempotencyKey,
        options.requestHash ?? '',
        JSON.stringify(stored),
        options.now,
      )
    }
    return { events: stored, stored: head - row.head_seq, head }
  }

  async read(topic: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
    const rows = this.statements.readEvents.all(topic, afterSeq, limit) as Array<{
      seq: number
      id: string
      body: string
    }>
    return rows.map((row) => ({ topic, seq: row.seq, id: row.id, json: row.body }))
  }

  async topic(name: string): Promise<TopicInfo | undefined> {
    const row = this.statements.topicByName.get(name) as TopicRow | undefined
    return row && this.describe(row)
  }

  async topics({ after = '', limit }: { after?: string; limit: number }): Promise<TopicInfo[]> {
    const rows = this.statements.listTopics.all(after, limit) as unknown as TopicRow[]
    return rows.map((row) => this.describe(row))
  }

  async configureTopic(name: string, retention: Retention): Promise<TopicInfo> {
    const s = this.statements
    s.createTopic.run(name, Date.now())
    s.setRetention.run(retention.maxAgeMs, retention.maxEvents, name)
    return this.describe(s.topicByName.get(name) as unknown as TopicRow)
  }

  private describe(row: TopicRow): TopicInfo {
    const first = this.statements.firstSeq.get(row.id) as { seq: number | null }
    const firstSeq = first.seq ?? row.head_seq + 1
    return {
      topic: row.name,
      head_seq: row.head_seq,
      first_seq: firstSeq,
      events: row.head_seq - firstSeq + 1,
      created_at: new Date(row.created_at).toISOString(),
      retention: { max_age_ms: row.retention_max_age_ms, max_events: row.retention_max_events },
    }
  }

  async prune(now: number, defaults: Retention, idempotencyTtlMs: number): Promise<PruneResult> {
    const s = this.statements
    let removed = 0
    const topics = s.allTopics.all() as unknown as TopicRow[]
    for (const topic of topics) {
      const maxEvents = topic.retention_max_events ?? defaults.maxEvents
      const maxAgeMs = topic.retention_max_age_ms ?? defaults.maxAgeMs
      // Oldest first, in chunks, stopping at the first event retention keeps: what remains is contiguous.
      for (;;) {
        if (this.closed) return { events: removed, idempotencyKeys: 0 }
        const first = (s.firstSeq.get(topic.id) as { seq: number | null }).seq
        if (first === null) break
        let cutoff = first - 1
        const chunkEnd = first + PRUNE_CHUNK - 1
        if (maxEvents !== null) cutoff = Math.max(cutoff, Math.min(chunkEnd, topic.head_seq - maxEvents))
        if (maxAgeMs !== null) {
          const old = s.lastSeqStoredBefore.get(topic.id, first, chunkEnd, now - maxAgeMs) as {
            seq: number | null
          }
          if (old.seq !== null) cutoff = Math.max(cutoff, old.seq)
        }
        if (cutoff < first) break
        removed += Number(s.deleteEventsUpTo.run(topic.id, cutoff).changes)
        await nextTurn() // let publishes and reads in between chunks
      }
    }
    const keys = Number(s.deleteIdempotencyKeys.run(now - idempotencyTtlMs).changes)
    return { events: removed, idempotencyKeys: keys }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.flush()
    this.db.close()
  }
}

function prepareStatements(db: DatabaseSync) {
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
    setRetention: prepare(
      'UPDATE topics SET retention_max_age_ms = ?, retention_max_events = ? WHERE name = ?',
    ),
    advanceHead: prepare('UPDATE topics SET head_seq = ? WHERE id = ?'),
    insertEvent: prepare('INSERT INTO events (topic_id, seq, id, stored_at, body) VALUES (?, ?, ?, ?, ?)'),
    eventById: prepare('SELECT seq, body FROM events WHERE topic_id = ? AND id = ?'),
    readEvents: prepare(
      'SELECT seq, id, body FROM events WHERE topic_id = (SELECT id FROM topics WHERE name = ?) AND seq > ? ORDER BY seq LIMIT ?',
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

/** Applies `migrations/NNN_*.sql` above the database's `user_version`, each in its own transaction. */
function migrate(db: DatabaseSync): void {
  const current = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((name) => /^\d{3}_.*\.sql$/.test(name))
    .sort()
  for (const file of files) {
    const version = Number(file.slice(0, 3))
    if (version <= current) continue
    db.exec('BEGIN IMMEDIATE')
    try {
      db.exec(readFileSync(join(MIGRATIONS_DIR, file), 'utf8'))
      db.exec(`PRAGMA user_version = ${version}`)
      db.exec('COMMIT')
    } catch (error) {
      db.exec('ROLLBACK')
      throw new Error(`Migration ${file} failed: ${(error as Error).message}`)
    }
  }
}
