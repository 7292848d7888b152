import type { DatabaseSync } from 'node:sqlite'
import { ConfigError } from '../../config/config.ts'
import { errors } from '../../core/errors.ts'
import type { NewEvent, StoredEvent } from '../../core/event.ts'
import type {
  AppendOptions,
  AppendResult,
  AttemptRecord,
  ClaimedRun,
  ClaimRequest,
  DeliveryFilter,
  DeliveryRecord,
  DeliveryState,
  ExtendRequest,
  HookChanges,
  HookKind,
  HookRecord,
  KeyRecord,
  LeadershipClaim,
  NodeRecord,
  PendingVerification,
  PresenceRecord,
  PruneResult,
  RecoveryResult,
  ReplayRequest,
  Retention,
  Settlement,
  SettleResult,
  Store,
  StoredEventType,
  StoredKey,
  TopicInfo,
  TopicTypes,
  VerificationLease,
  VerificationOutcome,
  VerificationRecord,
} from '../store.ts'
import { MAX_READ_BYTES } from '../store.ts'
import {
  cannotWriteReason,
  databasePath,
  describeTopic,
  migrate,
  openDatabase,
  prepareStatements,
  type Statements,
  type Synchronous,
  type TopicRow,
  touch,
} from './database.ts'
import { DeliveryTables } from './deliveries.ts'
import { EventTypeTable } from './event-types.ts'
import { KeyTable } from './keys.ts'
import { NodeTable } from './nodes.ts'
import { PresenceTable } from './presence.ts'
import { SqliteWriter } from './writer.ts'

export interface SqliteStoreOptions {
  /** The directory that holds `herald.db` (created if missing). */
  dataDir: string
  /**
   * `full` (the default) fsyncs the WAL at every commit, so an acknowledged event survives a power
   * loss; `normal` survives a crash of the process but not of the machine.
   */
  synchronous?: Synchronous
  /** The retry schedule's first delay: a new delivery is due this long after its event is stored. */
  firstDeliveryDelayMs?: number
}

/**
 * Rows per statement run of a read: the first, and at most (see read). A run costs a B-tree search and
 * a call into node:sqlite: a catch-up page (1,000 events) or a poll of 1,000 is two runs of small events.
 */
const FIRST_CHUNK = 32
const READ_CHUNK = 1024

/** How often, at most, a store that failed to write tries a write again when asked whether it can. */
const PROBE_INTERVAL_MS = 1000

interface PendingWrite {
  job: () => unknown
  resolve: (result: never) => void
  reject: (error: unknown) => void
}

/**
 * The embedded Store: one SQLite file in WAL mode. node:sqlite is synchronous, so writes (appends,
 * the dispatcher's claims and settlements, hook changes) that arrive in the same turn of the event
 * loop are group-committed: one transaction and one fsync for all.
 *
 * Why on the main thread: a writer thread was tried (see docs/architecture.md). Publishers wait for
 * their own commit, so the extra hops to and from a thread add to every request's latency, and with
 * as many publishers as connections that latency is what bounds throughput: it measured slower.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite'
  readonly path: string
  private readonly db: DatabaseSync
  private readonly statements: Statements
  private readonly writer: SqliteWriter
  private readonly deliveries: DeliveryTables
  private readonly nodeTable: NodeTable
  private readonly keyTable: KeyTable
  private readonly eventTypeTable: EventTypeTable
  private readonly presenceTable: PresenceTable
  private queue: PendingWrite[] = []
  private flushScheduled = false
  private closed = false
  /** SQLite's answer to the last write that failed for want of a writable file, until a write succeeds. */
  private writeFailure: string | undefined
  private lastProbe = 0
  /** The node that claimed the leadership last (see claimLeadership), until it releases it. */
  private leaderId: string | undefined

  constructor(options: SqliteStoreOptions) {
    this.path = databasePath(options.dataDir)
    let db: DatabaseSync | undefined
    try {
      db = openDatabase(options.dataDir, options.synchronous ?? 'full')
      migrate(db)
      // A real write transaction, before anyone is told the server is ready: SQLite opens a file it
      // may not write (read-only, immutable) read-only without a word, and only writes would fail.
      db.exec('BEGIN IMMEDIATE')
      touch(db)
      db.exec('COMMIT')
    } catch (error) {
      if (db?.isTransaction) db.exec('ROLLBACK')
      db?.close()
      throw this.openFailure(error)
    }
    this.db = db
    this.statements = prepareStatements(this.db)
    this.deliveries = new DeliveryTables(this.db, options.firstDeliveryDelayMs ?? 0)
    this.writer = new SqliteWriter(this.db, this.statements, this.deliveries)
    this.nodeTable = new NodeTable(this.db, this.deliveries)
    this.keyTable = new KeyTable(this.db)
    this.eventTypeTable = new EventTypeTable(this.db)
    this.presenceTable = new PresenceTable(this.db)
  }

  private openFailure(error: unknown): Error {
    const reason = cannotWriteReason(error) ?? cannotWriteReason((error as { cause?: unknown }).cause)
    if (reason === undefined)
      return new Error(`Cannot open the store ${this.path}: ${(error as Error).message}`)
    return new ConfigError(
      `Cannot write the store ${this.path}: ${reason}. Herald must be able to write this file and ` +
        'create files beside it: check their owner, mode and attributes (lsattr), and that the filesystem ' +
        'is mounted read-write.',
    )
  }

  /**
   * A write that failed because the file cannot be written is the server's problem, not the
   * request's: 503, and the store is not ready until a write succeeds again.
   */
  private writeError(error: unknown): unknown {
    const reason = cannotWriteReason(error)
    if (reason === undefined) return error
    this.writeFailure = reason
    return errors.unavailable(`The store cannot write at the moment (${reason}).`, undefined, {
      'retry-after': '5',
    })
  }

  async cannotWrite(): Promise<string | undefined> {
    if (this.writeFailure === undefined || this.closed) return this.writeFailure
    // Whether it can again: a real write, at most once a second however often readiness is asked.
    if (Date.now() - this.lastProbe >= PROBE_INTERVAL_MS) {
      this.lastProbe = Date.now()
      await this.write(() => touch(this.db)).then(
        () => {
          this.writeFailure = undefined
        },
        () => {},
      )
    }
    return this.writeFailure
  }

  /** One process writes the file: its own clock is the store's. */
  now(): number {
    return Date.now()
  }

  append(topic: string, events: NewEvent[], options: AppendOptions): Promise<AppendResult> {
    return this.write(() => this.writer.appendOne({ topic, events, options }))
  }

  /** Runs `job` in the next group commit; resolves once that transaction is durable. */
  private write<T>(job: () => T): Promise<T> {
    if (this.closed) return Promise.reject(errors.unavailable('The store is closed.'))
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ job, resolve: resolve as (result: never) => void, reject })
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
    const outcomes = this.writer.transact(group.map((pending) => pending.job))
    group.forEach((pending, index) => {
      const outcome = outcomes[index]!
      if (outcome.ok) pending.resolve(outcome.value as never)
      else pending.reject(this.writeError(outcome.error))
    })
  }

  async read(
    topic: string,
    afterSeq: number,
    limit: number,
    maxBytes = MAX_READ_BYTES,
  ): Promise<StoredEvent[]> {
    const events: StoredEvent[] = []
    let bytes = 0
    // Fetched whole in chunks (all() costs about half of iterate() per row), each as many rows as the
    // rest of the byte budget holds at the average size so far (FIRST_CHUNK to begin with, at most
    // READ_CHUNK): the read stops at the budget having loaded few rows more than it returns.
    let chunk = FIRST_CHUNK
    for (;;) {
      const want = Math.min(chunk, limit - events.length)
      const rows = this.statements.readEvents.all(topic, afterSeq, want) as unknown as Array<
        [seq: number, body: string]
      >
      // A later chunk that does not follow on (retention ran in between) is left to the next read,
      // which reports the gap: a page never jumps after its first event.
      if (events.length > 0 && rows.length > 0 && rows[0]![0] !== afterSeq + 1) return events
      for (const [seq, body] of rows) {
        events.push({ topic, seq, json: body })
        bytes += body.length
        if (bytes >= maxBytes) return events
      }
      if (rows.length < want || events.length === limit) return events
      afterSeq = rows[rows.length - 1]![0]
      chunk = Math.max(1, Math.min(READ_CHUNK, Math.ceil(((maxBytes - bytes) * events.length) / bytes)))
    }
  }

  async topic(name: string): Promise<TopicInfo | undefined> {
    const row = this.statements.topicByName.get(name) as TopicRow | undefined
    return row && describeTopic(this.statements, row)
  }

  async heads(names: string[]): Promise<Map<string, number>> {
    const heads = new Map<string, number>()
    for (const name of names) {
      const row = this.statements.topicByName.get(name) as TopicRow | undefined
      if (row) heads.set(name, row.head_seq)
    }
    return heads
  }

  async topics({ after = '', limit }: { after?: string; limit: number }): Promise<TopicInfo[]> {
    const rows = this.statements.listTopics.all(after, limit) as unknown as TopicRow[]
    return rows.map((row) => describeTopic(this.statements, row))
  }

  async configureTopic(name: string, retention: Retention, types: TopicTypes): Promise<TopicInfo> {
    try {
      return this.writer.configureTopic(name, retention, types, Date.now())
    } catch (error) {
      throw this.writeError(error)
    }
  }

  prune(now: number, defaults: Retention, idempotencyTtlMs: number): Promise<PruneResult> {
    return this.writer
      .prune(now, defaults, idempotencyTtlMs, () => this.closed)
      .catch((error) => {
        throw this.writeError(error)
      })
  }

  // ---- hooks and deliveries (src/store/sqlite/deliveries.ts) ----------------------------------

  // ---- presence (presence.ts) ------------------------------------------------------------------

  joinPresence(member: PresenceRecord, maxMembers: number, now: number): Promise<boolean> {
    return this.write(() => this.presenceTable.join(member, maxMembers, now))
  }

  leavePresence(topic: string, client: string): Promise<boolean> {
    return this.write(() => this.presenceTable.leave(topic, client))
  }

  refreshPresence(nodeId: string, expiresAt: number): Promise<number> {
    return this.write(() => this.presenceTable.refresh(nodeId, expiresAt))
  }

  async presence(topics: string[], now: number): Promise<PresenceRecord[]> {
    return this.presenceTable.list(topics, now)
  }

  prunePresence(now: number): Promise<number> {
    return this.write(() => this.presenceTable.prune(now))
  }

  clearPresence(nodeId: string): Promise<number> {
    return this.write(() => this.presenceTable.clear(nodeId))
  }

  // ---- the event-type catalog (event-types.ts) -------------------------------------------------

  putEventType(
    input: { type: string; schema: string; description: string | null; deprecated: boolean },
    now: number,
  ): Promise<{ current: StoredEventType; previous: StoredEventType | undefined }> {
    return this.write(() => this.eventTypeTable.put(input, now))
  }

  async eventTypes(options: { after?: string; limit: number }): Promise<StoredEventType[]> {
    return this.eventTypeTable.page(options)
  }

  async eventType(type: string, version?: number): Promise<StoredEventType | undefined> {
    return this.eventTypeTable.get(type, version)
  }

  async eventTypeVersions(type: string): Promise<StoredEventType[]> {
    return this.eventTypeTable.versions(type)
  }

  async eventTypesChangedSince(since: number): Promise<StoredEventType[]> {
    return this.eventTypeTable.changedSince(since)
  }

  async topicsRequiringTypes(): Promise<string[]> {
    return this.eventTypeTable.topicsRequiringTypes()
  }

  createKey(key: StoredKey): Promise<void> {
    return this.write(() => this.keyTable.create(key))
  }

  async key(id: string): Promise<StoredKey | undefined> {
    return this.keyTable.key(id)
  }

  async keysById(ids: string[]): Promise<StoredKey[]> {
    return this.keyTable.keysById(ids)
  }

  async keys(options: { after?: string; limit: number }): Promise<KeyRecord[]> {
    return this.keyTable.keys(options)
  }

  deleteKey(id: string): Promise<boolean> {
    return this.write(() => this.keyTable.delete(id))
  }

  createHook(hook: HookRecord): Promise<HookRecord> {
    return this.write(() => this.deliveries.createHook(hook))
  }

  async hook(id: string): Promise<HookRecord | undefined> {
    return this.deliveries.hook(id)
  }

  async hooks(options: {
    after?: string
    limit: number
    kind?: HookKind
    topicUrl?: string
  }): Promise<HookRecord[]> {
    return this.deliveries.hooks(options)
  }

  async websubSubscription(topicUrl: string, callback: string): Promise<HookRecord | undefined> {
    return this.deliveries.websubSubscription(topicUrl, callback)
  }

  recordVerification(request: Omit<PendingVerification, 'id'>, lease: VerificationLease): Promise<number> {
    return this.write(() => this.deliveries.recordVerification(request, lease))
  }

  startVerification(id: number, lease: VerificationLease): Promise<PendingVerification | undefined> {
    return this.write(() => this.deliveries.startVerification(id, lease))
  }

  claimVerifications(request: {
    lease: VerificationLease
    now: number
    limit: number
    formerSelf?: string
  }): Promise<PendingVerification[]> {
    return this.write(() => this.deliveries.claimVerifications(request))
  }

  finishVerification(outcome: VerificationOutcome): Promise<boolean> {
    return this.write(() => this.deliveries.finishVerification(outcome))
  }

  async verifications(options: { topicUrl?: string; limit: number }): Promise<VerificationRecord[]> {
    return this.deliveries.verifications(options)
  }

  updateHook(id: string, changes: HookChanges, now: number): Promise<HookRecord | undefined> {
    return this.write(() => this.deliveries.updateHook(id, changes, now))
  }

  deleteHook(id: string): Promise<boolean> {
    return this.write(() => this.deliveries.deleteHook(id))
  }

  claimDeliveries(request: ClaimRequest): Promise<ClaimedRun[]> {
    return this.write(() => this.deliveries.claim(request))
  }

  extendRun(request: ExtendRequest): Promise<ClaimedRun | undefined> {
    return this.write(() => this.deliveries.extend(request))
  }

  settleDeliveries(settlement: Settlement): Promise<SettleResult> {
    return this.write(() => this.deliveries.settle(settlement))
  }

  async nextDueAt(): Promise<number | null> {
    return this.deliveries.nextDueAt()
  }

  async delivery(hookId: string, id: number): Promise<DeliveryRecord | undefined> {
    return this.deliveries.delivery(hookId, id)
  }

  async attempts(
    hookId: string,
    options: { deliveryId?: number; eventId?: string; before?: number; limit: number },
  ): Promise<AttemptRecord[]> {
    return this.deliveries.attempts(hookId, options)
  }

  retryDelivery(hookId: string, id: number, now: number): Promise<DeliveryRecord | undefined> {
    return this.write(() => {
      const hook = this.deliveries.hook(hookId)
      return hook && this.deliveries.retry(hook, id, now)
    })
  }

  replay(hookId: string, request: ReplayRequest): Promise<{ queued: number }> {
    return this.write(() => {
      const hook = this.deliveries.hook(hookId)
      return hook ? this.deliveries.replay(hook, request) : { queued: 0 }
    })
  }

  async listDeliveries(filter: DeliveryFilter): Promise<DeliveryRecord[]> {
    return this.deliveries.list(filter)
  }

  async deliveryCounts(): Promise<Record<DeliveryState, number>> {
    return this.deliveries.counts()
  }

  // ---- nodes (src/store/sqlite/nodes.ts) --------------------------------------------------------

  joinCluster(nodeId: string): Promise<void> {
    return this.write(() => this.nodeTable.join(nodeId, Date.now()))
  }

  heartbeat(nodeId: string, staleMs: number): Promise<number> {
    return this.write(() => this.nodeTable.heartbeat(nodeId, staleMs, Date.now()))
  }

  leaveCluster(nodeId: string): Promise<void> {
    return this.write(() => this.nodeTable.leave(nodeId, Date.now()))
  }

  async nodes(): Promise<NodeRecord[]> {
    return this.nodeTable.nodes().map((node) => ({ ...node, leader: node.id === this.leaderId }))
  }

  // ---- the leader's maintenance -----------------------------------------------------------------

  /**
   * One server holds the data directory (its lock), so the node that asks leads, always in term 1:
   * kept in memory, as nothing outside this process could contend for it.
   */
  async claimLeadership(nodeId: string): Promise<LeadershipClaim> {
    if (this.closed) throw errors.unavailable('The store is closed.')
    this.leaderId = nodeId
    return { leader: nodeId, term: 1, isMe: true }
  }

  async releaseLeadership(nodeId: string): Promise<void> {
    if (this.leaderId === nodeId) this.leaderId = undefined
  }

  recoverDeliveries(now: number): Promise<RecoveryResult> {
    return this.write(() => this.deliveries.recover(now))
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.flush()
    this.db.close()
  }
}
