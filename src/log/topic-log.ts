import { createHash } from 'node:crypto'
import type { Bus } from '../bus/bus.ts'
import { type EventInput, prepareEvent, type StoredEvent } from '../core/event.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { AppendResult, EventStore } from '../store/store.ts'
import { emptyReadGap, Feeds, type Gap, gapCursor, type Sink, type Subscription } from './feeds.ts'

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
    const events = checked.map((input) => prepareEvent(topic, input, now))
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
   */
  async readPage(topic: string, afterSeq: number, limit: number): Promise<Page> {
    const events = await this.store.read(topic, afterSeq, limit)
    const gap =
      events.length > 0
        ? events[0]!.seq > afterSeq + 1
          ? { topic, after: afterSeq, first_seq: events[0]!.seq, reason: 'pruned' as const }
          : undefined
        : await emptyReadGap(this.store, topic, afterSeq)
    return pageOf(events, afterSeq, gap)
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
  ): Promise<Page> {
    return new Promise((resolve, reject) => {
      let done = false
      let gap: Gap | undefined
      const finish = (events: StoredEvent[], error?: unknown) => {
        if (done) return
        done = true
        clearTimeout(timer)
        signal.removeEventListener('abort', onEnd)
        subscription.close()
        if (error === undefined)
          resolve(pageOf(events.length > limit ? events.slice(0, limit) : events, afterSeq, gap))
        else reject(error)
      }
      const onEnd = () => finish([])
      const subscription = this.subscribe(
        topic,
        afterSeq,
        {
          push: (events) => finish(events),
          fail: (error) => finish([], error),
          // A gap is answered at once: with the events that follow it when they come with it (push
          // is called right after), else alone, so the reader learns of it without waiting.
          gap: (found) => {
            gap ??= found
            queueMicrotask(() => finish([]))
          },
        },
        limit,
      )
      const timer = setTimeout(onEnd, timeoutMs)
      signal.addEventListener('abort', onEnd, { once: true })
      if (signal.aborted) onEnd()
    })
  }
}

/** A poll's answer: the events, where to go on from, and the gap before them if there is one. */
export interface Page {
  events: StoredEvent[]
  next: number
  gap: Gap | undefined
}

function pageOf(events: StoredEvent[], afterSeq: number, gap: Gap | undefined): Page {
  const next = events.length > 0 ? events.at(-1)!.seq : gap === undefined ? afterSeq : gapCursor(gap)
  return { events, next, gap }
}
