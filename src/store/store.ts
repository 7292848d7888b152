import type { NewEvent, StoredEvent } from '../core/event.ts'

/**
 * The Store is the source of truth: every event lives here before anyone is told about it.
 *
 * Contract, for every backend (test/store/contract.ts checks it):
 * - `append` stores all of its events or none (a batch is atomic), and resolves only once they are
 *   durable. Each topic's `seq` starts at 1 and grows by exactly one per stored event, with no gaps
 *   and no reuse, even with several Herald processes writing to one database: the position comes
 *   from the topic's row inside the writing transaction, never from a counter in memory.
 * - A repeat is not stored again. An `idempotencyKey` seen in the topic before returns the original
 *   events (`stored: 0`); the same key with another request is an `idempotency-key-reused`
 *   error. An event whose client-supplied `id` is already stored in the topic returns that event.
 * - `read` returns events in `seq` order; a topic that does not exist reads as empty.
 * - Retention removes the oldest events only, so the retained events of a topic are always the
 *   contiguous run `first_seq..head_seq`.
 */
export interface Store {
  append(topic: string, events: NewEvent[], options: AppendOptions): Promise<AppendResult>
  read(topic: string, afterSeq: number, limit: number): Promise<StoredEvent[]>
  topic(name: string): Promise<TopicInfo | undefined>
  topics(options: { after?: string; limit: number }): Promise<TopicInfo[]>
  /** Creates the topic if needed and sets its own retention (null: the server default). */
  configureTopic(name: string, retention: Retention): Promise<TopicInfo>
  /** Removes events past retention and expired idempotency keys. */
  prune(now: number, defaults: Retention, idempotencyTtlMs: number): Promise<PruneResult>
  close(): Promise<void>
}

export interface AppendOptions {
  idempotencyKey?: string
  /** A digest of the request, to tell a true repeat from another request that reuses a key. */
  requestHash?: string
  /** Milliseconds since the epoch, recorded as the events' storage time (retention counts from it). */
  now: number
}

export interface AppendResult {
  events: StoredEvent[]
  /** How many of `events` this call stored; 0 when the whole request was a repeat. */
  stored: number
  /** The topic's head after the call. */
  head: number
}

export interface Retention {
  maxAgeMs: number | null
  maxEvents: number | null
}

export interface TopicInfo {
  topic: string
  /** The seq of the newest event, 0 for a topic with none yet. */
  head_seq: number
  /** The seq of the oldest retained event (head_seq + 1 when none is retained). */
  first_seq: number
  /** How many events are retained. */
  events: number
  created_at: string
  /** The topic's own retention; null fields fall back to the server default. */
  retention: { max_age_ms: number | null; max_events: number | null }
}

export interface PruneResult {
  events: number
  idempotencyKeys: number
}
