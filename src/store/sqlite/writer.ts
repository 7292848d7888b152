import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite'
import { setImmediate as nextTurn } from 'node:timers/promises'
import type { NewEvent } from '../../core/event.ts'
import { type EventRow, planAppend } from '../append-plan.ts'
import type { AppendOptions, AppendResult, PruneResult, Retention, TopicInfo, TopicTypes } from '../store.ts'
import { describeTopic, type Statements, type TopicRow } from './database.ts'
import type { DeliveryTables } from './deliveries.ts'

export interface AppendRequest {
  topic: string
  events: NewEvent[]
  options: AppendOptions
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown }

/**
 * Events inserted per statement at most: one multi-row INSERT for up to this many rows (6 parameters
 * each, far below SQLite's 32,766) costs SQLite one statement's start and one call from JavaScript
 * instead of one per event.
 */
const ROWS_PER_INSERT = 100

/** Rows deleted per statement while pruning, so that no single transaction holds the writer for long. */
const PRUNE_CHUNK = 5000

/** Everything that writes to the SQLite file. Synchronous: one call, one transaction. */
export class SqliteWriter {
  private readonly db: DatabaseSync
  private readonly s: Statements
  private readonly deliveries: DeliveryTables
  /** The multi-row INSERT for each row count, prepared when first needed. */
  private readonly inserts: Array<StatementSync | undefined> = []

  constructor(db: DatabaseSync, statements: Statements, deliveries: DeliveryTables) {
    this.db = db
    this.s = statements
    this.deliveries = deliveries
  }

  /**
   * Group commit: one transaction (one fsync) for a whole batch of writes (appends, and the
   * dispatcher's claims and settlements), each inside its own savepoint so that one failing request
   * (a reused idempotency key) fails alone.
   */
  transact(batch: Array<() => unknown>): Array<Outcome<unknown>> {
    const s = this.s
    const outcomes: Array<Outcome<unknown>> = []
    try {
      s.begin.run()
      this.deliveries.beginTransaction()
      for (const job of batch) {
        s.savepoint.run()
        try {
          outcomes.push({ ok: true, value: job() })
          s.release.run()
        } catch (error) {
          s.rollbackToSavepoint.run()
          s.release.run()
          outcomes.push({ ok: false, error })
        }
      }
      s.commit.run()
    } catch (error) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK')
      return batch.map(() => ({ ok: false, error }))
    }
    return outcomes
  }

  appendOne({ topic, events, options }: AppendRequest): AppendResult {
    const s = this.s
    let row = s.topicByName.get(topic) as TopicRow | undefined
    if (!row) {
      s.createTopic.run(topic, options.now)
      row = s.topicByName.get(topic) as unknown as TopicRow
    }
    const topicId = row.id
    // The lookups see this transaction's earlier writes (SQLite has a single writer: the lock is held).
    const plan = planAppend(topic, row.head_seq, events, options, {
      previousRequest: (key) =>
        s.idempotencyKey.get(topicId, key) as { request_hash: string; response: string } | undefined,
      storedEvent: (source, id) =>
        s.eventBySourceAndId.get(topicId, source, id) as { seq: number; body: string } | undefined,
    })
    if (plan.repeat) return { events: plan.events, stored: 0, head: plan.head, deliveries: 0 }
    this.insertEvents(topicId, plan.rows, options.now)
    if (plan.head !== row.head_seq) s.advanceHead.run(plan.head, topicId)
    if (plan.idempotency) {
      const { key, requestHash, response } = plan.idempotency
      s.insertIdempotencyKey.run(topicId, key, requestHash, response, options.now)
    }
    const deliveries = this.deliveries.createForEvents(topicId, topic, plan.fresh, options.now)
    return { events: plan.events, stored: plan.head - row.head_seq, head: plan.head, deliveries }
  }

  /** The rows, in order, by statements of up to ROWS_PER_INSERT rows (the same rows and checks). */
  private insertEvents(topicId: number, rows: EventRow[], now: number): void {
    if (rows.length === 1) {
      const event = rows[0]!
      this.s.insertEvent.run(topicId, event.seq, event.id, event.source, now, event.json)
      return
    }
    for (let start = 0; start < rows.length; start += ROWS_PER_INSERT) {
      const count = Math.min(ROWS_PER_INSERT, rows.length - start)
      const values = new Array<SQLInputValue>(count * 6)
      for (let i = 0; i < count; i++) {
        const event = rows[start + i]!
        const at = i * 6
        values[at] = topicId
        values[at + 1] = event.seq
        values[at + 2] = event.id
        values[at + 3] = event.source
        values[at + 4] = now
        values[at + 5] = event.json
      }
      this.insertOf(count).run(...values)
    }
  }

  private insertOf(count: number): StatementSync {
    let statement = this.inserts[count]
    if (statement === undefined) {
      const row = '(?, ?, ?, ?, ?, ?)'
      statement = this.db.prepare(
        `INSERT INTO events (topic_id, seq, id, source, stored_at, body) VALUES ${Array(count).fill(row).join(', ')}`,
      )
      this.inserts[count] = statement
    }
    return statement
  }

  configureTopic(name: string, retention: Retention, types: TopicTypes, now: number): TopicInfo {
    this.s.createTopic.run(name, now)
    this.s.configureTopic.run(retention.maxAgeMs, retention.maxEvents, types, name)
    return describeTopic(this.s, this.s.topicByName.get(name) as unknown as TopicRow)
  }

  /** Removes events past retention, oldest first and in chunks, yielding to appends between chunks. */
  async prune(
    now: number,
    defaults: Retention,
    idempotencyTtlMs: number,
    stopped: () => boolean,
  ): Promise<PruneResult> {
    const none = { events: 0, idempotencyKeys: 0, deliveries: 0 }
    const s = this.s
    let removed = 0
    for (const topic of s.allTopics.all() as unknown as TopicRow[]) {
      const maxEvents = topic.retention_max_events ?? defaults.maxEvents
      const maxAgeMs = topic.retention_max_age_ms ?? defaults.maxAgeMs
      // Stop at the first event retention keeps: what remains is contiguous.
      for (;;) {
        if (stopped()) return { ...none, events: removed }
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
        await nextTurn()
      }
    }
    const keys = Number(s.deleteIdempotencyKeys.run(now - idempotencyTtlMs).changes)
    // The delivery log is kept as long as events are by default (a week unless configured).
    const deliveries = this.deliveries.prune(defaults.maxAgeMs === null ? 0 : now - defaults.maxAgeMs, now)
    return { events: removed, idempotencyKeys: keys, deliveries }
  }
}
