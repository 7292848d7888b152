import type pg from 'pg'
import type { NewEvent } from '../../core/event.ts'
import { eventRoot } from '../../core/event-pattern.ts'
import { EXTERNAL_CONTENT_PREFIX } from '../../core/topic.ts'
import { fanOut } from '../../delivery/fan-out.ts'
import { type AppendPlan, planAppend } from '../append-plan.ts'
import type { AppendOptions, AppendResult } from '../store.ts'

/**
 * Appends in PostgreSQL, group-committed: the appends that arrive while the previous group commits
 * are coalesced into one transaction, sent as two pipelined round trips (the first takes the locks
 * and reads what the decisions need, the second writes the rows and commits), with one WAL flush for
 * the whole group. Up to MAX_GROUPS groups are in flight at once, on topics no other group in flight
 * holds: groups of different topics commit in parallel, while the appends to a topic being committed
 * gather into its next group (two groups of one topic would only run one after the other on its
 * row lock, the second paying again for what the first pays once).
 *
 * Why seq order is visibility order, so that a reader of `seq > cursor` never skips a row committed
 * late: every append to a topic first locks the topic's row (the upsert below) and holds that lock to
 * its commit, and reads head_seq only once it holds it. So the transactions that write one topic run
 * one after another, each starting from the head its predecessor committed; and PostgreSQL makes a
 * transaction visible before it releases its locks, so a later seq can never be visible while an
 * earlier one is not. Several topics in one group are locked in name order, so two groups never wait
 * for each other in a cycle.
 */

/** Groups committing at once (on different topics); more only queue on connections and the WAL. */
const MAX_GROUPS = 3

interface PendingAppend {
  topic: string
  events: NewEvent[]
  options: AppendOptions
  resolve: (result: AppendResult) => void
  reject: (error: unknown) => void
}

interface TopicLock {
  id: number
  name: string
  head_seq: number
}

/** A hook that may take deliveries of a topic in this group, as the fan-out query finds it. */
interface Candidate {
  id: string
  event: string | null
  filter: string | null
  ordered: boolean
  topic_id: number
  topic: string
  /** An ordered hook whose queue for the topic already has a pending delivery. */
  busy: boolean
}

const SQL = {
  // Creates the topics that are new and locks every one of them, in name order.
  lockTopics: `INSERT INTO topics (name, created_at)
    SELECT name, $2 FROM unnest($1::text[]) AS x(name) ORDER BY name
    ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
    RETURNING id, name, head_seq`,
  keys: `SELECT t.name AS topic, k.key, k.request_hash, k.response
    FROM unnest($1::text[], $2::text[]) AS x(topic, key)
    JOIN topics t ON t.name = x.topic JOIN idempotency_keys k ON k.topic_id = t.id AND k.key = x.key`,
  eventsBySourceId: `SELECT t.name AS topic, e.source, e.id, e.seq, e.body
    FROM unnest($1::text[], $2::text[], $3::text[]) AS x(topic, source, id)
    JOIN topics t ON t.name = x.topic
    JOIN events e ON e.topic_id = t.id AND e.source = x.source AND e.id = x.id`,
  // The hooks that may take deliveries: the topic's own, and topic-less ones by the first segment of
  // their pattern (not for external WebSub content). A WebSub subscription whose lease ended gets
  // nothing more. Read after the topic locks: an advancing queue takes the topic row's lock too
  // (deliveries.ts), so `busy` cannot change before this transaction commits. The hooks are held FOR
  // KEY SHARE: one deleted meanwhile (by the API, or a 410) waits for this commit, rather than
  // failing the group's deliveries on their foreign key; settlements' locks do not conflict.
  candidates: `SELECT h.id, h.event, h.filter, h.ordered, t.id AS topic_id, t.name AS topic,
      h.ordered AND EXISTS (SELECT 1 FROM deliveries d
        WHERE d.hook_id = h.id AND d.topic_id = t.id AND d.state = 'pending') AS busy
    FROM topics t JOIN hooks h ON h.state <> 'disabled' AND (h.expires_at IS NULL OR h.expires_at > $3)
      AND (h.topic = t.name OR (h.topic IS NULL AND NOT starts_with(t.name, '${EXTERNAL_CONTENT_PREFIX}')
        AND (h.event_root = '*' OR h.event_root = ANY($2::text[]))))
    WHERE t.name = ANY($1::text[])
    FOR KEY SHARE OF h`,
  insertEvents: `INSERT INTO events (topic_id, seq, id, source, stored_at, body)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[])`,
  // The same with the ids and bodies each sent as one text, joined by SEPARATOR: a text[] parameter
  // is sent as an array literal, every element quoted and its quotes and backslashes escaped (by
  // pg, in JavaScript, while the topic locks are held) and unescaped again by the server; escaping
  // the bodies (JSON: quotes throughout) was about half of the time spent sending a group's rows.
  insertEventsJoined: `INSERT INTO events (topic_id, seq, id, source, stored_at, body)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], string_to_array($3::text, E'\\x1e'), $4::text[], $5::bigint[],
      string_to_array($6::text, E'\\x1e'))`,
  advanceHeads: `UPDATE topics t SET head_seq = x.head FROM unnest($1::bigint[], $2::bigint[]) AS x(id, head)
    WHERE t.id = x.id`,
  insertKeys: `INSERT INTO idempotency_keys (topic_id, key, request_hash, response, created_at)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])`,
  insertDeliveries: `INSERT INTO deliveries (hook_id, topic_id, seq, event_id, state, due_at, created_at, updated_at)
    SELECT h, t, s, e, 'pending', d, c, c
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[]) AS x(h, t, s, e, d, c)
    ON CONFLICT (hook_id, topic_id, seq) DO NOTHING`,
}

/**
 * Joins the ids and the bodies of the events insert: U+001E (record separator), a control character
 * that valid JSON never holds raw (RFC 8259 §7), so never in a body; an id holding it (a client may
 * send any string) makes the group use the array form instead.
 */
const SEPARATOR = '\x1e'

/** Columns of an unnest insert, filled row by row. */
function columns<T extends unknown[][]>(count: number): T {
  return Array.from({ length: count }, () => []) as unknown as T
}

export class PostgresWriter {
  private readonly pool: pg.Pool
  private readonly firstDelayMs: number
  private readonly onFailure: (error: unknown) => unknown
  private queue: PendingAppend[] = []
  private inFlight = 0
  /** Who waits for the writer to be idle (drained). */
  private readonly onIdle: Array<() => void> = []
  private scheduled = false
  /** The topics of the groups in flight: a topic is in one group at a time (see kick). */
  private readonly busyTopics = new Set<string>()

  /** `onFailure` turns a failed commit into the error each request of the group is rejected with. */
  constructor(pool: pg.Pool, firstDelayMs: number, onFailure: (error: unknown) => unknown) {
    this.pool = pool
    this.firstDelayMs = firstDelayMs
    this.onFailure = onFailure
  }

  append(topic: string, events: NewEvent[], options: AppendOptions): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ topic, events, options, resolve, reject })
      this.kick()
    })
  }

  /** Whether appends are waiting or committing. */
  get idle(): boolean {
    return this.queue.length === 0 && this.inFlight === 0
  }

  /** Resolves once no append is waiting or committing (what close waits for). */
  drained(): Promise<void> {
    if (this.idle) return Promise.resolve()
    return new Promise((resolve) => this.onIdle.push(resolve))
  }

  private kick(): void {
    if (this.scheduled || this.inFlight >= MAX_GROUPS || this.queue.length === 0) return
    this.scheduled = true
    // After the rest of this turn of the event loop, so that its requests join the group.
    setImmediate(() => {
      this.scheduled = false
      if (this.inFlight >= MAX_GROUPS || this.queue.length === 0) return
      // An append to a topic that a group in flight holds waits for the next group: the two would
      // only queue on the topic's row lock, one after the other, each paying its round trips and its
      // WAL flush under the lock; waiting, it joins a larger group instead. Groups of other topics go
      // on in parallel. The queue keeps its order, so each topic's appends keep theirs.
      const group: PendingAppend[] = []
      const waiting: PendingAppend[] = []
      for (const pending of this.queue) (this.busyTopics.has(pending.topic) ? waiting : group).push(pending)
      if (group.length === 0) return
      this.queue = waiting
      const topics = new Set(group.map((pending) => pending.topic))
      for (const topic of topics) this.busyTopics.add(topic)
      this.inFlight++
      void this.commit(group).finally(() => {
        for (const topic of topics) this.busyTopics.delete(topic)
        this.inFlight--
        this.kick()
        if (this.idle) for (const resolve of this.onIdle.splice(0)) resolve()
      })
    })
  }

  private async commit(group: PendingAppend[]): Promise<void> {
    let client: pg.PoolClient
    try {
      client = await this.pool.connect()
    } catch (error) {
      for (const pending of group) pending.reject(this.onFailure(error))
      return
    }
    let outcomes: Array<{ ok: true; value: AppendResult } | { ok: false; error: unknown }>
    try {
      outcomes = await this.transact(client, group)
      client.release()
    } catch (error) {
      // Whether the commit happened is unknown when the connection dropped after COMMIT was sent:
      // the request fails all the same, and a retry with its Idempotency-Key settles it.
      client.query('ROLLBACK').catch(() => {})
      client.release(error instanceof Error ? error : new Error(String(error)))
      for (const pending of group) pending.reject(this.onFailure(error))
      return
    }
    group.forEach((pending, index) => {
      const outcome = outcomes[index]!
      if (outcome.ok) pending.resolve(outcome.value)
      else pending.reject(outcome.error)
    })
  }

  private async transact(client: pg.PoolClient, group: PendingAppend[]) {
    const names = [...new Set(group.map((pending) => pending.topic))].sort()
    const now = group[0]!.options.now
    const keyed = group.filter((pending) => pending.options.idempotencyKey !== undefined)
    const withIds = group.flatMap((pending) =>
      pending.events.filter((event) => event.clientId).map((event) => ({ topic: pending.topic, event })),
    )
    const roots = [
      ...new Set(group.flatMap((pending) => pending.events.map((event) => eventRoot(event.type)))),
    ]

    // Round trip 1: the locks, then what the decisions need, read under them.
    const first = await Promise.allSettled([
      client.query('BEGIN'),
      client.query<TopicLock>({ name: 'herald-lock-topics', text: SQL.lockTopics, values: [names, now] }),
      keyed.length === 0
        ? undefined
        : client.query<{ topic: string; key: string; request_hash: string; response: string }>(SQL.keys, [
            keyed.map((pending) => pending.topic),
            keyed.map((pending) => pending.options.idempotencyKey!),
          ]),
      withIds.length === 0
        ? undefined
        : client.query<{ topic: string; source: string; id: string; seq: number; body: string }>(
            SQL.eventsBySourceId,
            [withIds.map((x) => x.topic), withIds.map((x) => x.event.source), withIds.map((x) => x.event.id)],
          ),
      client.query<Candidate>({
        name: 'herald-fan-out-candidates',
        text: SQL.candidates,
        values: [names, roots, now],
      }),
    ])
    for (const result of first) if (result.status === 'rejected') throw result.reason
    const value = <T>(index: number) =>
      (first[index] as PromiseFulfilledResult<pg.QueryResult<T & pg.QueryResultRow> | undefined>).value
        ?.rows ?? []
    const locks = new Map(value<TopicLock>(1).map((row) => [row.name, row]))
    const previous = new Map(
      value<{ topic: string; key: string; request_hash: string; response: string }>(2).map((row) => [
        JSON.stringify([row.topic, row.key]),
        row,
      ]),
    )
    const storedById = new Map(
      value<{ topic: string; source: string; id: string; seq: number; body: string }>(3).map((row) => [
        JSON.stringify([row.topic, row.source, row.id]),
        row,
      ]),
    )
    const candidates = value<Candidate>(4)

    // The decisions, request by request, each seeing those before it in the group.
    const heads = new Map([...locks.values()].map((lock) => [lock.name, lock.head_seq]))
    const events = columns<[number[], number[], string[], Array<string | null>, number[], string[]]>(6)
    const keys = columns<[number[], string[], string[], string[], number[]]>(5)
    const deliveries = columns<[string[], number[], number[], string[], Array<number | null>, number[]]>(6)
    const busy = new Set(candidates.filter((c) => c.busy).map((c) => `${c.id}\n${c.topic}`))
    const outcomes = group.map((pending) => {
      const lock = locks.get(pending.topic)!
      const head = heads.get(pending.topic)!
      let plan: AppendPlan
      try {
        plan = planAppend(pending.topic, head, pending.events, pending.options, {
          previousRequest: (key) => previous.get(JSON.stringify([pending.topic, key])),
          storedEvent: (source, id) => storedById.get(JSON.stringify([pending.topic, source, id])),
        })
      } catch (error) {
        return { ok: false as const, error }
      }
      if (plan.repeat) {
        return {
          ok: true as const,
          value: { events: plan.events, stored: 0, head: plan.head, deliveries: 0 },
        }
      }
      const { now: at } = pending.options
      for (const row of plan.rows) {
        events[0].push(lock.id)
        events[1].push(row.seq)
        events[2].push(row.id)
        events[3].push(row.source)
        events[4].push(at)
        events[5].push(row.json)
        if (row.source !== null) {
          storedById.set(JSON.stringify([pending.topic, row.source, row.id]), {
            ...row,
            body: row.json,
            topic: pending.topic,
            source: row.source,
          })
        }
      }
      if (plan.idempotency) {
        const { key, requestHash, response } = plan.idempotency
        keys[0].push(lock.id)
        keys[1].push(key)
        keys[2].push(requestHash)
        keys[3].push(response)
        keys[4].push(at)
        previous.set(JSON.stringify([pending.topic, key]), {
          topic: pending.topic,
          key,
          request_hash: requestHash,
          response,
        })
      }
      heads.set(pending.topic, plan.head)
      // Which hooks get which events, and which of those are due: the policy SQLite applies too. An
      // ordered queue stays busy for the requests after this one in the group.
      const hooks = candidates
        .filter((hook) => hook.topic === pending.topic)
        .map((hook) => ({ ...hook, queueBusy: busy.has(`${hook.id}\n${hook.topic}`) }))
      const created = fanOut(hooks, plan.fresh, at + this.firstDelayMs)
      for (const delivery of created) {
        deliveries[0].push(delivery.hookId)
        deliveries[1].push(lock.id)
        deliveries[2].push(delivery.seq)
        deliveries[3].push(delivery.eventId)
        deliveries[4].push(delivery.dueAt)
        deliveries[5].push(at)
      }
      for (const hook of hooks) {
        if (hook.ordered && created.some((delivery) => delivery.hookId === hook.id)) {
          busy.add(`${hook.id}\n${hook.topic}`)
        }
      }
      return {
        ok: true as const,
        value: { events: plan.events, stored: plan.rows.length, head: plan.head, deliveries: created.length },
      }
    })

    // Round trip 2: the rows, the heads, the keys, the deliveries, and the commit.
    const moved = [...heads].filter(([name, head]) => head !== locks.get(name)!.head_seq)
    const second = await Promise.allSettled([
      events[0].length === 0
        ? undefined
        : events[2].some((id) => id.includes(SEPARATOR)) || events[5].some((body) => body.includes(SEPARATOR))
          ? client.query({ name: 'herald-insert-events', text: SQL.insertEvents, values: events })
          : client.query({
              name: 'herald-insert-events-joined',
              text: SQL.insertEventsJoined,
              values: [
                events[0],
                events[1],
                events[2].join(SEPARATOR),
                events[3],
                events[4],
                events[5].join(SEPARATOR),
              ],
            }),
      moved.length === 0
        ? undefined
        : client.query({
            name: 'herald-advance-heads',
            text: SQL.advanceHeads,
            values: [moved.map(([name]) => locks.get(name)!.id), moved.map(([, head]) => head)],
          }),
      keys[0].length === 0
        ? undefined
        : client.query({ name: 'herald-insert-keys', text: SQL.insertKeys, values: keys }),
      deliveries[0].length === 0
        ? undefined
        : client.query({ name: 'herald-insert-deliveries', text: SQL.insertDeliveries, values: deliveries }),
      client.query('COMMIT'),
    ])
    for (const result of second) if (result.status === 'rejected') throw result.reason
    // COMMIT of a transaction a statement failed in answers ROLLBACK, without an error.
    const commit = (second[4] as PromiseFulfilledResult<pg.QueryResult>).value
    if (commit.command !== 'COMMIT') throw new Error(`The group commit was rolled back (${commit.command}).`)
    return outcomes
  }
}
