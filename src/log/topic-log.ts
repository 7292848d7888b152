import { createHash } from 'node:crypto'
import type { Bus } from '../bus/bus.ts'
import { type EventInput, jsonBytes, prepareEvents, type StoredEvent } from '../core/event.ts'
import type { CompiledFilter } from '../core/filter.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { AppendResult, EventStore } from '../store/store.ts'
import { emptyReadGap, Feeds, type Gap, gapCursor, type Sink, type Subscription } from './feeds.ts'
import { ReadAhead } from './read-ahead.ts'

/**
 * The one path every event takes, whatever protocol brought it: store it durably, then announce the
 * new head on the Bus. Readers come here too, so that waiting for events works the same for every
 * protocol: the Bus wakes them, the Store gives them what they missed.
 */
export class TopicLog {
  readonly store: EventStore
  readonly bus: Bus
  readonly feeds: Feeds
  private readonly metrics: Metrics
  private readonly readAhead = new ReadAhead()
  /** Told when stored events created webhook deliveries (the dispatcher then looks at once). */
  onDeliveries: () => void = () => {}
  /**
   * Checks events before they are stored (the event-type catalog: schemas, topics that take
   * registered types only); returns what to store, or throws the client's error.
   */
  check: (topic: string, inputs: EventInput[]) => Promise<EventInput[]> | EventInput[] = (_, inputs) => inputs

  constructor(store: EventStore, bus: Bus, metrics: Metrics) {
    this.store = store
    this.bus = bus
    this.metrics = metrics
    this.feeds = new Feeds(store, bus)
  }

  async publish(
    topic: string,
    inputs: EventInput[],
    options: { idempotencyKey?: string } = {},
  ): Promise<AppendResult> {
    const now = new Date()
    // Hashed before defaults are filled in, so that a retry of the same request hashes the same.
    const requestHash =
      options.idempotencyKey === undefined
        ? undefined
        : createHash('sha256').update(JSON.stringify(inputs)).digest('base64url')
    const checked = await this.check(topic, inputs)
    const events = prepareEvents(topic, checked, now)
    const result = await this.store.append(topic, events, {
      ...(options.idempotencyKey === undefined
        ? {}
        : { idempotencyKey: options.idempotencyKey, requestHash }),
      now: now.getTime(),
    })
    if (result.stored > 0) {
      this.metrics.eventsPublished.inc(result.stored)
      this.bus.publish(topic, result.head)
    }
    if (result.deliveries > 0) this.onDeliveries()
    return result
  }

  read(topic: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
    return this.store.read(topic, afterSeq, limit)
  }

  /**
   * A page of events after `afterSeq`, with the gap when the page does not start right after it (see
   * Gap): retention removed what followed the cursor, or the cursor is past the head. `next` is where
   * the reader goes on from: the last seq returned, else the cursor the gap moved to, else `afterSeq`.
   *
   * With a filter, the events it skips are read and not returned, and `next` moves past them: pages
   * are read until `limit` events matched, the head is reached, or FILTER_SCAN_LIMIT events were
   * looked at (then the answer may have fewer events, even none, and a `next` further on).
   */
  async readPage(topic: string, afterSeq: number, limit: number, filter?: CompiledFilter): Promise<Page> {
    if (filter === undefined) {
      // A reader paging through a backlog: the page after a full one is read ahead (see ReadAhead).
      const page =
        (await this.readAhead.take(topic, afterSeq, limit)) ?? (await this.readEvents(topic, afterSeq, limit))
      if (page.events.length === limit && page.gap === undefined) {
        const next = page.next
        this.readAhead.schedule(topic, next, limit, jsonBytes(page.events), () =>
          this.readEvents(topic, next, limit),
        )
      }
      return page
    }
    // With a filter, pages of at least FILTER_PAGE events: a small `limit` and rare matches must not
    // cost a store read per event looked at.
    const pageSize = Math.max(limit, FILTER_PAGE)
    const events = await this.store.read(topic, afterSeq, pageSize)
    const gap = await readGap(this.store, topic, afterSeq, events)
    const kept: StoredEvent[] = []
    let scanned = events.length === 0 ? undefined : events.at(-1)!.seq
    let batch = events
    let looked = 0
    for (;;) {
      for (const event of batch) {
        if (!filter.matches(event)) continue
        kept.push(event)
        if (kept.length === limit) return pageOf(kept, afterSeq, gap, event.seq)
      }
      looked += batch.length
      if (batch.length < pageSize || looked >= FILTER_SCAN_LIMIT) break
      const last = batch.at(-1)!.seq
      batch = await this.store.read(topic, last, pageSize)
      // Empty (the head), or past a jump that retention made meanwhile: stop at what was looked at,
      // and the next poll, from `next`, is told of the gap.
      if (batch.length === 0 || batch[0]!.seq !== last + 1) break
      scanned = batch.at(-1)!.seq
    }
    return pageOf(kept, afterSeq, gap, scanned)
  }

  /** A page of events after `afterSeq` without a filter, and its gap (see readPage). */
  private async readEvents(topic: string, afterSeq: number, limit: number): Promise<Page> {
    const events = await this.store.read(topic, afterSeq, limit)
    return pageOf(events, afterSeq, await readGap(this.store, topic, afterSeq, events))
  }

  /** Delivers the events of `topic` after `after` to `sink`: the backlog first, then live. */
  subscribe(topic: string, after: number, sink: Sink, pageSize?: number): Subscription {
    return this.feeds.subscribe(topic, after, sink, pageSize)
  }

  /**
   * Resolves with the events after `afterSeq` as soon as there is at least one, or with an empty list
   * once `timeoutMs` has passed or `signal` aborts (client gone, server draining). A long poll is a
   * subscription that ends with its first delivery.
   */
  waitForEvents(
    topic: string,
    afterSeq: number,
    limit: number,
    timeoutMs: number,
    signal: AbortSignal,
    filter?: CompiledFilter,
  ): Promise<Page> {
    return new Promise((resolve, reject) => {
      let done = false
      let gap: Gap | undefined
      // The last seq a filter skipped while waiting: the answer's `next` goes past it.
      let scanned: number | undefined
      let looked = 0
      const finish = (events: StoredEvent[], error?: unknown) => {
        if (done) return
        done = true
        clearTimeout(timer)
        signal.removeEventListener('abort', onEnd)
        subscription.close()
        if (error !== undefined) reject(error)
        else if (events.length > limit) resolve(pageOf(events.slice(0, limit), afterSeq, gap))
        else resolve(pageOf(events, afterSeq, gap, scanned))
      }
      const onEnd = () => finish([])
      const subscription = this.subscribe(
        topic,
        afterSeq,
        {
          push: (events) => {
            if (filter === undefined) return finish(events)
            // Skipped events do not answer a long poll: it waits on for a match (or its end), and
            // answers with `next` past what it skipped.
            scanned = events.at(-1)!.seq
            looked += events.length
            const kept = events.filter((event) => filter.matches(event))
            // A long backlog of skipped events is not scanned whole by one poll: past the scan limit
            // it answers with no events and `next` past them, as a short poll does.
            if (kept.length > 0 || looked >= FILTER_SCAN_LIMIT) finish(kept)
          },
          fail: (error) => finish([], error),
          // A gap is answered at once: with the events that follow it when they come with it (push
          // is called right after), else alone, so the reader learns of it without waiting.
          gap: (found) => {
            gap ??= found
            queueMicrotask(() => finish([]))
          },
        },
        filter === undefined ? limit : Math.max(limit, FILTER_PAGE),
      )
      const timer = setTimeout(onEnd, timeoutMs)
      signal.addEventListener('abort', onEnd, { once: true })
      if (signal.aborted) onEnd()
    })
  }
}

/** With a filter, a short poll looks at this many events at most before it answers. */
const FILTER_SCAN_LIMIT = 10_000
/** With a filter, polls read the store in pages of at least this many events. */
const FILTER_PAGE = 500

/** A poll's answer: the events, where to go on from, and the gap before them if there is one. */
export interface Page {
  events: StoredEvent[]
  next: number
  gap: Gap | undefined
}

/** The gap before a read's events (see Gap): they start past `afterSeq + 1`, or there are none. */
async function readGap(
  store: EventStore,
  topic: string,
  afterSeq: number,
  events: StoredEvent[],
): Promise<Gap | undefined> {
  if (events.length === 0) return emptyReadGap(store, topic, afterSeq)
  const first = events[0]!.seq
  return first > afterSeq + 1 ? { topic, after: afterSeq, first_seq: first, reason: 'pruned' } : undefined
}

/**
 * `scanned`: the last seq a filter looked at (and skipped, if after the last event returned), which
 * `next` moves past.
 */
function pageOf(events: StoredEvent[], afterSeq: number, gap: Gap | undefined, scanned?: number): Page {
  let next = events.length > 0 ? events.at(-1)!.seq : gap === undefined ? afterSeq : gapCursor(gap)
  if (scanned !== undefined && scanned > next) next = scanned
  return { events, next, gap }
}
