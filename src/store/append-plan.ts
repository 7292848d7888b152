import { errors } from '../core/errors.ts'
import { type NewEvent, positioned, type StoredEvent } from '../core/event.ts'
import type { AppendOptions } from './store.ts'

/**
 * What one append stores, decided the same way by every backend once it holds the topic's write lock
 * and knows its head: the idempotency check, dedupe by (source, id), and the seq of each new event.
 * The backend answers the two lookups (from its tables, and from what it already decided in the same
 * transaction) and writes the plan's rows.
 */

export interface AppendLookups {
  /** The request recorded under this Idempotency-Key in the topic, if any. */
  previousRequest(key: string): { request_hash: string; response: string } | undefined
  /** The stored event of the topic with this client-supplied (source, id), if any. */
  storedEvent(source: string, id: string): { seq: number; body: string } | undefined
}

/** A row of the events table. `source` is null for a generated id (never looked up for dedupe). */
export interface EventRow {
  seq: number
  id: string
  source: string | null
  json: string
}

/** An event stored by this append, as the deliveries it creates need it (`json` for hooks' filters). */
export interface FreshEvent {
  seq: number
  id: string
  type: string
  json: string
}

export type AppendPlan =
  /** A repeat of a request stored before: nothing is written. */
  | { repeat: true; events: StoredEvent[]; head: number }
  | {
      repeat: false
      events: StoredEvent[]
      rows: EventRow[]
      fresh: FreshEvent[]
      /** The topic's head once the rows are written. */
      head: number
      /** The idempotency record to write, when the request had a key. */
      idempotency?: { key: string; requestHash: string; response: string }
    }

/** The plan for appending `events` to `topic`, whose head is `head`. Throws on a reused key. */
export function planAppend(
  topic: string,
  head: number,
  events: NewEvent[],
  options: AppendOptions,
  lookups: AppendLookups,
): AppendPlan {
  if (options.idempotencyKey !== undefined) {
    const previous = lookups.previousRequest(options.idempotencyKey)
    if (previous) {
      if (previous.request_hash !== options.requestHash) {
        throw errors.idempotencyKeyReused(
          'This Idempotency-Key was used with a different request in this topic.',
          'Idempotency-Key',
        )
      }
      return { repeat: true, events: JSON.parse(previous.response) as StoredEvent[], head }
    }
  }
  let next = head
  const stored: StoredEvent[] = []
  const rows: EventRow[] = []
  const fresh: FreshEvent[] = []
  // Client-supplied (source, id) pairs stored by this request, keyed by both (JSON: unambiguous).
  const storedInThisRequest = new Map<string, StoredEvent>()
  const withPosition = positioned(topic)
  for (const event of events) {
    const key = event.clientId ? JSON.stringify([event.source, event.id]) : undefined
    if (key !== undefined) {
      const earlier = storedInThisRequest.get(key)
      if (earlier) {
        stored.push(earlier)
        continue
      }
      const repeat = lookups.storedEvent(event.source, event.id)
      if (repeat) {
        stored.push({ topic, seq: repeat.seq, json: repeat.body })
        continue
      }
    }
    next += 1
    const json = withPosition(event.body, next)
    const storedEvent = { topic, seq: next, json }
    rows.push({ seq: next, id: event.id, source: key === undefined ? null : event.source, json })
    if (key !== undefined) storedInThisRequest.set(key, storedEvent)
    stored.push(storedEvent)
    fresh.push({ seq: next, id: event.id, type: event.type, json })
  }
  return {
    repeat: false,
    events: stored,
    rows,
    fresh,
    head: next,
    ...(options.idempotencyKey !== undefined && {
      idempotency: {
        key: options.idempotencyKey,
        requestHash: options.requestHash ?? '',
        response: JSON.stringify(stored),
      },
    }),
  }
}
