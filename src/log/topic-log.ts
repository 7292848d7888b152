import { createHash } from 'node:crypto'
import type { Bus } from '../bus/bus.ts'
import { type EventInput, prepareEvent, type StoredEvent } from '../core/event.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { AppendResult, EventStore } from '../store/store.ts'
import { Feeds, type Sink, type Subscription } from './feeds.ts'

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
    const events = inputs.map((input) => prepareEvent(topic, input, now))
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
  ): Promise<StoredEvent[]> {
    return new Promise((resolve, reject) => {
      const finish = (events: StoredEvent[], error?: unknown) => {
        clearTimeout(timer)
        signal.removeEventListener('abort', onEnd)
        subscription.close()
        if (error === undefined) resolve(events.length > limit ? events.slice(0, limit) : events)
        else reject(error)
      }
      const onEnd = () => finish([])
      const subscription = this.subscribe(
        topic,
        afterSeq,
        { push: (events) => finish(events), fail: (error) => finish([], error) },
        limit,
      )
      const timer = setTimeout(onEnd, timeoutMs)
      signal.addEventListener('abort', onEnd, { once: true })
      if (signal.aborted) onEnd()
    })
  }
}
