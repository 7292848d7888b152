import { createHash } from 'node:crypto'
import type { Bus } from '../bus/bus.ts'
import { type EventInput, prepareEvent, type StoredEvent } from '../core/event.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { AppendResult, Store } from '../store/store.ts'

/**
 * The one path every event takes, whatever protocol brought it: store it durably, then announce the
 * new head on the Bus. Readers come here too, so that waiting for events works the same for every
 * protocol: the Bus wakes them, the Store gives them what they missed.
 */
export class TopicLog {
  readonly store: Store
  readonly bus: Bus
  private readonly metrics: Metrics

  constructor(store: Store, bus: Bus, metrics: Metrics) {
    this.store = store
    this.bus = bus
    this.metrics = metrics
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
    return result
  }

  read(topic: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
    return this.store.read(topic, afterSeq, limit)
  }

  /**
   * Resolves with the events after `afterSeq` as soon as there is at least one, or with an empty list
   * once `timeoutMs` has passed or `signal` aborts (client gone, server draining).
   */
  waitForEvents(
    topic: string,
    afterSeq: number,
    limit: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<StoredEvent[]> {
    return new Promise((resolve, reject) => {
      let settled = false
      let reading = false
      let headMoved = false
      // Subscribe before the first read: an event committed in between still wakes us.
      const unsubscribe = this.bus.subscribe(topic, (head) => {
        if (head > afterSeq) {
          headMoved = true
          if (!reading) void attempt()
        }
      })
      const finish = (events: StoredEvent[]) => {
        if (settled) return
        settled = true
        unsubscribe()
        clearTimeout(timer)
        signal.removeEventListener('abort', onEnd)
        resolve(events)
      }
      const attempt = async (final = false) => {
        reading = true
        headMoved = false
        try {
          const events = await this.store.read(topic, afterSeq, limit)
          if (events.length > 0 || final) return finish(events)
        } catch (error) {
          settled = true
          unsubscribe()
          clearTimeout(timer)
          signal.removeEventListener('abort', onEnd)
          return reject(error)
        } finally {
          reading = false
        }
        if (headMoved && !settled) void attempt()
      }
      const onEnd = () => {
        if (!settled) void attempt(true)
      }
      const timer = setTimeout(onEnd, timeoutMs)
      signal.addEventListener('abort', onEnd, { once: true })
      if (signal.aborted) onEnd()
      else void attempt(timeoutMs <= 0)
    })
  }
}
