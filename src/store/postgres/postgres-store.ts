import { setImmediate as nextTurn } from 'node:timers/promises'
import type pg from 'pg'
import { errors } from '../../core/errors.ts'
import type { NewEvent, StoredEvent } from '../../core/event.ts'
import { type TopicRow as BaseTopicRow, topicInfo } from '../rows.ts'
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
import { DatabaseClock } from './clock.ts'
import { asStoreError, createPool, migrate, type PostgresOptions, unavailableReason } from './database.ts'
import { PostgresDeliveries } from './deliveries.ts'
import { PostgresEventTypes } from './event-types.ts'
import { PostgresKeys } from './keys.ts'
import { claimLeadership, releaseLeadership } from './leader.ts'
import { PostgresNodes } from './nodes.ts'
import { PostgresPresence } from './presence.ts'
import { PostgresWriter } from './writer.ts'

export interface PostgresStoreOptions extends PostgresOptions {
  /** The retry schedule's first delay: a new delivery is due this long after its event is stored. */
  firstDeliveryDelayMs?: number
}

/** How often, at most, the database is probed when readiness is asked. */
const PROBE_INTERVAL_MS = 1000
/** How long a readiness probe may take before the database counts as unreachable. */
const PROBE_TIMEOUT_MS = 2000
/** Events deleted per statement while pruning, so that no statement holds its locks for long. */
const PRUNE_CHUNK = 5000

/** A topics row, with the seq of its oldest retained event. */
type TopicRow = BaseTopicRow & { first_seq: number | null }

const TOPIC_SELECT = `SELECT t.*, (SELECT min(seq) FROM events e WHERE e.topic_id = t.id) AS first_seq FROM topics t`

function describeTopic(row: TopicRow): TopicInfo {
  return topicInfo(row, row.first_seq)
}

/**
 * The Store in PostgreSQL (HERALD_DATABASE_URL), for one node or many sharing the database: the same
 * contract as the SQLite store (test/store/contract.ts). Appends are group-committed (writer.ts);
 * the delivery queue is leased with SKIP LOCKED and fenced by lease tokens (deliveries.ts); nodes
 * announce themselves and rescue the leases of dead ones (nodes.ts); one of them at a time leads
 * (leader.ts) and runs the maintenance (src/cluster/maintenance.ts).
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres'
  private readonly pool: pg.Pool
  private readonly writer: PostgresWriter
  private readonly deliveries: PostgresDeliveries
  private readonly nodeTable: PostgresNodes
  private readonly keyTable: PostgresKeys
  private readonly eventTypeTable: PostgresEventTypes
  private readonly presenceTable: PostgresPresence
  private readonly clock = new DatabaseClock()
  private closed = false
  /** Why the database could not be used at the last probe or write, until one succeeds again. */
  private failure: string | undefined
  private lastProbe = 0
  private probing: Promise<void> | undefined

  private constructor(pool: pg.Pool, options: PostgresStoreOptions) {
    this.pool = pool
    const firstDelayMs = options.firstDeliveryDelayMs ?? 0
    this.writer = new PostgresWriter(pool, firstDelayMs, (error) => this.failed(error))
    this.deliveries = new PostgresDeliveries(pool)
    this.nodeTable = new PostgresNodes(pool, options, this.clock)
    this.keyTable = new PostgresKeys(pool)
    this.eventTypeTable = new PostgresEventTypes(pool)
    this.presenceTable = new PostgresPresence(pool)
  }

  /** Connects, migrates (once across nodes starting together) and reads the database's clock. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const pool = createPool(options)
    try {
      await migrate(pool, options.schema)
      const store = new PostgresStore(pool, options)
      await store.clock.sync(pool)
      return store
    } catch (error) {
      await pool.end().catch(() => {})
      const reason = unavailableReason(error)
      throw new Error(
        reason === undefined
          ? `Cannot open the PostgreSQL store: ${(error as Error).message}`
          : `Cannot reach PostgreSQL at HERALD_DATABASE_URL: ${reason}`,
        { cause: error },
      )
    }
  }

  now(): number {
    return this.clock.now()
  }

  /** Records why the database cannot be used (readiness reports it) and maps the error to a 503. */
  private failed(error: unknown): unknown {
    const reason = unavailableReason(error)
    if (reason !== undefined) this.failure = reason
    return asStoreError(error)
  }

  /** Runs a query outside the writer, mapping an unreachable database to a 503. */
  private async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) throw errors.unavailable('The store is closed.')
    try {
      return await work()
    } catch (error) {
      throw this.failed(error)
    }
  }

  async cannotWrite(): Promise<string | undefined> {
    if (this.closed) return 'the store is closed'
    if (Date.now() - this.lastProbe >= PROBE_INTERVAL_MS) {
      this.lastProbe = Date.now()
      this.probing ??= this.probe().finally(() => {
        this.probing = undefined
      })
    }
    await this.probing
    return this.failure
  }

  private async probe(): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('connection timeout: no answer within 2s')), PROBE_TIMEOUT_MS)
    })
    try {
      await Promise.race([this.clock.sync(this.pool), timeout])
      this.failure = undefined
    } catch (error) {
      this.failure = unavailableReason(error) ?? (error as Error).message
    } finally {
      clearTimeout(timer)
    }
  }

  append(topic: string, events: NewEvent[], options: AppendOptions): Promise<AppendResult> {
    if (this.closed) return Promise.reject(errors.unavailable('The store is closed.'))
    return this.writer.append(topic, events, options).then((result) => {
      this.failure = undefined
      return result
    })
  }

  read(topic: string, afterSeq: number, limit: number, maxBytes = MAX_READ_BYTES): Promise<StoredEvent[]> {
    return this.run(async () => {
      // The byte budget is applied in the database: the rows past it are never sent.
      const result = await this.pool.query<{ seq: number; body: string }>({
        name: 'herald-read',
        text: `SELECT seq, body FROM (
            SELECT seq, body, sum(length(body)) OVER (ORDER BY seq) - length(body) AS before
            FROM events WHERE topic_id = (SELECT id FROM topics WHERE name = $1) AND seq > $2
            ORDER BY seq LIMIT $3) page
          WHERE before < $4 ORDER BY seq`,
        values: [topic, afterSeq, limit, maxBytes],
      })
      return result.rows.map((row) => ({ topic, seq: row.seq, json: row.body }))
    })
  }

  topic(name: string): Promise<TopicInfo | undefined> {
    return this.run(async () => {
      const result = await this.pool.query<TopicRow>({
        name: 'herald-topic',
        text: `${TOPIC_SELECT} WHERE t.name = $1`,
        values: [name],
      })
      const row = result.rows[0]
      return row && describeTopic(row)
    })
  }

  heads(names: string[]): Promise<Map<string, number>> {
    return this.run(async () => {
      const result = await this.pool.query<{ name: string; head_seq: number }>({
        name: 'herald-heads',
        text: 'SELECT name, head_seq FROM topics WHERE name = ANY($1::text[])',
        values: [names],
      })
      return new Map(result.rows.map((row) => [row.name, row.head_seq]))
    })
  }

  topics({ after = '', limit }: { after?: string; limit: number }): Promise<TopicInfo[]> {
    return this.run(async () => {
      const result = await this.pool.query<TopicRow>(
        `${TOPIC_SELECT} WHERE t.name > $1 ORDER BY t.name LIMIT $2`,
        [after, limit],
      )
      return result.rows.map(describeTopic)
    })
  }

  configureTopic(name: string, retention: Retention, types: TopicTypes): Promise<TopicInfo> {
    return this.run(async () => {
      const result = await this.pool.query<TopicRow>(
        `WITH t AS (
           INSERT INTO topics (name, created_at, retention_max_age_ms, retention_max_events, types)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (name) DO UPDATE SET retention_max_age_ms = $3, retention_max_events = $4, types = $5
           RETURNING *)
         SELECT t.*, (SELECT min(seq) FROM events e WHERE e.topic_id = t.id) AS first_seq FROM t`,
        [name, Date.now(), retention.maxAgeMs, retention.maxEvents, types],
      )
      return describeTopic(result.rows[0]!)
    })
  }

  prune(now: number, defaults: Retention, idempotencyTtlMs: number): Promise<PruneResult> {
    return this.run(async () => {
      let removed = 0
      const topics = await this.pool.query<TopicRow>('SELECT * FROM topics')
      for (const topic of topics.rows) {
        const maxEvents = topic.retention_max_events ?? defaults.maxEvents
        const maxAgeMs = topic.retention_max_age_ms ?? defaults.maxAgeMs
        if (maxEvents === null && maxAgeMs === null) continue
        // Oldest first, a chunk at a time, stopping at the first event retention keeps: what remains
        // is contiguous.
        for (;;) {
          if (this.closed) return { events: removed, idempotencyKeys: 0, deliveries: 0 }
          const first = (
            await this.pool.query<{ seq: number | null }>(
              'SELECT min(seq) AS seq FROM events WHERE topic_id = $1',
              [topic.id],
            )
          ).rows[0]!.seq
          if (first === null) break
          let cutoff = first - 1
          const chunkEnd = first + PRUNE_CHUNK - 1
          if (maxEvents !== null) cutoff = Math.max(cutoff, Math.min(chunkEnd, topic.head_seq - maxEvents))
          if (maxAgeMs !== null) {
            // The last event of the run from `first` stored before the cutoff time.
            const old = await this.pool.query<{ seq: number | null }>(
              `SELECT max(seq) AS seq FROM events
               WHERE topic_id = $1 AND seq BETWEEN $2 AND $3 AND stored_at < $4
                 AND seq < COALESCE((SELECT min(seq) FROM events
                                     WHERE topic_id = $1 AND seq BETWEEN $2 AND $3 AND stored_at >= $4), $3 + 1)`,
              [topic.id, first, chunkEnd, now - maxAgeMs],
            )
            const seq = old.rows[0]!.seq
            if (seq !== null) cutoff = Math.max(cutoff, seq)
          }
          if (cutoff < first) break
          const deleted = await this.pool.query('DELETE FROM events WHERE topic_id = $1 AND seq <= $2', [
            topic.id,
            cutoff,
          ])
          removed += deleted.rowCount ?? 0
          await nextTurn()
        }
      }
      const keys = await this.pool.query('DELETE FROM idempotency_keys WHERE created_at < $1', [
        now - idempotencyTtlMs,
      ])
      // The delivery log is kept as long as events are by default (a week unless configured).
      const deliveries = await this.deliveries.prune(
        defaults.maxAgeMs === null ? 0 : now - defaults.maxAgeMs,
        now,
      )
      return { events: removed, idempotencyKeys: keys.rowCount ?? 0, deliveries }
    })
  }

  // ---- hooks, deliveries and nodes (deliveries.ts, nodes.ts) -----------------------------------

  // ---- presence (presence.ts) ------------------------------------------------------------------

  joinPresence(member: PresenceRecord, maxMembers: number, now: number): Promise<boolean> {
    return this.run(() => this.presenceTable.join(member, maxMembers, now))
  }

  leavePresence(topic: string, client: string): Promise<boolean> {
    return this.run(() => this.presenceTable.leave(topic, client))
  }

  refreshPresence(nodeId: string, expiresAt: number): Promise<number> {
    return this.run(() => this.presenceTable.refresh(nodeId, expiresAt))
  }

  presence(topics: string[], now: number): Promise<PresenceRecord[]> {
    return this.run(() => this.presenceTable.list(topics, now))
  }

  prunePresence(now: number): Promise<number> {
    return this.run(() => this.presenceTable.prune(now))
  }

  clearPresence(nodeId: string): Promise<number> {
    return this.run(() => this.presenceTable.clear(nodeId))
  }

  // ---- the event-type catalog (event-types.ts) -------------------------------------------------

  putEventType(
    input: { type: string; schema: string; description: string | null; deprecated: boolean },
    now: number,
  ): Promise<{ current: StoredEventType; previous: StoredEventType | undefined }> {
    return this.run(() => this.eventTypeTable.put(input, now))
  }

  eventTypes(options: { after?: string; limit: number }): Promise<StoredEventType[]> {
    return this.run(() => this.eventTypeTable.page(options))
  }

  eventType(type: string, version?: number): Promise<StoredEventType | undefined> {
    return this.run(() => this.eventTypeTable.get(type, version))
  }

  eventTypeVersions(type: string): Promise<StoredEventType[]> {
    return this.run(() => this.eventTypeTable.versions(type))
  }

  eventTypesChangedSince(since: number): Promise<StoredEventType[]> {
    return this.run(() => this.eventTypeTable.changedSince(since))
  }

  topicsRequiringTypes(): Promise<string[]> {
    return this.run(() => this.eventTypeTable.topicsRequiringTypes())
  }

  createKey(key: StoredKey): Promise<void> {
    return this.run(() => this.keyTable.create(key))
  }

  key(id: string): Promise<StoredKey | undefined> {
    return this.run(() => this.keyTable.key(id))
  }

  keysById(ids: string[]): Promise<StoredKey[]> {
    return this.run(() => this.keyTable.keysById(ids))
  }

  keys(options: { after?: string; limit: number }): Promise<KeyRecord[]> {
    return this.run(() => this.keyTable.keys(options))
  }

  deleteKey(id: string): Promise<boolean> {
    return this.run(() => this.keyTable.delete(id))
  }

  createHook(hook: HookRecord): Promise<HookRecord> {
    return this.run(() => this.deliveries.createHook(hook))
  }

  hook(id: string): Promise<HookRecord | undefined> {
    return this.run(() => this.deliveries.hook(id))
  }

  hooks(options: {
    after?: string
    limit: number
    kind?: HookKind
    topicUrl?: string
  }): Promise<HookRecord[]> {
    return this.run(() => this.deliveries.hooks(options))
  }

  websubSubscription(topicUrl: string, callback: string): Promise<HookRecord | undefined> {
    return this.run(() => this.deliveries.websubSubscription(topicUrl, callback))
  }

  recordVerification(request: Omit<PendingVerification, 'id'>, lease: VerificationLease): Promise<number> {
    return this.run(() => this.deliveries.recordVerification(request, lease))
  }

  startVerification(id: number, lease: VerificationLease): Promise<PendingVerification | undefined> {
    return this.run(() => this.deliveries.startVerification(id, lease))
  }

  claimVerifications(request: {
    lease: VerificationLease
    now: number
    limit: number
    formerSelf?: string
  }): Promise<PendingVerification[]> {
    return this.run(() => this.deliveries.claimVerifications(request))
  }

  finishVerification(outcome: VerificationOutcome): Promise<boolean> {
    return this.run(() => this.deliveries.finishVerification(outcome))
  }

  verifications(options: { topicUrl?: string; limit: number }): Promise<VerificationRecord[]> {
    return this.run(() => this.deliveries.verifications(options))
  }

  updateHook(id: string, changes: HookChanges, now: number): Promise<HookRecord | undefined> {
    return this.run(() => this.deliveries.updateHook(id, changes, now))
  }

  deleteHook(id: string): Promise<boolean> {
    return this.run(() => this.deliveries.deleteHook(id))
  }

  claimDeliveries(request: ClaimRequest): Promise<ClaimedRun[]> {
    return this.run(() => this.deliveries.claim(request))
  }

  extendRun(request: ExtendRequest): Promise<ClaimedRun | undefined> {
    return this.run(() => this.deliveries.extend(request))
  }

  settleDeliveries(settlement: Settlement): Promise<SettleResult> {
    return this.run(() => this.deliveries.settle(settlement))
  }

  nextDueAt(): Promise<number | null> {
    return this.run(() => this.deliveries.nextDueAt())
  }

  delivery(hookId: string, id: number): Promise<DeliveryRecord | undefined> {
    return this.run(() => this.deliveries.delivery(hookId, id))
  }

  attempts(
    hookId: string,
    options: { deliveryId?: number; eventId?: string; before?: number; limit: number },
  ): Promise<AttemptRecord[]> {
    return this.run(() => this.deliveries.attempts(hookId, options))
  }

  retryDelivery(hookId: string, id: number, now: number): Promise<DeliveryRecord | undefined> {
    return this.run(() => this.deliveries.retry(hookId, id, now))
  }

  replay(hookId: string, request: ReplayRequest): Promise<{ queued: number }> {
    return this.run(() => this.deliveries.replay(hookId, request))
  }

  listDeliveries(filter: DeliveryFilter): Promise<DeliveryRecord[]> {
    return this.run(() => this.deliveries.list(filter))
  }

  deliveryCounts(): Promise<Record<DeliveryState, number>> {
    return this.run(() => this.deliveries.counts())
  }

  joinCluster(nodeId: string): Promise<void> {
    return this.run(() => this.nodeTable.join(nodeId))
  }

  heartbeat(nodeId: string, staleMs: number): Promise<number> {
    return this.run(async () => {
      // Each heartbeat also re-reads the database's clock: drift between reads stays small.
      await this.clock.sync(this.pool)
      return this.nodeTable.heartbeat(nodeId, staleMs)
    })
  }

  leaveCluster(nodeId: string): Promise<void> {
    return this.run(() => this.nodeTable.leave(nodeId))
  }

  nodes(): Promise<NodeRecord[]> {
    return this.run(() => this.nodeTable.list())
  }

  // ---- the leader's maintenance (leader.ts; recovery in deliveries.ts) -------------------------------

  claimLeadership(nodeId: string, leaseMs: number): Promise<LeadershipClaim> {
    return this.run(() => claimLeadership(this.pool, nodeId, leaseMs))
  }

  releaseLeadership(nodeId: string): Promise<void> {
    return this.run(() => releaseLeadership(this.pool, nodeId))
  }

  recoverDeliveries(now: number): Promise<RecoveryResult> {
    return this.run(() => this.deliveries.recover(now))
  }

  async close(): Promise<void> {
    if (this.closed) return
    // Appends already accepted finish their commit before the connections close.
    await this.writer.drained()
    this.closed = true
    await this.nodeTable.close()
    await this.pool.end()
  }
}
