import type { DatabaseSync } from 'node:sqlite'
import { errors } from '../../core/errors.ts'
import type { NewEvent, StoredEvent } from '../../core/event.ts'
import type { AppendOptions, AppendResult, PruneResult, Retention, Store, TopicInfo } from '../store.ts'
import {
  databasePath,
  describeTopic,
  migrate,
  openDatabase,
  prepareStatements,
  type Statements,
  type Synchronous,
  type TopicRow,
} from './database.ts'
import { type AppendRequest, SqliteWriter } from './writer.ts'

export interface SqliteStoreOptions {
  /** The directory that holds `herald.db` (created if missing). */
  dataDir: string
  /**
   * `full` (the default) fsyncs the WAL at every commit, so an acknowledged event survives a power
   * loss; `normal` survives a crash of the process but not of the machine.
   */
  synchronous?: Synchronous
}

interface PendingAppend {
  request: AppendRequest
  resolve: (result: AppendResult) => void
  reject: (error: unknown) => void
}

/**
 * The embedded Store: one SQLite file in WAL mode. node:sqlite is synchronous, so appends that arrive
 * in the same turn of the event loop are group-committed: one transaction and one fsync for all.
 *
 * Why on the main thread: a writer thread was tried (see docs/architecture.md). Publishers wait for
 * their own commit, so the extra hops to and from a thread add to every request's latency, and with
 * as many publishers as connections that latency is what bounds throughput: it measured slower.
 */
export class SqliteStore implements Store {
  readonly path: string
  private readonly db: DatabaseSync
  private readonly statements: Statements
  private readonly writer: SqliteWriter
  private queue: PendingAppend[] = []
  private flushScheduled = false
  private closed = false

  constructor(options: SqliteStoreOptions) {
    this.path = databasePath(options.dataDir)
    this.db = openDatabase(options.dataDir, options.synchronous ?? 'full')
    migrate(this.db)
    this.statements = prepareStatements(this.db)
    this.writer = new SqliteWriter(this.db, this.statements)
  }

  append(topic: string, events: NewEvent[], options: AppendOptions): Promise<AppendResult> {
    if (this.closed) return Promise.reject(errors.unavailable('The store is closed.'))
    return new Promise((resolve, reject) => {
      this.queue.push({ request: { topic, events, options }, resolve, reject })
      if (!this.flushScheduled) {
        this.flushScheduled = true
        // After the rest of this turn of the event loop, so that its requests join the group.
        setImmediate(() => this.flush())
      }
    })
  }

  private flush(): void {
    this.flushScheduled = false
    const group = this.queue
    this.queue = []
    if (group.length === 0) return
    const outcomes = this.writer.appendBatch(group.map((pending) => pending.request))
    group.forEach((pending, index) => {
      const outcome = outcomes[index]!
      if (outcome.ok) pending.resolve(outcome.value)
      else pending.reject(outcome.error)
    })
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
    return row && describeTopic(this.statements, row)
  }

  async topics({ after = '', limit }: { after?: string; limit: number }): Promise<TopicInfo[]> {
    const rows = this.statements.listTopics.all(after, limit) as unknown as TopicRow[]
    return rows.map((row) => describeTopic(this.statements, row))
  }

  async configureTopic(name: string, retention: Retention): Promise<TopicInfo> {
    return this.writer.configureTopic(name, retention, Date.now())
  }

  prune(now: number, defaults: Retention, idempotencyTtlMs: number): Promise<PruneResult> {
    return this.writer.prune(now, defaults, idempotencyTtlMs, () => this.closed)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.flush()
    this.db.close()
  }
}
