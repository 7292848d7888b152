import { randomUUID } from 'node:crypto'
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { eventRoot, matchesEventType } from '../../core/event-pattern.ts'
import { storedFilter } from '../../core/filter.ts'
import { EXTERNAL_CONTENT_PREFIX } from '../../core/topic.ts'
import { type FanOutEvent, fanOut } from '../../delivery/fan-out.ts'
import { disableReason, outcomeHealth } from '../../delivery/hook-health.ts'
import { afterTaking, type TokenBucket, tokensAt } from '../../delivery/rate-limit.ts'

import { DELIVERY_SELECT, HOOK_COLUMNS, PENDING_VERIFICATION, VERIFICATION_COLUMNS } from '../rows.ts'
import type {
  AttemptRecord,
  ClaimedDelivery,
  ClaimedRun,
  ClaimRequest,
  DeliveryFilter,
  DeliveryRecord,
  DeliveryState,
  ExtendRequest,
  HookChanges,
  HookKind,
  HookRecord,
  PendingVerification,
  ReplayRequest,
  Settlement,
  SettleResult,
  VerificationLease,
  VerificationOutcome,
  VerificationRecord,
} from '../store.ts'

/** Deliveries read per step while pruning. */
const PRUNE_CHUNK = 5_000

/**
 * Hooks, deliveries and attempts in SQLite. Every method is synchronous and runs inside a write
 * transaction the caller holds (SqliteWriter's group commit), except the plain reads.
 *
 * Ordered queues: per hook and topic, at most the oldest pending delivery is due (or leased, with the
 * run that follows it); the others wait with `due_at` NULL until `advance` makes the next one due.
 */

/** A hooks row: the record as stored (`ordered` as 0/1, plus the indexed first segment of `event`). */
type HookRow = Omit<HookRecord, 'ordered'> & { ordered: number; event_root: string | null }

function toHook(row: HookRow): HookRecord {
  const { event_root: _root, ordered, ...rest } = row
  return { ...rest, ordered: ordered === 1 }
}

export class DeliveryTables {
  private readonly s: ReturnType<typeof prepare>
  private readonly firstDelayMs: number

  constructor(db: DatabaseSync, firstDelayMs: number) {
    this.s = prepare(db)
    this.firstDelayMs = firstDelayMs
  }

  // ---- hooks ----------------------------------------------------------------------------------

  createHook(hook: HookRecord): HookRecord {
    this.anyHooks = true
    this.s.insertHook.run(
      hook.id,
      hook.kind,
      hook.target_url,
      hook.topic,
      hook.topic_url,
      hook.event,
      hook.event === null ? null : eventRoot(hook.event),
      hook.secret,
      hook.lease_seconds,
      hook.expires_at,
      hook.previous_secret,
      hook.previous_secret_until,
      hook.ordered ? 1 : 0,
      hook.max_in_flight,
      hook.rate_limit,
      hook.state,
      hook.disabled_reason,
      hook.failing_since,
      hook.description,
      hook.filter,
      hook.created_at,
      hook.updated_at,
    )
    return this.hook(hook.id)!
  }

  hook(id: string): HookRecord | undefined {
    const row = this.s.hookById.get(id) as HookRow | undefined
    return row && toHook(row)
  }

  hooks(options: { after?: string; limit: number; kind?: HookKind; topicUrl?: string }): HookRecord[] {
    const rows = this.s.listHooks.all({
      after: options.after ?? '',
      limit: options.limit,
      kind: options.kind ?? null,
      topic_url: options.topicUrl ?? null,
    }) as unknown as HookRow[]
    return rows.map(toHook)
  }

  upsertWebsubSubscription(subscription: HookRecord): HookRecord {
    const current = this.websubSubscription(subscription.topic_url!, subscription.target_url)
    if (!current) return this.createHook(subscription)
    const { id: _id, created_at: _created, kind: _kind, updated_at, ...changes } = subscription
    return this.updateHook(current.id, { ...changes, failing_since: null }, updated_at)!
  }

  websubSubscription(topicUrl: string, callback: string): HookRecord | undefined {
    const row = this.s.websubByTopicCallback.get(topicUrl, callback) as HookRow | undefined
    return row && toHook(row)
  }

  // ---- WebSub verifications of intent: durable, leased, fenced by their token ----------------------

  recordVerification(request: Omit<PendingVerification, 'id'>, lease: VerificationLease): number {
    const result = this.s.insertVerification.run(
      request.mode,
      request.topic_url,
      request.callback,
      request.requested_at,
      request.lease_seconds,
      request.secret,
      lease.owner,
      lease.token,
      lease.until,
    )
    return Number(result.lastInsertRowid)
  }

  startVerification(id: number, lease: VerificationLease): PendingVerification | undefined {
    const held = this.s.verificationHeld.get(id, lease.token) as PendingVerification | undefined
    if (!held) return undefined
    if (this.s.earlierPending.get(held.topic_url, held.callback, id) !== undefined) {
      this.s.letGoVerification.run(id, lease.token)
      return undefined
    }
    this.s.renewVerification.run(lease.until, id)
    return held
  }

  claimVerifications(request: {
    lease: VerificationLease
    now: number
    limit: number
    formerSelf?: string
  }): PendingVerification[] {
    const { lease } = request
    const rows = this.s.claimVerifications.all({
      owner: lease.owner,
      token: lease.token,
      until: lease.until,
      now: request.now,
      former: request.formerSelf ?? null,
      limit: request.limit,
    }) as unknown as PendingVerification[]
    return rows.sort((a, b) => a.id - b.id)
  }

  finishVerification(outcome: VerificationOutcome): boolean {
    const held = this.s.verificationHeld.get(outcome.id, outcome.token) as PendingVerification | undefined
    if (!held) return false
    if (outcome.subscription) this.upsertWebsubSubscription(outcome.subscription)
    if (outcome.unsubscribe) {
      const current = this.websubSubscription(held.topic_url, held.callback)
      if (current) this.deleteHook(current.id)
    }
    this.s.completeVerification.run(outcome.state, outcome.error, outcome.now, outcome.id)
    return true
  }

  /** Lets go of every verification's lease (a node that joins: any lease in the file is a dead process's). */
  releaseVerifications(): void {
    this.s.releaseVerifications.run()
  }

  verifications(options: { topicUrl?: string; limit: number }): VerificationRecord[] {
    return this.s.verifications.all({
      topic_url: options.topicUrl ?? null,
      limit: options.limit,
    }) as unknown as VerificationRecord[]
  }

  updateHook(id: string, changes: HookChanges, now: number): HookRecord | undefined {
    this.anyHooks = true // it may have been re-enabled
    const before = this.hook(id)
    if (!before) return undefined
    if (changes.ordered !== undefined && changes.ordered !== before.ordered) {
      if (changes.ordered) {
        // Now ordered: each queue waits behind its oldest pending delivery (in flight ones finish).
        this.s.unqueueAll.run(id)
        for (const { topic_id } of this.s.queuesOfHook.all(id) as Array<{ topic_id: number }>) {
          this.s.advanceQueue.run(now, now, id, topic_id)
        }
      } else {
        this.s.dueAll.run(now, id) // no longer ordered: every pending delivery is due
      }
    }
    const next = { ...before, ...changes, updated_at: now }
    this.s.updateHook.run(
      ...HOOK_COLUMNS.map((column) => {
        const value = next[column]
        return typeof value === 'boolean' ? (value ? 1 : 0) : value
      }),
      next.event === null ? null : eventRoot(next.event),
      now,
      id,
    )
    return this.hook(id)
  }

  deleteHook(id: string): boolean {
    return Number(this.s.deleteHook.run(id).changes) > 0
  }

  // ---- deliveries created with events -----------------------------------------------------------

  /** Whether any hook could take a delivery: looked at once per transaction, not once per append. */
  private anyHooks = true

  /** Called at the start of each write transaction (the write lock held: no one can add a hook). */
  beginTransaction(): void {
    this.anyHooks = this.s.anyHooks.get() !== undefined
  }

  /** Called inside the append transaction, for the events it stored in one topic. */
  createForEvents(topicId: number, topic: string, events: FanOutEvent[], now: number): number {
    if (events.length === 0 || !this.anyHooks) return 0
    const hooks = new Map<
      string,
      { id: string; event: string | null; ordered: number; filter: string | null }
    >()
    // An external WebSub topic's content goes to its subscriptions only, not to catch-all webhooks.
    const query = topic.startsWith(EXTERNAL_CONTENT_PREFIX) ? this.s.hooksOfTopic : this.s.hooksFor
    for (const root of new Set(events.map((event) => eventRoot(event.type)))) {
      for (const hook of query.all(topic, root, now) as Array<{
        id: string
        event: string | null
        ordered: number
        filter: string | null
      }>) {
        hooks.set(hook.id, hook)
      }
    }
    const candidates = [...hooks.values()].map((hook) => ({
      id: hook.id,
      event: hook.event,
      filter: hook.filter,
      ordered: hook.ordered === 1,
      queueBusy: hook.ordered === 1 && this.s.queueHasPending.get(hook.id, topicId) !== undefined,
    }))
    const created = fanOut(candidates, events, now + this.firstDelayMs)
    for (const delivery of created) {
      this.s.insertDelivery.run(
        delivery.hookId,
        topicId,
        delivery.seq,
        delivery.eventId,
        delivery.dueAt,
        now,
        now,
      )
    }
    return created.length
  }

  // ---- the dispatcher's side ------------------------------------------------------------------

  claim(request: ClaimRequest): ClaimedRun[] {
    const { now, owner } = request
    // One token for the whole claim: its runs are all this dispatcher's, each settled under it.
    const lease = randomUUID()
    // Expired leases and stalled queues are not looked for here: the leader's maintenance does that
    // every few seconds (`recover`), as the search reads every pending row (leases are not indexed).
    const leaseUntil = now + request.leaseMs
    const runs: ClaimedRun[] = []
    for (const row of this.s.hooksWithDue.all(now) as unknown as HookRow[]) {
      if (runs.length >= request.limit) break
      const hook = toHook(row)
      // Its rate limit's tokens (src/delivery/rate-limit.ts), from its bucket in the file.
      const bucket =
        hook.rate_limit === null ? undefined : (this.s.bucket.get(hook.id) as TokenBucket | undefined)
      const available =
        hook.rate_limit === null ? Number.POSITIVE_INFINITY : tokensAt(hook.rate_limit, bucket, now)
      let budget = available
      // Its cap less the runs leased now (one process writes the file: they are all counted here).
      const inFlight = (this.s.runsInFlight.get(hook.ordered ? 1 : 0, hook.id, now) as { n: number }).n
      const room = Math.min(hook.max_in_flight - inFlight, request.limit - runs.length, Math.floor(budget))
      if (room <= 0) continue
      const heads = this.s.dueOfHook.all(hook.id, now, room) as Array<{
        id: number
        topic_id: number
        topic: string
        seq: number
      }>
      for (const head of heads) {
        if (budget < 1) break
        const length = Math.min(hook.ordered ? request.runLength : 1, Math.floor(budget))
        const deliveries = this.leaseRun(hook.id, head.topic_id, head.seq, length, {
          owner,
          lease,
          leaseUntil,
        })
        if (deliveries.length === 0) continue // taken by an earlier head's run in this claim
        runs.push({ hook, deliveries, lease })
        budget -= deliveries.length
      }
      if (hook.rate_limit !== null && budget < available) {
        const after = afterTaking(available, available - budget, bucket, now)
        this.s.saveBucket.run(hook.id, after.tokens, after.updated_at)
      }
    }
    return runs
  }

  extend(request: ExtendRequest): ClaimedRun | undefined {
    const hook = this.hook(request.hookId)
    // A rate-limited hook's runs are cut to its tokens at each claim: they are not extended.
    if (hook?.state !== 'active' || !hook.ordered || hook.rate_limit !== null) return undefined
    const topicId = (this.s.topicId.get(request.topic) as { id: number } | undefined)?.id
    if (topicId === undefined) return undefined
    const { lease, owner } = request
    // A run that holds nothing of its queue any more (its lease ran out or was released, its rows
    // perhaps claimed by another) is over: it gets nothing, not the rest of someone else's queue.
    if (this.s.holdsQueue.get(hook.id, topicId, lease) === undefined) return { hook, deliveries: [], lease }
    const leaseUntil = request.now + request.leaseMs
    const deliveries = this.leaseRun(hook.id, topicId, request.afterSeq + 1, request.runLength, {
      owner,
      lease,
      leaseUntil,
    })
    return { hook, deliveries, lease }
  }

  /**
   * The pending deliveries of a queue from `fromSeq` on that no one holds, up to `length`, leased to
   * `owner` under the token `lease`: one read (with the events' bodies) and one write, not one each
   * per row.
   */
  private leaseRun(
    hookId: string,
    topicId: number,
    fromSeq: number,
    length: number,
    holder: { owner: string; lease: string; leaseUntil: number },
  ): ClaimedDelivery[] {
    const deliveries = this.s.runFrom.all(hookId, topicId, fromSeq, length) as unknown as ClaimedDelivery[]
    if (deliveries.length > 0) {
      const ids = JSON.stringify(deliveries.map((delivery) => delivery.id))
      this.s.leaseIds.run(holder.owner, holder.leaseUntil, holder.lease, ids)
    }
    return deliveries
  }

  /**
   * Leases that ran out belong to a dispatcher that died: its rows are free again, and each ordered
   * queue it held gets its oldest pending delivery due (the run's later ones had due_at NULL). Run by
   * the leader's maintenance every few seconds (src/cluster/maintenance.ts).
   */
  recover(now: number): { released: number; stalled: number } {
    const released = this.releaseLeases({ expiredAt: now }, now)
    // A safety net: a queue with pending deliveries of which none is due or leased would wait forever
    // (a hook switched between ordered and unordered with a run out, say). Its oldest is made due.
    const stalled = this.s.stalledQueues.all() as Array<{ hook_id: string; topic_id: number }>
    for (const { hook_id, topic_id } of stalled) this.s.advanceQueue.run(now, now, hook_id, topic_id)
    return { released, stalled: stalled.length }
  }

  /**
   * Lets go of leases, held by anyone (`all`: every lease in the file belongs to a dead process), by
   * the nodes named, or run out at `expiredAt`: their rows are free again, and each ordered queue they
   * held gets its oldest pending delivery due (a run's later deliveries had due_at NULL; its head
   * keeps its due_at and is claimable at once). Returns how many deliveries were released.
   */
  releaseLeases(scope: { all: true } | { owners: string[] } | { expiredAt: number }, now: number): number {
    const filter =
      'all' in scope
        ? { all: 1, owners: '[]', expired_at: null }
        : 'owners' in scope
          ? { all: 0, owners: JSON.stringify(scope.owners), expired_at: null }
          : { all: 0, owners: '[]', expired_at: scope.expiredAt }
    if ('owners' in scope && scope.owners.length === 0) return 0
    const queues = this.s.leasedQueues.all(filter) as Array<{ hook_id: string; topic_id: number }>
    if (queues.length === 0) return 0
    const released = Number(this.s.releaseLeases.run(filter).changes)
    for (const { hook_id, topic_id } of queues) this.s.advanceQueue.run(now, now, hook_id, topic_id)
    return released
  }

  settle(settlement: Settlement): SettleResult {
    const { now, lease } = settlement
    const s = this.s
    const failing = new Map<string, HookRecord>()
    const disabled = new Map<string, HookRecord>()
    const removed = new Map<string, HookRecord>()
    // Only the rows this run still holds: an outcome for a row no longer leased under its token (the
    // lease ran out or was rescued, the row perhaps claimed by another dispatcher since, or deleted
    // with its hook) is ignored entirely: no attempt logged, no state change, no failing streak.
    const held = new Map(
      (
        s.heldUnder.all(JSON.stringify(settlement.outcomes.map((outcome) => outcome.id)), lease) as Array<{
          id: number
          attempts: number
        }>
      ).map((row) => [row.id, row.attempts]),
    )
    const outcomes = settlement.outcomes.filter((outcome) => held.has(outcome.id))
    const delivered = outcomes.filter((outcome) => outcome.result === 'delivered')
    if (delivered.length > 0) {
      const rows = JSON.stringify(
        delivered.map(({ id, attempt }) => ({
          id,
          at: attempt.at,
          duration_ms: attempt.duration_ms,
          status: attempt.status,
          response: attempt.response,
        })),
      )
      s.logDelivered.run(rows)
      s.markDelivered.run(now, rows)
    }
    const health = outcomeHealth(outcomes)
    for (const [index, outcome] of outcomes.entries()) {
      if (outcome.result === 'delivered' || removed.has(outcome.hookId)) continue
      const attempt = outcome.attempt
      const number = held.get(outcome.id)! + 1
      s.insertAttempt.run(
        outcome.id,
        outcome.hookId,
        number,
        attempt.at,
        attempt.duration_ms,
        attempt.status,
        attempt.error,
        attempt.response,
      )
      switch (outcome.result) {
        case 'retry':
        case 'failed': {
          const state = outcome.result === 'retry' ? 'pending' : 'failed'
          const dueAt = outcome.result === 'retry' ? outcome.dueAt : null
          s.settleDelivery.run(state, number, dueAt, attempt.status, attempt.error, now, outcome.id)
          // A failure followed by a success of its hook in this settlement does not count.
          if (!health.countsAsFailure[index]) break
          // Only a hook that was not failing yet changes: that is the start of a failing streak.
          const started = Number(s.hookFailed.run(now, outcome.hookId).changes) > 0
          const hook = this.hook(outcome.hookId)
          if (hook && started) failing.set(hook.id, hook)
          const reason = hook && disableReason(hook, now, settlement.disableAfterMs)
          if (hook && reason !== undefined) {
            s.disableHook.run(reason, now, hook.id)
            disabled.set(hook.id, this.hook(hook.id)!)
          }
          break
        }
        case 'gone': {
          const hook = this.hook(outcome.hookId)
          if (hook) removed.set(hook.id, hook)
          s.deleteHook.run(outcome.hookId)
          break
        }
      }
    }
    for (const hookId of health.recovered) {
      if (!removed.has(hookId)) s.hookSucceeded.run(hookId)
    }
    if (settlement.carry !== undefined) s.markBusy.run(now, settlement.carry, lease)
    for (const id of settlement.released) s.release.run(id, lease)
    // Advancing a queue is safe whoever asks: it does nothing while the queue is busy.
    for (const { hookId, topic } of settlement.advanced) {
      const topicId = (s.topicId.get(topic) as { id: number } | undefined)?.id
      if (topicId !== undefined) s.advanceQueue.run(now, now, hookId, topicId)
    }
    return {
      failing: [...failing.values()],
      disabled: [...disabled.values()],
      removed: [...removed.values()],
    }
  }

  nextDueAt(): number | null {
    return (this.s.nextDue.get() as { due: number | null }).due
  }

  // ---- operations -----------------------------------------------------------------------------

  list(filter: DeliveryFilter): DeliveryRecord[] {
    return this.s.listDeliveries.all({
      state: filter.state ?? null,
      hook: filter.hookId ?? null,
      topic: filter.topic ?? null,
      since: filter.since ?? null,
      until: filter.until ?? null,
      before: filter.beforeId ?? Number.MAX_SAFE_INTEGER,
      limit: filter.limit,
    }) as unknown as DeliveryRecord[]
  }

  delivery(hookId: string, id: number): DeliveryRecord | undefined {
    return this.s.deliveryById.get(hookId, id) as DeliveryRecord | undefined
  }

  attempts(
    hookId: string,
    options: { deliveryId?: number; eventId?: string; before?: number; limit: number },
  ): AttemptRecord[] {
    return this.s.attempts.all({
      hook: hookId,
      delivery: options.deliveryId ?? null,
      event: options.eventId ?? null,
      before: options.before ?? Number.MAX_SAFE_INTEGER,
      limit: options.limit,
    }) as unknown as AttemptRecord[]
  }

  /**
   * A settled delivery is queued again; a pending one is left as it is (it is queued, perhaps in
   * flight: clearing its lease could send it twice at once). In an ordered queue it is due only once
   * nothing else of the queue is due or in flight: a retry never runs beside the queue.
   */
  retry(hook: HookRecord, id: number, now: number): DeliveryRecord | undefined {
    const delivery = this.delivery(hook.id, id)
    if (!delivery || delivery.state === 'pending') return delivery
    this.s.retryDelivery.run(hook.ordered ? null : now, now, hook.id, id)
    if (hook.ordered) {
      const topicId = (this.s.topicId.get(delivery.topic) as { id: number }).id
      this.s.advanceQueue.run(now, now, hook.id, topicId)
    }
    return this.delivery(hook.id, id)
  }

  replay(hook: HookRecord, request: ReplayRequest): { queued: number } {
    const topicId = (this.s.topicId.get(request.topic) as { id: number } | undefined)?.id
    if (topicId === undefined) return { queued: 0 }
    const rows = (
      request.since !== undefined
        ? this.s.eventsSince.all(topicId, request.since, request.limit)
        : this.s.eventsAfter.all(topicId, request.afterSeq ?? 0, request.limit)
    ) as Array<{ seq: number; id: string; body: string }>
    let queued = 0
    for (const row of rows) {
      if (hook.event !== null) {
        const type = (JSON.parse(row.body) as { type?: unknown }).type
        if (typeof type !== 'string' || !matchesEventType(hook.event, type)) continue
      }
      if (hook.filter !== null && !storedFilter(hook.filter).matches({ json: row.body })) continue
      // Ordered: queued behind what is pending; `advance` below makes the oldest due if none is.
      const dueAt = hook.ordered ? null : request.now
      // Counted only when queued by this call: a delivery already pending is left as it is.
      queued += Number(
        this.s.upsertDelivery.run(hook.id, topicId, row.seq, row.id, dueAt, request.now, request.now).changes,
      )
    }
    if (hook.ordered && queued > 0) this.s.advanceQueue.run(request.now, request.now, hook.id, topicId)
    return { queued }
  }

  counts(): Record<DeliveryState, number> {
    const counts: Record<DeliveryState, number> = { pending: 0, delivered: 0, failed: 0 }
    for (const row of this.s.counts.all() as Array<{ state: DeliveryState; n: number }>) {
      counts[row.state] = row.n
    }
    return counts
  }

  /**
   * Settled deliveries (and their attempts) and WebSub verifications last touched before `before`,
   * and WebSub subscriptions whose lease ended (with their queues).
   */
  prune(before: number, now: number): number {
    this.s.pruneExpiredSubscriptions.run(now)
    this.s.pruneVerifications.run(before)
    // Oldest first, in id order (ids grow with creation time), a chunk at a time, up to the first
    // delivery created after the cutoff: no index on age, which would cost a write per delivery.
    let removed = 0
    let after = 0
    for (;;) {
      const rows = this.s.oldestDeliveries.all(after, PRUNE_CHUNK) as Array<{
        id: number
        state: DeliveryState
        created_at: number
        updated_at: number
      }>
      const old = rows
        .filter((row) => row.state !== 'pending' && row.updated_at < before)
        .map((row) => row.id)
      if (old.length > 0) removed += Number(this.s.deleteDeliveries.run(JSON.stringify(old)).changes)
      const newer = rows.findIndex((row) => row.created_at >= before)
      if (rows.length < PRUNE_CHUNK || newer !== -1) return removed
      after = rows.at(-1)!.id
    }
  }
}

function prepare(db: DatabaseSync) {
  const q = (sql: string): StatementSync => db.prepare(sql)
  return {
    insertHook: q(`INSERT INTO hooks (id, kind, target_url, topic, topic_url, event, event_root, secret,
      lease_seconds, expires_at, previous_secret, previous_secret_until, ordered, max_in_flight, rate_limit,
      state, disabled_reason, failing_since, description, filter, created_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    hookById: q('SELECT * FROM hooks WHERE id = ?'),
    anyHooks: q("SELECT 1 FROM hooks WHERE state <> 'disabled' LIMIT 1"),
    listHooks: q(`SELECT * FROM hooks WHERE id > :after AND (:kind IS NULL OR kind = :kind)
      AND (:topic_url IS NULL OR topic_url = :topic_url) ORDER BY id LIMIT :limit`),
    websubByTopicCallback: q(
      "SELECT * FROM hooks WHERE kind = 'websub' AND topic_url = ? AND target_url = ?",
    ),
    insertVerification: q(`INSERT INTO websub_verifications (mode, topic_url, callback, state, requested_at,
      lease_seconds, secret, lease_owner, lease_token, lease_until) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)`),
    verificationHeld: q(`SELECT ${PENDING_VERIFICATION} FROM websub_verifications
      WHERE id = ? AND lease_token = ? AND state = 'pending'`),
    earlierPending: q(`SELECT 1 FROM websub_verifications
      WHERE topic_url = ? AND callback = ? AND state = 'pending' AND id < ? LIMIT 1`),
    letGoVerification: q(`UPDATE websub_verifications SET lease_owner = NULL, lease_token = NULL,
      lease_until = NULL WHERE id = ? AND lease_token = ?`),
    renewVerification: q('UPDATE websub_verifications SET lease_until = ? WHERE id = ?'),
    // Pending verifications no one does (lease run out or let go, owner not a node, or a former process
    // under this node's id), oldest first, none behind an earlier pending one of its topic and callback.
    claimVerifications: q(`UPDATE websub_verifications SET lease_owner = :owner, lease_token = :token,
      lease_until = :until
      WHERE id IN (SELECT v.id FROM websub_verifications v WHERE v.state = 'pending'
        AND (v.lease_until IS NULL OR v.lease_until < :now OR v.lease_owner = :former
          OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = v.lease_owner))
        AND NOT EXISTS (SELECT 1 FROM websub_verifications e WHERE e.topic_url = v.topic_url
          AND e.callback = v.callback AND e.state = 'pending' AND e.id < v.id)
        ORDER BY v.id LIMIT :limit)
      RETURNING ${PENDING_VERIFICATION}`),
    // The secret is kept only as long as the verification is to be done.
    completeVerification: q(`UPDATE websub_verifications SET state = ?, error = ?, completed_at = ?,
      secret = NULL, lease_owner = NULL, lease_token = NULL, lease_until = NULL WHERE id = ?`),
    releaseVerifications: q(`UPDATE websub_verifications SET lease_owner = NULL, lease_token = NULL,
      lease_until = NULL WHERE state = 'pending' AND lease_owner IS NOT NULL`),
    verifications: q(`SELECT ${VERIFICATION_COLUMNS} FROM websub_verifications
      WHERE (:topic_url IS NULL OR topic_url = :topic_url) ORDER BY id DESC LIMIT :limit`),
    pruneExpiredSubscriptions: q('DELETE FROM hooks WHERE expires_at IS NOT NULL AND expires_at <= ?'),
    pruneVerifications: q('DELETE FROM websub_verifications WHERE requested_at < ?'),
    updateHook: q(
      `UPDATE hooks SET ${HOOK_COLUMNS.map((column) => `${column} = ?`).join(', ')}, event_root = ?,
       updated_at = ? WHERE id = ?`,
    ),
    deleteHook: q('DELETE FROM hooks WHERE id = ?'),
    hooksOfTopic:
      q(`SELECT id, event, ordered, filter FROM hooks WHERE state <> 'disabled' AND topic = ?1 AND ?2 = ?2
        AND (expires_at IS NULL OR expires_at > ?3)`),
    // A WebSub subscription whose lease ended gets nothing more (it is purged by the next prune).
    hooksFor: q(`SELECT id, event, ordered, filter FROM hooks WHERE state <> 'disabled' AND topic = ?1
        AND (expires_at IS NULL OR expires_at > ?3)
      UNION ALL
      SELECT id, event, ordered, filter FROM hooks WHERE state <> 'disabled' AND topic IS NULL AND event_root IN (?2, '*')
        AND (expires_at IS NULL OR expires_at > ?3)`),
    queueHasPending: q(
      "SELECT 1 FROM deliveries WHERE hook_id = ? AND topic_id = ? AND state = 'pending' LIMIT 1",
    ),
    insertDelivery:
      q(`INSERT INTO deliveries (hook_id, topic_id, seq, event_id, state, due_at, created_at, updated_at)
      VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (hook_id, topic_id, seq) DO NOTHING`),
    upsertDelivery:
      q(`INSERT INTO deliveries (hook_id, topic_id, seq, event_id, state, due_at, created_at, updated_at)
      VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7)
      ON CONFLICT (hook_id, topic_id, seq) DO UPDATE SET state = 'pending', due_at = ?5, updated_at = ?7
      WHERE state <> 'pending'`),
    // Hooks that are active and have something due; the dispatcher then takes each one's share.
    hooksWithDue: q(`SELECT * FROM hooks h WHERE state = 'active' AND EXISTS (
      SELECT 1 FROM deliveries d WHERE d.hook_id = h.id AND d.state = 'pending' AND d.due_at <= ?
        AND d.lease_until IS NULL)`),
    dueOfHook:
      q(`SELECT d.id, d.topic_id, t.name AS topic, d.seq FROM deliveries d JOIN topics t ON t.id = d.topic_id
      WHERE d.hook_id = ? AND d.state = 'pending' AND d.due_at <= ? AND d.lease_until IS NULL
      ORDER BY d.due_at, d.seq LIMIT ?`),
    // The head and the pending deliveries that follow it in its ordered queue, in order.
    // A queue's head and the pending deliveries after it, in order, with the events' bodies (NULL
    // for an event retention removed).
    runFrom: q(`SELECT d.id, t.name AS topic, d.seq, d.event_id, d.attempts, e.body
      FROM deliveries d JOIN topics t ON t.id = d.topic_id
      LEFT JOIN events e ON e.topic_id = d.topic_id AND e.seq = d.seq
      WHERE d.hook_id = ? AND d.topic_id = ? AND d.state = 'pending' AND d.seq >= ? AND d.lease_until IS NULL
      ORDER BY d.seq LIMIT ?`),
    leaseIds: q(`UPDATE deliveries SET lease_owner = ?, lease_until = ?, lease_token = ?
      WHERE id IN (SELECT value FROM json_each(?))`),
    // The runs of a hook (?2) leased at ?3: each holds one leased row that is due (an ordered run's
    // next unsent delivery, an unordered delivery), by index (deliveries_running). An ordered queue's
    // run counts once per token and topic (?1 = 1) should it hold more (rows due while the hook was
    // unordered).
    runsInFlight: q(`SELECT COUNT(*) AS n FROM (
        SELECT DISTINCT lease_token, topic_id, CASE WHEN ?1 = 1 THEN 0 ELSE id END
        FROM deliveries INDEXED BY deliveries_running
        WHERE hook_id = ?2 AND lease_until IS NOT NULL AND due_at IS NOT NULL AND lease_until >= ?3
          AND state = 'pending')`),
    bucket: q('SELECT tokens, updated_at FROM rate_buckets WHERE hook_id = ?'),
    saveBucket: q(`INSERT INTO rate_buckets (hook_id, tokens, updated_at) VALUES (?, ?, ?)
      ON CONFLICT (hook_id) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at`),
    // Whether a run still holds any pending delivery of its queue under its token.
    holdsQueue: q(`SELECT 1 FROM deliveries WHERE hook_id = ? AND topic_id = ? AND state = 'pending'
      AND lease_token = ? LIMIT 1`),
    // Of the deliveries a settlement names, those still leased under its token, with their attempts.
    heldUnder: q(`SELECT id, attempts FROM deliveries
      WHERE id IN (SELECT value FROM json_each(?)) AND lease_token = ?`),
    // Deliveries answered 2xx, settled together: their attempts logged and their rows marked.
    logDelivered:
      q(`INSERT INTO attempts (delivery_id, hook_id, attempt, at, duration_ms, status, error, response)
      SELECT d.id, d.hook_id, d.attempts + 1, j.value ->> 'at', j.value ->> 'duration_ms', j.value ->> 'status',
        NULL, j.value ->> 'response'
      FROM json_each(?) AS j JOIN deliveries d ON d.id = j.value ->> 'id'`),
    markDelivered: q(`UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, due_at = NULL,
        last_status = j.value ->> 'status', last_error = NULL, lease_owner = NULL, lease_until = NULL, lease_token = NULL,
        updated_at = ?
      FROM json_each(?) AS j WHERE deliveries.id = j.value ->> 'id'`),
    // The leases to release: every one (:all), those of the nodes named (:owners, a JSON array), or
    // those run out (:expired_at).
    leasedQueues: q(`SELECT DISTINCT hook_id, topic_id FROM deliveries WHERE state = 'pending' AND (
      (:all = 1 AND lease_until IS NOT NULL) OR lease_owner IN (SELECT value FROM json_each(:owners))
      OR lease_until < :expired_at)`),
    releaseLeases: q(`UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, lease_token = NULL
      WHERE state = 'pending' AND ((:all = 1 AND lease_until IS NOT NULL)
      OR lease_owner IN (SELECT value FROM json_each(:owners)) OR lease_until < :expired_at)`),
    // Makes the oldest pending delivery of an ordered queue due, unless the queue is busy: one of its
    // deliveries is due (a retry waiting, or the front of a run in flight). Replays and retries add
    // waiting rows anywhere in the queue, so the check covers the whole queue, by index.
    advanceQueue: q(`UPDATE deliveries SET due_at = ?1, updated_at = ?2 WHERE id = (
        SELECT id FROM deliveries WHERE hook_id = ?3 AND topic_id = ?4 AND state = 'pending'
        ORDER BY seq LIMIT 1)
      AND NOT EXISTS (SELECT 1 FROM deliveries INDEXED BY deliveries_queue_busy
        WHERE hook_id = ?3 AND topic_id = ?4 AND state = 'pending' AND due_at IS NOT NULL)`),
    unqueueAll: q(
      "UPDATE deliveries SET due_at = NULL WHERE hook_id = ? AND state = 'pending' AND lease_until IS NULL",
    ),
    dueAll: q("UPDATE deliveries SET due_at = COALESCE(due_at, ?) WHERE hook_id = ? AND state = 'pending'"),
    queuesOfHook: q("SELECT DISTINCT topic_id FROM deliveries WHERE hook_id = ? AND state = 'pending'"),
    stalledQueues: q(`SELECT hook_id, topic_id FROM deliveries WHERE state = 'pending'
      GROUP BY hook_id, topic_id HAVING MAX(due_at IS NOT NULL OR lease_until IS NOT NULL) = 0`),
    markBusy: q(
      "UPDATE deliveries SET due_at = COALESCE(due_at, ?) WHERE id = ? AND state = 'pending' AND lease_token = ?",
    ),
    insertAttempt:
      q(`INSERT INTO attempts (delivery_id, hook_id, attempt, at, duration_ms, status, error, response)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    settleDelivery:
      q(`UPDATE deliveries SET state = ?, attempts = ?, due_at = ?, last_status = ?, last_error = ?,
      lease_owner = NULL, lease_until = NULL, lease_token = NULL, updated_at = ? WHERE id = ?`),
    release: q(
      'UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, lease_token = NULL WHERE id = ? AND lease_token = ?',
    ),
    hookSucceeded: q('UPDATE hooks SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL'),
    hookFailed: q('UPDATE hooks SET failing_since = ? WHERE id = ? AND failing_since IS NULL'),
    disableHook: q("UPDATE hooks SET state = 'disabled', disabled_reason = ?, updated_at = ? WHERE id = ?"),
    topicId: q('SELECT id FROM topics WHERE name = ?'),
    // Per active hook, its earliest due delivery by index, rather than a pass over every pending row.
    nextDue:
      q(`SELECT MIN((SELECT MIN(d.due_at) FROM deliveries d WHERE d.hook_id = h.id AND d.state = 'pending'
        AND d.due_at IS NOT NULL AND d.lease_until IS NULL)) AS due
      FROM hooks h WHERE h.state = 'active'`),
    deliveryById: q(`${DELIVERY_SELECT} WHERE d.hook_id = ? AND d.id = ?`),
    listDeliveries: q(`${DELIVERY_SELECT}
      WHERE (:state IS NULL OR d.state = :state) AND (:hook IS NULL OR d.hook_id = :hook)
        AND (:topic IS NULL OR t.name = :topic) AND (:since IS NULL OR d.updated_at >= :since)
        AND (:until IS NULL OR d.updated_at < :until) AND d.id < :before
      ORDER BY d.id DESC LIMIT :limit`),
    attempts: q(`SELECT a.id, a.delivery_id, a.hook_id, d.event_id, t.name AS topic, d.seq, a.attempt, a.at,
        a.duration_ms, a.status, a.error, a.response
      FROM attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN topics t ON t.id = d.topic_id
      WHERE a.hook_id = :hook AND a.id < :before
        AND (:delivery IS NULL OR a.delivery_id = :delivery) AND (:event IS NULL OR d.event_id = :event)
      ORDER BY a.id DESC LIMIT :limit`),
    retryDelivery:
      q(`UPDATE deliveries SET state = 'pending', due_at = ?, lease_owner = NULL, lease_until = NULL,
      lease_token = NULL, updated_at = ? WHERE hook_id = ? AND id = ?`),
    eventsAfter: q('SELECT seq, id, body FROM events WHERE topic_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
    eventsSince: q(
      'SELECT seq, id, body FROM events WHERE topic_id = ? AND stored_at >= ? ORDER BY seq LIMIT ?',
    ),
    counts: q('SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state'),
    oldestDeliveries: q(
      'SELECT id, state, created_at, updated_at FROM deliveries WHERE id > ? ORDER BY id LIMIT ?',
    ),
    deleteDeliveries: q('DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?))'),
  }
}
