import { randomUUID } from 'node:crypto'
import type pg from 'pg'
import { eventRoot, matchesEventType } from '../../core/event-pattern.ts'
import { storedFilter } from '../../core/filter.ts'
import { disableReason, outcomeHealth } from '../../delivery/hook-health.ts'
import { type TokenBucket, tokensAt } from '../../delivery/rate-limit.ts'
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
import { expectCommit, inTransaction, together } from './transaction.ts'

/** Deliveries read per step while pruning. */
const PRUNE_CHUNK = 5_000

/**
 * Hooks, deliveries and attempts in PostgreSQL: the mirror of src/store/sqlite/deliveries.ts, section
 * by section, with the same behaviour. Where SQLite relied on its single writer, several Herald
 * processes share this database, so:
 *
 * - Claims lock the rows they lease with FOR UPDATE SKIP LOCKED: a row another transaction is
 *   claiming is skipped, never waited for, never leased twice. Every claim leases its rows under one
 *   random token (lease_token, with lease_owner the node and lease_until the end of the lease).
 * - A hook's max_in_flight holds across the nodes: a claim locks the hooks it takes from (SKIP
 *   LOCKED, so claims of one hook take turns and never wait) and then counts the runs of each that
 *   are leased, by whichever node, in a later statement, whose snapshot has the claims before it.
 * - Every settlement and extension is fenced by its run's token: it changes only the rows still
 *   leased under it. A dispatcher paused past its lease, whose rows were rescued and claimed by
 *   another, settles nothing of them (no attempt logged, no state, no failing streak).
 * - Advancing an ordered queue first locks its topic's row (FOR SHARE, in a statement of its own, so
 *   that the advancing UPDATE's snapshot is taken once the lock is held): an append holds that row's
 *   lock while it decides that a new delivery waits behind a pending one (writer.ts, `busy`), and an
 *   advance in between that decision and the append's commit would leave the new delivery waiting
 *   behind nothing.
 * - Transactions where SQLite ran in its writer's group commit, in few round trips (statements are
 *   pipelined, see transaction.ts). Locks are taken in the order appends take them: topics' rows,
 *   then hooks' rows (FOR NO KEY UPDATE, which lets an append's foreign-key check through), then
 *   deliveries; a deadlock all the same (PostgreSQL ends one of the two) runs the transaction again.
 * - The settlements and extensions of one run are applied in the order they were issued (SQLite's
 *   writer commits them in that order; here each is its own transaction), and a claim waits for the
 *   settlements this process issued before it, so that it sees the queues they advanced.
 *
 * Times are the caller's (`now` in each request), taken from the store's clock, which on PostgreSQL
 * is the database's. Ordered queues work as on SQLite: per hook and topic at most the oldest pending
 * delivery is due (or leased, with the run that follows it); the others wait with `due_at` NULL until
 * an advance makes the next one due.
 */

/** A hooks row: the record as stored, plus the indexed first segment of `event`. */
type HookRow = HookRecord & { event_root: string | null }

function toHook(row: HookRow): HookRecord {
  const { event_root: _root, ...hook } = row
  return hook
}

/** An ordered queue: a hook's deliveries of one topic. */
export interface Queue {
  hookId: string
  topicId: number
}

export class PostgresDeliveries {
  private readonly pool: pg.Pool
  /** Per lease token, the last settlement or extension of its run issued (see `inOrder`). */
  private readonly runTails = new Map<string, Promise<unknown>>()
  /** Settlements issued and not answered yet: a claim waits for them. */
  private readonly settling = new Set<Promise<unknown>>()

  constructor(pool: pg.Pool) {
    this.pool = pool
  }

  // ---- hooks ----------------------------------------------------------------------------------

  async createHook(hook: HookRecord): Promise<HookRecord> {
    const result = await this.pool.query<HookRow>(`${SQL.insertHook} RETURNING *`, hookValues(hook))
    return toHook(result.rows[0]!)
  }

  async hook(id: string): Promise<HookRecord | undefined> {
    const row = (await this.pool.query<HookRow>(SQL.hookById, [id])).rows[0]
    return row && toHook(row)
  }

  async hooks(options: {
    after?: string
    limit: number
    kind?: HookKind
    topicUrl?: string
  }): Promise<HookRecord[]> {
    const result = await this.pool.query<HookRow>(SQL.listHooks, [
      options.after ?? '',
      options.kind ?? null,
      options.topicUrl ?? null,
      options.limit,
    ])
    return result.rows.map(toHook)
  }

  async websubSubscription(topicUrl: string, callback: string): Promise<HookRecord | undefined> {
    const row = (await this.pool.query<HookRow>(SQL.websubByTopicCallback, [topicUrl, callback])).rows[0]
    return row && toHook(row)
  }

  // ---- WebSub verifications of intent: durable, leased, fenced by their token ----------------------

  async recordVerification(
    request: Omit<PendingVerification, 'id'>,
    lease: VerificationLease,
  ): Promise<number> {
    const result = await this.pool.query<{ id: number }>(SQL.insertVerification, [
      request.mode,
      request.topic_url,
      request.callback,
      request.requested_at,
      request.lease_seconds,
      request.secret,
      lease.owner,
      lease.token,
      lease.until,
    ])
    return result.rows[0]!.id
  }

  async startVerification(id: number, lease: VerificationLease): Promise<PendingVerification | undefined> {
    const result = await this.pool.query<PendingVerification & { blocked: boolean }>(SQL.startVerification, [
      id,
      lease.token,
      lease.until,
    ])
    const row = result.rows[0]
    if (!row || row.blocked) return undefined
    const { blocked: _blocked, ...verification } = row
    return verification
  }

  async claimVerifications(request: {
    lease: VerificationLease
    now: number
    limit: number
    formerSelf?: string
  }): Promise<PendingVerification[]> {
    const { lease } = request
    const result = await this.pool.query<PendingVerification>(SQL.claimVerifications, [
      lease.owner,
      lease.token,
      lease.until,
      request.now,
      request.formerSelf ?? null,
      request.limit,
    ])
    return result.rows.sort((a, b) => a.id - b.id)
  }

  /**
   * The verification's row is locked while its outcome and the subscription it changes are written:
   * a node that took it over meanwhile holds it under another token, and this changes nothing.
   */
  finishVerification(outcome: VerificationOutcome): Promise<boolean> {
    return inTransaction(this.pool, async (client) => {
      const [, read] = await together([
        client.query('BEGIN'),
        client.query<{ topic_url: string; callback: string }>(SQL.verificationHeld, [
          outcome.id,
          outcome.token,
        ]),
      ])
      const held = read.rows[0]
      if (!held) {
        expectCommit(await client.query('COMMIT'))
        return false
      }
      const [, , done] = await together([
        outcome.subscription
          ? client.query(SQL.upsertSubscription, hookValues(outcome.subscription))
          : outcome.unsubscribe
            ? client.query(SQL.deleteSubscription, [held.topic_url, held.callback])
            : undefined,
        client.query(SQL.completeVerification, [outcome.state, outcome.error, outcome.now, outcome.id]),
        client.query('COMMIT'),
      ])
      expectCommit(done)
      return true
    })
  }

  async verifications(options: { topicUrl?: string; limit: number }): Promise<VerificationRecord[]> {
    const result = await this.pool.query<VerificationRecord>(SQL.verifications, [
      options.topicUrl ?? null,
      options.limit,
    ])
    return result.rows
  }

  /**
   * The hook's row is locked while it changes: a settlement on another node (its failure clock) waits
   * for it, and the record written is the one read under the lock plus `changes`.
   */
  updateHook(id: string, changes: HookChanges, now: number): Promise<HookRecord | undefined> {
    return inTransaction(this.pool, async (client) => {
      const [, read] = await together([
        client.query('BEGIN'),
        // NO KEY UPDATE: an append inserting a delivery of this hook (its foreign key takes KEY SHARE on
        // the row) is not held up by it, and so never waits in a cycle with the topic locks below.
        client.query<HookRow>(`${SQL.hookById} FOR NO KEY UPDATE`, [id]),
      ])
      const row = read.rows[0]
      if (!row) {
        expectCommit(await client.query('COMMIT'))
        return undefined
      }
      const before = toHook(row)
      const switching: Array<Promise<unknown>> = []
      const next = { ...before, ...changes, updated_at: now }
      if (changes.ordered !== undefined && changes.ordered !== before.ordered) {
        // The topics of its queues (and its own topic) are locked first: an append to one of them that
        // read the hook as it was has committed by then, and its deliveries are switched too; one that
        // comes after reads the hook as it is now. (A hook of every topic can still meet an append to
        // a topic where it had nothing pending: the stalled-queue look in `claim` is the net there.)
        const topics = [before.topic, next.topic].filter((topic) => topic !== null)
        switching.push(client.query(SQL.lockTopicsOfHook, [id, topics]))
        if (changes.ordered) {
          // Now ordered: each queue waits behind its oldest pending delivery (in flight ones finish).
          switching.push(
            client.query(SQL.unqueueAll, [id]),
            client.query(advanceSql(QUEUES_OF_HOOK), [now, id]),
          )
        } else {
          switching.push(client.query(SQL.dueAll, [now, id])) // no longer ordered: every pending one is due
        }
      }
      const [, updated, done] = await together([
        together(switching),
        client.query<HookRow>(SQL.updateHook, [
          ...HOOK_COLUMNS.map((column) => next[column]),
          next.event === null ? null : eventRoot(next.event),
          now,
          id,
        ]),
        client.query('COMMIT'),
      ])
      expectCommit(done)
      return toHook(updated.rows[0]!)
    })
  }

  async deleteHook(id: string): Promise<boolean> {
    return ((await this.pool.query(SQL.deleteHook, [id])).rowCount ?? 0) > 0
  }

  // ---- deliveries created with events -----------------------------------------------------------

  // On PostgreSQL the append transaction creates them itself (writer.ts: the candidate hooks are read
  // under the topic locks, in the append's first round trip, and the deliveries inserted in its
  // second), with the same rules as SQLite's createForEvents.

  // ---- the dispatcher's side ------------------------------------------------------------------

  async claim(request: ClaimRequest): Promise<ClaimedRun[]> {
    const { now, owner } = request
    // What this process settled before this claim is seen by it (the queues those settlements
    // advanced), as SQLite's single writer commits them first.
    if (this.settling.size > 0) await Promise.allSettled([...this.settling])
    // Expired leases and stalled queues are not looked for here: the leader's maintenance does that
    // now and then (`recover`), for every node.
    // One token for the whole claim: its runs are all this dispatcher's, each settled under it.
    const lease = randomUUID()
    const leaseUntil = now + request.leaseMs
    return inTransaction(this.pool, async (client) => {
      // Round trip 1: the active hooks with something due, room for a run and a token, locked (a hook
      // another node is claiming is skipped): claims of one hook take turns, so that the runs each
      // counts and the tokens it reads below are what the claim before it left.
      const [, due] = await together([
        client.query('BEGIN'),
        client.query<HookRow>({
          name: 'herald-hooks-with-due',
          text: SQL.hooksWithDue,
          values: [now, request.limit],
        }),
      ])
      const asks = due.rows.map(toHook)
      if (asks.length === 0) {
        expectCommit(await client.query('COMMIT'))
        return []
      }
      // Round trip 2, statements of their own after the hooks' locks (they see what the claims before
      // them committed): each hook's due heads, as many as its max_in_flight leaves room for once the
      // runs leased now by every node are counted, locked (a head another node is claiming is
      // skipped), with how many deliveries its run could take from its queue; and the rate-limited
      // hooks' buckets.
      const limited = asks.filter((hook) => hook.rate_limit !== null).map((hook) => hook.id)
      const [heads, bucketRows] = await together([
        client.query<{ hook_id: string; topic_id: number; seq: number; available: number }>({
          name: 'herald-claim-heads',
          text: SQL.dueHeads,
          values: [
            asks.map((hook) => hook.id),
            asks.map(() => request.limit),
            asks.map((hook) => (hook.ordered ? request.runLength : 1)),
            now,
          ],
        }),
        limited.length === 0
          ? undefined
          : client.query<TokenBucket & { hook_id: string }>({
              name: 'herald-claim-buckets',
              text: SQL.buckets,
              values: [limited],
            }),
      ])
      const headsOf = Map.groupBy(heads.rows, (head) => head.hook_id)
      const buckets = new Map(bucketRows?.rows.map((row) => [row.hook_id, row]))
      // The runs, cut to each hook's room and tokens as SQLite's claim cuts them.
      const planned: Array<{ hook: HookRecord; topicId: number; fromSeq: number; length: number }> = []
      const spending = columns<[string[], number[]]>(2)
      for (const hook of asks) {
        if (planned.length >= request.limit) break
        const available =
          hook.rate_limit === null
            ? Number.POSITIVE_INFINITY
            : tokensAt(hook.rate_limit, buckets.get(hook.id), now)
        let budget = available
        const room = request.limit - planned.length
        for (const head of (headsOf.get(hook.id) ?? []).slice(0, room)) {
          if (budget < 1) break
          const length = Math.min(hook.ordered ? request.runLength : 1, Math.floor(budget), head.available)
          if (length <= 0) continue
          planned.push({ hook, topicId: head.topic_id, fromSeq: head.seq, length })
          budget -= length
        }
        if (hook.rate_limit !== null && budget < available) {
          // What the runs leased is taken from this in the same statement (a run may get fewer rows
          // than planned: some were locked by another node's claim).
          spending[0].push(hook.id)
          spending[1].push(available)
        }
      }
      if (planned.length === 0) {
        expectCommit(await client.query('COMMIT'))
        return []
      }
      // Round trip 3: the runs leased, with the events' bodies, and the commit.
      const [leased, done] = await together([
        client.query<LeasedRow>({
          name: 'herald-claim-runs',
          text: SQL.leaseRuns,
          values: [
            owner,
            lease,
            leaseUntil,
            planned.map((run) => run.hook.id),
            planned.map((run) => run.topicId),
            planned.map((run) => run.fromSeq),
            planned.map((run) => run.length),
            ...spending,
            now,
          ],
        }),
        client.query('COMMIT'),
      ])
      expectCommit(done)
      const byRun = Map.groupBy(leased.rows, (row) => row.run)
      const runs: ClaimedRun[] = []
      planned.forEach((run, index) => {
        const rows = byRun.get(index + 1)
        // None: taken by an earlier head's run in this claim, or locked by another node's claim.
        if (rows) runs.push({ hook: run.hook, deliveries: rows.map(toClaimed), lease })
      })
      return runs
    })
  }

  extend(request: ExtendRequest): Promise<ClaimedRun | undefined> {
    return this.inOrder(request.lease, () =>
      inTransaction(this.pool, async (client) => {
        const { lease, owner } = request
        // The hook as it is now, and the continuation leased in the same round trip: the statement
        // leases nothing unless the hook is active and ordered and the run still holds a pending
        // delivery of its queue under its token (its lease may have run out, or been rescued and
        // claimed by another node: the run is over then, and gets nothing of someone else's queue).
        const [, read, leased, done] = await together([
          client.query('BEGIN'),
          client.query<HookRow & { topic_id: number | null }>(SQL.hookAndTopic, [
            request.hookId,
            request.topic,
          ]),
          client.query<LeasedRow>({
            name: 'herald-extend-run',
            text: SQL.extendRun,
            values: [
              owner,
              lease,
              request.now + request.leaseMs,
              request.hookId,
              request.topic,
              request.afterSeq + 1,
              request.runLength,
            ],
          }),
          client.query('COMMIT'),
        ])
        expectCommit(done)
        const row = read.rows[0]
        if (!row || row.topic_id === null) return undefined
        const { topic_id: _topic, ...hookRow } = row
        const hook = toHook(hookRow)
        if (hook.state !== 'active' || !hook.ordered || hook.rate_limit !== null) return undefined
        return { hook, deliveries: leased.rows.map(toClaimed), lease }
      }),
    )
  }

  /**
   * Leases that ran out belong to a dispatcher that died or stopped for longer than its lease: their
   * rows are free again, and each ordered queue they held gets its oldest pending delivery due (the
   * run's later ones had due_at NULL). Node rescue (nodes.ts) is the quick way; this is the backstop,
   * run by the leader's maintenance every few seconds (src/cluster/maintenance.ts).
   */
  recover(now: number): Promise<{ released: number; stalled: number }> {
    return inTransaction(this.pool, async (client) => {
      const [, released, stalled] = await together([
        client.query('BEGIN'),
        releaseStatement(client, { expiredAt: now }),
        // A safety net: a queue with pending deliveries of which none is due or leased would wait
        // forever (a hook switched between ordered and unordered with a run out, say). Its oldest is
        // made due.
        client.query<{ hook_id: string; topic_id: number }>(SQL.stalledQueues),
      ])
      const queues = [...released.rows, ...stalled.rows].map((row) => ({
        hookId: row.hook_id,
        topicId: row.topic_id,
      }))
      const [, done] = await together([together(advance(client, queues, now)), client.query('COMMIT')])
      expectCommit(done)
      return { released: released.rowCount ?? 0, stalled: stalled.rows.length }
    })
  }

  settle(settlement: Settlement): Promise<SettleResult> {
    const settled = this.inOrder(settlement.lease, () =>
      inTransaction(this.pool, (client) => this.settleIn(client, settlement)),
    )
    const tracked = settled.then(
      () => {},
      () => {},
    )
    this.settling.add(tracked)
    void tracked.then(() => this.settling.delete(tracked))
    return settled
  }

  private async settleIn(client: pg.PoolClient, settlement: Settlement): Promise<SettleResult> {
    const { now, lease } = settlement
    const failing = new Map<string, HookRecord>()
    const disabled = new Map<string, HookRecord>()
    const removed = new Map<string, HookRecord>()
    // Round trip 1: the topics of the queues to advance, locked first (see `advance`); the hooks whose
    // failure clock may move, locked; and of the deliveries named, those this run still holds, locked.
    // Topics, then hooks, then deliveries: the order an append takes them in (its topic's row, then
    // the hooks its new deliveries refer to), so that the two never wait for each other in a cycle.
    // An outcome for a row no longer leased under its token (the lease ran out or was rescued, the
    // row perhaps claimed by another dispatcher since, or deleted with its hook) is ignored entirely:
    // no attempt logged, no state change, no failing streak.
    const unwell = [
      ...new Set(settlement.outcomes.filter((o) => o.result !== 'delivered').map((o) => o.hookId)),
    ].sort()
    let begun = false
    const held = new Map<number, number>()
    const hooks = new Map<string, HookRecord>()
    const topics = settlement.advanced.map((queue) => queue.topic)
    if (settlement.outcomes.length > 0) {
      const [, , hookRows, heldRows] = await together([
        client.query('BEGIN'),
        lockTopicsByName(client, topics),
        unwell.length === 0 ? undefined : client.query<HookRow>(SQL.lockHooks, [unwell]),
        client.query<{ id: number; attempts: number }>({
          name: 'herald-settle-held',
          text: SQL.heldUnder,
          values: [settlement.outcomes.map((outcome) => outcome.id), lease],
        }),
      ])
      begun = true
      for (const row of hookRows?.rows ?? []) hooks.set(row.id, toHook(row))
      for (const row of heldRows.rows) held.set(row.id, row.attempts)
    }
    const outcomes = settlement.outcomes.filter((outcome) => held.has(outcome.id))
    const health = outcomeHealth(outcomes)

    // What changes, worked out here from the rows read under their locks (the policy in
    // src/delivery/hook-health.ts), then written in one round trip.
    const attempts = columns<AttemptColumns>(8)
    const rows = columns<SettledColumns>(6)
    const started: string[] = []
    const disabling = columns<[string[], string[]]>(2)
    const gone: string[] = []
    const logAttempt = (outcome: Settlement['outcomes'][number], number: number, error: string | null) => {
      const a = outcome.attempt
      attempts[0].push(outcome.id)
      attempts[1].push(outcome.hookId)
      attempts[2].push(number)
      attempts[3].push(a.at)
      attempts[4].push(a.duration_ms)
      attempts[5].push(a.status)
      attempts[6].push(error)
      attempts[7].push(a.response)
    }
    const settleRow = (
      id: number,
      state: DeliveryState,
      number: number,
      dueAt: number | null,
      a: Attempt,
    ) => {
      rows[0].push(id)
      rows[1].push(state)
      rows[2].push(number)
      rows[3].push(dueAt)
      rows[4].push(a.status)
      rows[5].push(a.error)
    }
    // Deliveries answered 2xx first, as SQLite logs them.
    for (const outcome of outcomes) {
      if (outcome.result !== 'delivered') continue
      const number = held.get(outcome.id)! + 1
      logAttempt(outcome, number, null)
      settleRow(outcome.id, 'delivered', number, null, { ...outcome.attempt, error: null })
    }
    for (const [index, outcome] of outcomes.entries()) {
      if (outcome.result === 'delivered' || removed.has(outcome.hookId)) continue
      const number = held.get(outcome.id)! + 1
      switch (outcome.result) {
        case 'retry':
        case 'failed': {
          logAttempt(outcome, number, outcome.attempt.error)
          const state = outcome.result === 'retry' ? 'pending' : 'failed'
          settleRow(
            outcome.id,
            state,
            number,
            outcome.result === 'retry' ? outcome.dueAt : null,
            outcome.attempt,
          )
          // A failure followed by a success of its hook in this settlement does not count.
          if (!health.countsAsFailure[index]) break
          let hook = hooks.get(outcome.hookId)
          if (!hook) break
          // Only a hook that was not failing yet changes: that is the start of a failing streak.
          if (hook.failing_since === null) {
            hook = { ...hook, failing_since: now }
            started.push(hook.id)
            failing.set(hook.id, hook)
          }
          const reason = disableReason(hook, now, settlement.disableAfterMs)
          if (reason !== undefined) {
            hook = { ...hook, state: 'disabled', disabled_reason: reason, updated_at: now }
            disabling[0].push(hook.id)
            disabling[1].push(reason)
            disabled.set(hook.id, hook)
          }
          hooks.set(hook.id, hook)
          break
        }
        case 'gone': {
          // Its attempt would go with the hook (and its deliveries): none is logged.
          const hook = hooks.get(outcome.hookId)
          if (hook) removed.set(hook.id, hook)
          gone.push(outcome.hookId)
          break
        }
      }
    }
    const recovered = health.recovered.filter((hookId) => !removed.has(hookId))

    // Round trip 2: every write, and the commit.
    const q = (name: string, text: string, values: unknown[]) => client.query({ name, text, values })
    const writes = [
      begun ? undefined : client.query('BEGIN'),
      begun ? undefined : lockTopicsByName(client, topics),
      attempts[0].length === 0 ? undefined : q('herald-settle-attempts', SQL.insertAttempts, attempts),
      rows[0].length === 0 ? undefined : q('herald-settle-rows', SQL.settleRows, [now, ...rows]),
      started.length === 0 ? undefined : client.query(SQL.hookFailed, [now, started]),
      disabling[0].length === 0 ? undefined : client.query(SQL.disableHooks, [now, ...disabling]),
      gone.length === 0 ? undefined : client.query(SQL.deleteHooks, [gone]),
      recovered.length === 0 ? undefined : q('herald-settle-recovered', SQL.hookSucceeded, [recovered]),
      settlement.carry === undefined
        ? undefined
        : q('herald-settle-carry', SQL.markBusy, [now, settlement.carry, lease]),
      settlement.released.length === 0
        ? undefined
        : q('herald-settle-release', SQL.release, [settlement.released, lease]),
      // Advancing a queue is safe whoever asks: it does nothing while the queue is busy.
      advanceNamed(client, settlement.advanced, now),
    ]
    const [, done] = await together([together(writes), client.query('COMMIT')])
    expectCommit(done)
    return {
      failing: [...failing.values()],
      disabled: [...disabled.values()],
      removed: [...removed.values()],
    }
  }

  async nextDueAt(): Promise<number | null> {
    const result = await this.pool.query<{ due: number | null }>({
      name: 'herald-next-due',
      text: SQL.nextDue,
    })
    return result.rows[0]?.due ?? null
  }

  /**
   * Runs `work` once the settlements and extensions issued before it under the same lease token are
   * answered: a run's batches, its extensions and its last settlement apply in the order it sent them
   * (a settlement that advances the queue committing before the one that settles the queue's head
   * would find the queue busy and leave it waiting). Runs of other tokens go on beside it.
   */
  private inOrder<T>(lease: string, work: () => Promise<T>): Promise<T> {
    const before = this.runTails.get(lease) ?? Promise.resolve()
    const result = before.then(work)
    const tail = result.then(
      () => {},
      () => {},
    )
    this.runTails.set(lease, tail)
    void tail.then(() => {
      if (this.runTails.get(lease) === tail) this.runTails.delete(lease)
    })
    return result
  }

  // ---- operations -----------------------------------------------------------------------------

  async list(filter: DeliveryFilter): Promise<DeliveryRecord[]> {
    const result = await this.pool.query<DeliveryRecord>(SQL.listDeliveries, [
      filter.state ?? null,
      filter.hookId ?? null,
      filter.topic ?? null,
      filter.since ?? null,
      filter.until ?? null,
      filter.beforeId ?? Number.MAX_SAFE_INTEGER,
      filter.limit,
    ])
    return result.rows
  }

  async delivery(hookId: string, id: number): Promise<DeliveryRecord | undefined> {
    return (await this.pool.query<DeliveryRecord>(SQL.deliveryById, [hookId, id])).rows[0]
  }

  async attempts(
    hookId: string,
    options: { deliveryId?: number; eventId?: string; before?: number; limit: number },
  ): Promise<AttemptRecord[]> {
    const result = await this.pool.query<AttemptRecord>(SQL.attempts, [
      hookId,
      options.before ?? Number.MAX_SAFE_INTEGER,
      options.deliveryId ?? null,
      options.eventId ?? null,
      options.limit,
    ])
    return result.rows
  }

  /**
   * A settled delivery is queued again; a pending one is left as it is (it is queued, perhaps in
   * flight: clearing its lease could send it twice at once). In an ordered queue it is due only once
   * nothing else of the queue is due or in flight: a retry never runs beside the queue.
   */
  retry(hookId: string, id: number, now: number): Promise<DeliveryRecord | undefined> {
    return inTransaction(this.pool, async (client) => {
      const [, hookRead, read] = await together([
        client.query('BEGIN'),
        client.query<HookRow>(SQL.hookById, [hookId]),
        client.query<DeliveryRecord>(`${SQL.deliveryById} FOR UPDATE OF d`, [hookId, id]),
      ])
      const hook = hookRead.rows[0]
      const delivery = read.rows[0]
      if (!hook || !delivery || delivery.state === 'pending') {
        expectCommit(await client.query('COMMIT'))
        return hook && delivery
      }
      const [, , after, done] = await together([
        client.query(SQL.retryDelivery, [hook.ordered ? null : now, now, hookId, id]),
        together(
          hook.ordered
            ? [
                lockTopicsByName(client, [delivery.topic]),
                advanceNamed(client, [{ hookId, topic: delivery.topic }], now),
              ]
            : [],
        ),
        client.query<DeliveryRecord>(SQL.deliveryById, [hookId, id]),
        client.query('COMMIT'),
      ])
      expectCommit(done)
      return after.rows[0]
    })
  }

  replay(hookId: string, request: ReplayRequest): Promise<{ queued: number }> {
    return inTransaction(this.pool, async (client) => {
      const [, hookRead, topicRead, events] = await together([
        client.query('BEGIN'),
        client.query<HookRow>(SQL.hookById, [hookId]),
        client.query<{ id: number }>(SQL.topicId, [request.topic]),
        request.since !== undefined
          ? client.query<EventRow>(SQL.eventsSince, [request.topic, request.since, request.limit])
          : client.query<EventRow>(SQL.eventsAfter, [request.topic, request.afterSeq ?? 0, request.limit]),
      ])
      const row = hookRead.rows[0]
      const topicId = topicRead.rows[0]?.id
      if (!row || topicId === undefined) {
        expectCommit(await client.query('COMMIT'))
        return { queued: 0 }
      }
      const hook = toHook(row)
      const matching = events.rows.filter((event) => {
        if (hook.filter !== null && !storedFilter(hook.filter).matches({ json: event.body })) return false
        if (hook.event === null) return true
        const type = (JSON.parse(event.body) as { type?: unknown }).type
        return typeof type === 'string' && matchesEventType(hook.event, type)
      })
      // Ordered: queued behind what is pending; the advance below makes the oldest due if none is.
      // Counted only when queued by this call: a delivery already pending is left as it is.
      const upserted =
        matching.length === 0
          ? undefined
          : await client.query(SQL.upsertDeliveries, [
              hook.id,
              topicId,
              hook.ordered ? null : request.now,
              request.now,
              matching.map((event) => event.seq),
              matching.map((event) => event.id),
            ])
      const queued = upserted?.rowCount ?? 0
      const queues = hook.ordered && queued > 0 ? [{ hookId: hook.id, topicId }] : []
      const [, done] = await together([
        together(advance(client, queues, request.now)),
        client.query('COMMIT'),
      ])
      expectCommit(done)
      return { queued }
    })
  }

  async counts(): Promise<Record<DeliveryState, number>> {
    const counts: Record<DeliveryState, number> = { pending: 0, delivered: 0, failed: 0 }
    const result = await this.pool.query<{ state: DeliveryState; n: number }>(SQL.counts)
    for (const row of result.rows) counts[row.state] = row.n
    return counts
  }

  /**
   * Settled deliveries (and their attempts) and WebSub verifications last touched before `before`,
   * and WebSub subscriptions whose lease ended (with their queues).
   */
  async prune(before: number, now: number): Promise<number> {
    await this.pool.query(SQL.pruneExpiredSubscriptions, [now])
    await this.pool.query(SQL.pruneVerifications, [before])
    // Oldest first, in id order (ids grow with creation time), a chunk at a time, up to the first
    // delivery created after the cutoff: no index on age, which would cost a write per delivery.
    let removed = 0
    let after = 0
    for (;;) {
      const chunk = await this.pool.query<{
        removed: number
        last: number | null
        n: number
        newer: boolean
      }>(SQL.pruneChunk, [after, PRUNE_CHUNK, before])
      const { removed: n, last, n: read, newer } = chunk.rows[0]!
      removed += n
      if (read < PRUNE_CHUNK || newer || last === null) return removed
      after = last
    }
  }
}

// ---- releasing leases and advancing queues (also used by nodes.ts) ---------------------------------

/**
 * Lets go of the leases of the nodes named, or of those run out at `expiredAt`, inside the caller's
 * transaction: one statement, answering the queue of each row it released (as many rows as it
 * released). The caller then advances those queues (`advance`) before it commits: a run's later
 * deliveries had due_at NULL, and its head keeps its due_at and is claimable at once.
 */
export function releaseStatement(
  client: pg.PoolClient,
  scope: { owners: string[] } | { expiredAt: number },
): Promise<pg.QueryResult<{ hook_id: string; topic_id: number }>> {
  return 'owners' in scope
    ? client.query(SQL.releaseOwned, [scope.owners])
    : client.query({ name: 'herald-release-expired', text: SQL.releaseExpired, values: [scope.expiredAt] })
}

/**
 * Makes the oldest pending delivery of each queue due unless the queue is busy (one of its deliveries
 * is due: a retry waiting, or the front of a run in flight): the statements, to send together with
 * others. The topics' rows are locked first (FOR SHARE, in name order as appends lock them), by a
 * statement of their own, so that the UPDATE's snapshot is taken once the locks are held: an append
 * to the topic that decided, under its lock, that a new delivery waits behind a pending one has
 * committed by then, and the UPDATE sees its delivery.
 */
export function advance(client: pg.PoolClient, queues: Queue[], now: number): Array<Promise<unknown>> {
  if (queues.length === 0) return []
  return [
    client.query({
      name: 'herald-lock-topics-by-id',
      text: SQL.lockTopicsById,
      values: [[...new Set(queues.map((queue) => queue.topicId))]],
    }),
    client.query({
      name: 'herald-advance-by-id',
      text: advanceSql(QUEUES_BY_ID),
      values: [now, queues.map((queue) => queue.hookId), queues.map((queue) => queue.topicId)],
    }),
  ]
}

/** The first half of `advance` for topics named: their rows locked FOR SHARE, in name order. */
function lockTopicsByName(client: pg.PoolClient, topics: string[]): Promise<unknown> | undefined {
  if (topics.length === 0) return undefined
  return client.query({
    name: 'herald-lock-topics-by-name',
    text: SQL.lockTopicsByName,
    values: [[...new Set(topics)]],
  })
}

/** The second half of `advance`, for queues named by their topic's name: their topics locked before. */
function advanceNamed(
  client: pg.PoolClient,
  queues: Array<{ hookId: string; topic: string }>,
  now: number,
): Promise<unknown> | undefined {
  if (queues.length === 0) return undefined
  return client.query({
    name: 'herald-advance-by-name',
    text: advanceSql(QUEUES_BY_NAME),
    values: [now, queues.map((queue) => queue.hookId), queues.map((queue) => queue.topic)],
  })
}

// ---- rows and statements ------------------------------------------------------------------------

type Attempt = { status: number | null; error: string | null }

type AttemptColumns = [
  number[],
  string[],
  number[],
  number[],
  number[],
  Array<number | null>,
  Array<string | null>,
  Array<string | null>,
]
type SettledColumns = [
  number[],
  string[],
  number[],
  Array<number | null>,
  Array<number | null>,
  Array<string | null>,
]

/** Columns of an unnest statement, filled row by row. */
function columns<T extends unknown[][]>(count: number): T {
  return Array.from({ length: count }, () => []) as unknown as T
}

interface EventRow {
  seq: number
  id: string
  body: string
}

/** A delivery leased by a claim or an extension; `run` numbers the claim's runs from 1. */
interface LeasedRow extends ClaimedDelivery {
  run: number
}

function toClaimed(row: LeasedRow): ClaimedDelivery {
  const { run: _run, ...delivery } = row
  return delivery
}

function hookValues(hook: HookRecord): unknown[] {
  return [
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
    hook.ordered,
    hook.max_in_flight,
    hook.rate_limit,
    hook.state,
    hook.disabled_reason,
    hook.failing_since,
    hook.description,
    hook.created_at,
    hook.updated_at,
    hook.filter,
  ]
}

/** The queues to advance, as (hook_id, topic_id) rows: from ids, from topic names, or a hook's own. */
const QUEUES_BY_ID = 'SELECT DISTINCT * FROM unnest($2::text[], $3::bigint[]) AS x(hook_id, topic_id)'
const QUEUES_BY_NAME = `SELECT DISTINCT x.hook_id, t.id AS topic_id
  FROM unnest($2::text[], $3::text[]) AS x(hook_id, topic) JOIN topics t ON t.name = x.topic`
const QUEUES_OF_HOOK = `SELECT DISTINCT hook_id, topic_id FROM deliveries WHERE hook_id = $2 AND state = 'pending'`

/**
 * Makes the oldest pending delivery of each queue due ($1), unless the queue is busy: one of its
 * deliveries is due. Replays and retries add waiting rows anywhere in the queue, so the check covers
 * the whole queue, by index (deliveries_queue_busy).
 */
function advanceSql(queues: string): string {
  return `UPDATE deliveries d SET due_at = $1, updated_at = $1
    FROM (SELECT head.id FROM (${queues}) q
      CROSS JOIN LATERAL (SELECT p.id FROM deliveries p
        WHERE p.hook_id = q.hook_id AND p.topic_id = q.topic_id AND p.state = 'pending' ORDER BY p.seq LIMIT 1) head
      WHERE NOT EXISTS (SELECT 1 FROM deliveries b WHERE b.hook_id = q.hook_id AND b.topic_id = q.topic_id
        AND b.state = 'pending' AND b.due_at IS NOT NULL)) h
    WHERE d.id = h.id`
}

/**
 * Leases runs ($4 on: one row per run) to $1 under the token $2 until $3, and answers their
 * deliveries with the events' bodies (NULL for an event retention removed), in run and seq order.
 * Each run's candidates are its queue's pending deliveries from its head on that no one holds; those
 * another transaction has locked are skipped, never waited for, and a run stops before the first
 * candidate it could not lock, so that it never leaves a gap in its queue. A delivery two runs of the
 * claim would share goes to the earlier one.
 */
function leaseSql(runs: string, more = ''): string {
  return `WITH ${runs},
    cand AS MATERIALIZED (
      SELECT DISTINCT ON (c.id) r.run, c.id, c.seq
      FROM req r CROSS JOIN LATERAL (
        SELECT d.id, d.seq FROM deliveries d
        WHERE d.hook_id = r.hook_id AND d.topic_id = r.topic_id AND d.state = 'pending' AND d.seq >= r.from_seq
          AND d.lease_until IS NULL
        ORDER BY d.seq LIMIT r.length) c
      ORDER BY c.id, r.run),
    locked AS MATERIALIZED (
      SELECT d.id FROM deliveries d
      WHERE d.id IN (SELECT id FROM cand) AND d.state = 'pending' AND d.lease_until IS NULL
      FOR UPDATE SKIP LOCKED),
    taken AS (
      SELECT c.run, c.id FROM cand c
      WHERE c.seq < COALESCE((SELECT min(x.seq) FROM cand x
        WHERE x.run = c.run AND x.id NOT IN (SELECT id FROM locked)), 9223372036854775807)),
    leased AS (
      UPDATE deliveries d SET lease_owner = $1, lease_token = $2, lease_until = $3
      FROM taken WHERE d.id = taken.id
      RETURNING taken.run, d.id, d.topic_id, d.seq, d.event_id, d.attempts)${more}
    SELECT l.run, l.id, t.name AS topic, l.seq, l.event_id, l.attempts, e.body
    FROM leased l JOIN topics t ON t.id = l.topic_id
    LEFT JOIN events e ON e.topic_id = l.topic_id AND e.seq = l.seq
    ORDER BY l.run, l.seq`
}

/**
 * The runs of the hook `hook` (a table alias) leased at `now` (a parameter), by any node. Each holds
 * one leased row that is due (an ordered run's next unsent delivery, an unordered delivery), found by
 * index (deliveries_running); an ordered queue's run counts once per token and topic should it hold
 * more (rows made due while the hook was unordered).
 */
function runsInFlight(hook: string, now: string): string {
  return `(SELECT count(*) FROM (
      SELECT DISTINCT f.lease_token, f.topic_id, CASE WHEN ${hook}.ordered THEN 0 ELSE f.id END
      FROM deliveries f WHERE f.hook_id = ${hook}.id AND f.lease_owner IS NOT NULL AND f.due_at IS NOT NULL
        AND f.lease_until >= ${now} AND f.state = 'pending') runs)`
}

/** `columns` (a list) of the table aliased `alias`. */
function qualified(alias: string, columns: string): string {
  return columns
    .split(',')
    .map((column) => `${alias}.${column.trim()}`)
    .join(', ')
}

const HOOK_INSERT_COLUMNS = `id, kind, target_url, topic, topic_url, event, event_root, secret, lease_seconds,
  expires_at, previous_secret, previous_secret_until, ordered, max_in_flight, rate_limit, state, disabled_reason,
  failing_since, description, created_at, updated_at, filter`

const SQL = {
  insertHook: `INSERT INTO hooks (${HOOK_INSERT_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`,
  hookById: 'SELECT * FROM hooks WHERE id = $1',
  hookAndTopic:
    'SELECT h.*, (SELECT id FROM topics WHERE name = $2) AS topic_id FROM hooks h WHERE h.id = $1',
  listHooks: `SELECT * FROM hooks WHERE id > $1 AND ($2::text IS NULL OR kind = $2)
    AND ($3::text IS NULL OR topic_url = $3) ORDER BY id LIMIT $4`,
  websubByTopicCallback: "SELECT * FROM hooks WHERE kind = 'websub' AND topic_url = $1 AND target_url = $2",
  insertVerification: `INSERT INTO websub_verifications (mode, topic_url, callback, state, requested_at,
      lease_seconds, secret, lease_owner, lease_token, lease_until)
    VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9) RETURNING id`,
  // The verification $1 while $2 holds it: its lease renewed to $3, or let go (blocked) when an earlier
  // one of its topic and callback is pending.
  startVerification: `WITH held AS MATERIALIZED (
      SELECT id, topic_url, callback FROM websub_verifications
      WHERE id = $1 AND lease_token = $2 AND state = 'pending' FOR UPDATE),
    blocked AS MATERIALIZED (
      SELECT EXISTS (SELECT 1 FROM websub_verifications e JOIN held h
        ON e.topic_url = h.topic_url AND e.callback = h.callback AND e.state = 'pending' AND e.id < h.id) AS yes)
    UPDATE websub_verifications v SET lease_until = CASE WHEN b.yes THEN NULL ELSE $3::bigint END,
      lease_owner = CASE WHEN b.yes THEN NULL ELSE v.lease_owner END,
      lease_token = CASE WHEN b.yes THEN NULL ELSE v.lease_token END
    FROM held, blocked b WHERE v.id = held.id
    RETURNING b.yes AS blocked, ${qualified('v', PENDING_VERIFICATION)}`,
  // Pending verifications no one does (lease run out or let go, owner not a node, or a former process
  // under this node's id $5), oldest first, none behind an earlier pending one of its topic and
  // callback, leased to $1 under $2 until $3; one another node is taking is skipped.
  claimVerifications: `WITH cand AS (
      SELECT v.id FROM websub_verifications v WHERE v.state = 'pending'
        AND (v.lease_until IS NULL OR v.lease_until < $4 OR v.lease_owner = $5
          OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = v.lease_owner))
        AND NOT EXISTS (SELECT 1 FROM websub_verifications e WHERE e.topic_url = v.topic_url
          AND e.callback = v.callback AND e.state = 'pending' AND e.id < v.id)
      ORDER BY v.id LIMIT $6 FOR UPDATE SKIP LOCKED)
    UPDATE websub_verifications v SET lease_owner = $1, lease_token = $2, lease_until = $3
    FROM cand WHERE v.id = cand.id
    RETURNING ${qualified('v', PENDING_VERIFICATION)}`,
  verificationHeld: `SELECT topic_url, callback FROM websub_verifications
    WHERE id = $1 AND lease_token = $2 AND state = 'pending' FOR UPDATE`,
  // A verified subscribe: the subscription of its topic and callback created, or replaced (its id and
  // its queue kept; a WebSub subscription is always ordered, so nothing of its queue switches).
  upsertSubscription: `INSERT INTO hooks (${HOOK_INSERT_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
    ON CONFLICT (topic_url, target_url) WHERE kind = 'websub' DO UPDATE SET
      ${HOOK_COLUMNS.map((column) => `${column} = EXCLUDED.${column}`).join(', ')},
      event_root = EXCLUDED.event_root, updated_at = EXCLUDED.updated_at`,
  deleteSubscription: "DELETE FROM hooks WHERE kind = 'websub' AND topic_url = $1 AND target_url = $2",
  // The secret is kept only as long as the verification is to be done.
  completeVerification: `UPDATE websub_verifications SET state = $1, error = $2, completed_at = $3,
    secret = NULL, lease_owner = NULL, lease_token = NULL, lease_until = NULL WHERE id = $4`,
  verifications: `SELECT ${VERIFICATION_COLUMNS} FROM websub_verifications
    WHERE ($1::text IS NULL OR topic_url = $1) ORDER BY id DESC LIMIT $2`,
  pruneExpiredSubscriptions: 'DELETE FROM hooks WHERE expires_at IS NOT NULL AND expires_at <= $1',
  pruneVerifications: 'DELETE FROM websub_verifications WHERE requested_at < $1',
  updateHook: `UPDATE hooks SET ${HOOK_COLUMNS.map((column, index) => `${column} = $${index + 1}`).join(', ')},
    event_root = $${HOOK_COLUMNS.length + 1}, updated_at = $${HOOK_COLUMNS.length + 2}
    WHERE id = $${HOOK_COLUMNS.length + 3} RETURNING *`,
  deleteHook: 'DELETE FROM hooks WHERE id = $1',
  topicId: 'SELECT id FROM topics WHERE name = $1',
  // Hooks that are active, have something due and, as far as this statement's snapshot shows, room
  // for a run and a whole token ($2 at most, a claim's runs), locked FOR NO KEY UPDATE SKIP LOCKED: one claim at a time
  // per hook. The dispatcher then takes each one's share. NO KEY UPDATE lets appends through (they
  // take KEY SHARE for their deliveries' foreign key); a claim never waits for a lock.
  hooksWithDue: `SELECT * FROM hooks h WHERE state = 'active' AND EXISTS (
      SELECT 1 FROM deliveries d WHERE d.hook_id = h.id AND d.state = 'pending' AND d.due_at <= $1
        AND d.lease_until IS NULL)
      AND ${runsInFlight('h', '$1')} < h.max_in_flight
      AND (h.rate_limit IS NULL OR NOT EXISTS (SELECT 1 FROM rate_buckets b WHERE b.hook_id = h.id
        AND b.tokens + greatest(0, $1 - b.updated_at) / 1000.0 * h.rate_limit < 1))
    ORDER BY id LIMIT $2
    FOR NO KEY UPDATE SKIP LOCKED`,
  // Per hook ($1, at most $2 of them), its due heads, no more than its max_in_flight less the runs of
  // it leased now, locked; and how many pending deliveries no one holds its run could take from the
  // head on (at most $3: the run length, 1 for an unordered hook).
  dueHeads: `SELECT r.hook_id, d.topic_id, d.seq,
      (SELECT count(*) FROM (SELECT 1 FROM deliveries f WHERE f.hook_id = r.hook_id AND f.topic_id = d.topic_id
        AND f.state = 'pending' AND f.seq >= d.seq AND f.lease_until IS NULL ORDER BY f.seq LIMIT r.span) x)
        AS available
    FROM unnest($1::text[], $2::int[], $3::int[]) WITH ORDINALITY AS r(hook_id, room, span, n)
    JOIN hooks h ON h.id = r.hook_id
    CROSS JOIN LATERAL (SELECT greatest(0, least(r.room, h.max_in_flight - ${runsInFlight('h', '$4')})) AS free) c
    CROSS JOIN LATERAL (
      SELECT d.topic_id, d.seq, d.due_at FROM deliveries d
      WHERE d.hook_id = r.hook_id AND d.state = 'pending' AND d.due_at <= $4 AND d.lease_until IS NULL
      ORDER BY d.due_at, d.seq LIMIT c.free
      FOR UPDATE SKIP LOCKED) d
    ORDER BY r.n, d.due_at, d.seq`,
  // The runs, and the tokens they took from their hooks' buckets: per hook $8, the tokens $9 it held
  // at $10 less the deliveries its runs leased (a clock behind the bucket's keeps its time).
  leaseRuns: leaseSql(
    'req AS (SELECT * FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::int[]) WITH ORDINALITY AS r(hook_id, topic_id, from_seq, length, run))',
    `,
    spent AS (
      INSERT INTO rate_buckets (hook_id, tokens, updated_at)
      SELECT b.hook_id, b.tokens - (SELECT count(*) FROM leased l JOIN req r ON r.run = l.run WHERE r.hook_id = b.hook_id),
        $10
      FROM unnest($8::text[], $9::float8[]) AS b(hook_id, tokens)
      ON CONFLICT (hook_id) DO UPDATE SET tokens = EXCLUDED.tokens,
        updated_at = greatest(rate_buckets.updated_at, EXCLUDED.updated_at))`,
  ),
  buckets: 'SELECT hook_id, tokens, updated_at FROM rate_buckets WHERE hook_id = ANY($1::text[])',
  // One run, after $6 - 1, for the hook $4 and the topic named $5: only while the hook is active,
  // ordered and not rate limited, and the run holds a pending delivery of the queue under its token ($2). That delivery is
  // locked: a rescue releasing it at the same time is waited for, and then found to have taken it.
  extendRun: leaseSql(`held AS MATERIALIZED (
      SELECT 1 FROM deliveries WHERE hook_id = $4 AND topic_id = (SELECT id FROM topics WHERE name = $5)
        AND state = 'pending' AND lease_token = $2 LIMIT 1 FOR UPDATE),
    req AS (SELECT h.id AS hook_id, t.id AS topic_id, $6::bigint AS from_seq, $7::int AS length, 1::bigint AS run
      FROM hooks h JOIN topics t ON t.name = $5
      WHERE h.id = $4 AND h.state = 'active' AND h.ordered AND h.rate_limit IS NULL AND EXISTS (SELECT 1 FROM held))`),
  releaseOwned: `UPDATE deliveries SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
    WHERE lease_owner = ANY($1::text[]) AND state = 'pending' RETURNING hook_id, topic_id`,
  // Every leased row has an owner: the partial index deliveries_leased finds them.
  releaseExpired: `UPDATE deliveries SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
    WHERE lease_owner IS NOT NULL AND lease_until < $1 AND state = 'pending' RETURNING hook_id, topic_id`,
  stalledQueues: `SELECT hook_id, topic_id FROM deliveries WHERE state = 'pending'
    GROUP BY hook_id, topic_id HAVING bool_and(due_at IS NULL AND lease_until IS NULL)`,
  lockTopicsById: 'SELECT 1 FROM topics WHERE id = ANY($1::bigint[]) ORDER BY name FOR SHARE',
  lockTopicsByName: 'SELECT 1 FROM topics WHERE name = ANY($1::text[]) ORDER BY name FOR SHARE',
  lockTopicsOfHook: `SELECT 1 FROM topics WHERE id IN (
      SELECT topic_id FROM deliveries WHERE hook_id = $1 AND state = 'pending') OR name = ANY($2::text[])
    ORDER BY name FOR SHARE`,
  unqueueAll:
    "UPDATE deliveries SET due_at = NULL WHERE hook_id = $1 AND state = 'pending' AND lease_until IS NULL",
  dueAll: "UPDATE deliveries SET due_at = COALESCE(due_at, $1) WHERE hook_id = $2 AND state = 'pending'",
  // NO KEY UPDATE, as in updateHook: appends (KEY SHARE, for their deliveries' foreign key) go on.
  lockHooks: 'SELECT * FROM hooks WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE',
  // Of the deliveries a settlement names, those still leased under its token, locked, with their attempts.
  heldUnder: `SELECT id, attempts FROM deliveries WHERE id = ANY($1::bigint[]) AND lease_token = $2
    ORDER BY id FOR UPDATE`,
  insertAttempts: `INSERT INTO attempts (delivery_id, hook_id, attempt, at, duration_ms, status, error, response)
    SELECT d, h, a, t, ms, s, e, r
    FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bigint[], $5::float8[], $6::int[], $7::text[], $8::text[])
      WITH ORDINALITY AS x(d, h, a, t, ms, s, e, r, n)
    ORDER BY n`,
  settleRows: `UPDATE deliveries d SET state = x.state, attempts = x.attempts, due_at = x.due_at,
      last_status = x.status, last_error = x.error, lease_owner = NULL, lease_token = NULL, lease_until = NULL,
      updated_at = $1
    FROM unnest($2::bigint[], $3::text[], $4::int[], $5::bigint[], $6::int[], $7::text[])
      AS x(id, state, attempts, due_at, status, error)
    WHERE d.id = x.id`,
  hookFailed: 'UPDATE hooks SET failing_since = $1 WHERE id = ANY($2::text[]) AND failing_since IS NULL',
  disableHooks: `UPDATE hooks h SET state = 'disabled', disabled_reason = x.reason, updated_at = $1
    FROM unnest($2::text[], $3::text[]) AS x(id, reason) WHERE h.id = x.id`,
  deleteHooks: 'DELETE FROM hooks WHERE id = ANY($1::text[])',
  hookSucceeded:
    'UPDATE hooks SET failing_since = NULL WHERE id = ANY($1::text[]) AND failing_since IS NOT NULL',
  markBusy: `UPDATE deliveries SET due_at = COALESCE(due_at, $1)
    WHERE id = $2 AND state = 'pending' AND lease_token = $3`,
  release: `UPDATE deliveries SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
    WHERE id = ANY($1::bigint[]) AND lease_token = $2`,
  // Per active hook, its earliest due delivery by index, rather than a pass over every pending row.
  nextDue: `SELECT min((SELECT min(d.due_at) FROM deliveries d WHERE d.hook_id = h.id AND d.state = 'pending'
      AND d.due_at IS NOT NULL AND d.lease_until IS NULL)) AS due
    FROM hooks h WHERE h.state = 'active'`,
  deliveryById: `${DELIVERY_SELECT} WHERE d.hook_id = $1 AND d.id = $2`,
  listDeliveries: `${DELIVERY_SELECT}
    WHERE ($1::text IS NULL OR d.state = $1) AND ($2::text IS NULL OR d.hook_id = $2)
      AND ($3::text IS NULL OR t.name = $3) AND ($4::bigint IS NULL OR d.updated_at >= $4)
      AND ($5::bigint IS NULL OR d.updated_at < $5) AND d.id < $6
    ORDER BY d.id DESC LIMIT $7`,
  attempts: `SELECT a.id, a.delivery_id, a.hook_id, d.event_id, t.name AS topic, d.seq, a.attempt, a.at,
      a.duration_ms, a.status, a.error, a.response
    FROM attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN topics t ON t.id = d.topic_id
    WHERE a.hook_id = $1 AND a.id < $2
      AND ($3::bigint IS NULL OR a.delivery_id = $3) AND ($4::text IS NULL OR d.event_id = $4)
    ORDER BY a.id DESC LIMIT $5`,
  retryDelivery: `UPDATE deliveries SET state = 'pending', due_at = $1, lease_owner = NULL, lease_token = NULL,
    lease_until = NULL, updated_at = $2 WHERE hook_id = $3 AND id = $4`,
  eventsAfter: `SELECT e.seq, e.id, e.body FROM events e JOIN topics t ON t.id = e.topic_id
    WHERE t.name = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3`,
  eventsSince: `SELECT e.seq, e.id, e.body FROM events e JOIN topics t ON t.id = e.topic_id
    WHERE t.name = $1 AND e.stored_at >= $2 ORDER BY e.seq LIMIT $3`,
  upsertDeliveries: `INSERT INTO deliveries (hook_id, topic_id, seq, event_id, state, due_at, created_at, updated_at)
    SELECT $1, $2, x.seq, x.id, 'pending', $3, $4, $4 FROM unnest($5::bigint[], $6::text[]) AS x(seq, id)
    ON CONFLICT (hook_id, topic_id, seq) DO UPDATE SET state = 'pending', due_at = EXCLUDED.due_at,
      updated_at = EXCLUDED.updated_at
    WHERE deliveries.state <> 'pending'`,
  counts: 'SELECT state, count(*) AS n FROM deliveries GROUP BY state',
  // A chunk of the oldest deliveries after $1: the settled ones last touched before $3 deleted (their
  // state checked again on the row deleted: one retried meanwhile is pending and stays), and whether
  // the chunk reached a delivery created after the cutoff.
  pruneChunk: `WITH chunk AS MATERIALIZED (
      SELECT id, created_at FROM deliveries WHERE id > $1 ORDER BY id LIMIT $2),
    gone AS (
      DELETE FROM deliveries d USING chunk c
      WHERE d.id = c.id AND d.state <> 'pending' AND d.updated_at < $3 RETURNING d.id)
    SELECT (SELECT count(*) FROM gone) AS removed, (SELECT max(id) FROM chunk) AS last,
      (SELECT count(*) FROM chunk) AS n, EXISTS (SELECT 1 FROM chunk WHERE created_at >= $3) AS newer`,
}
